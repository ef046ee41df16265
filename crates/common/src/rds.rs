//! The live RDS database behind an ARN: `DescribeDBInstances` / `DescribeDBClusters`.
//! Used right before a side effect (a stale `ready` for a database that is gone does nothing)
//! and as the source of connection details.

use aws_sdk_rds::Client as RdsClient;

use crate::aws::AwsError;
use crate::resolve::Arn;

/// RDS's answers for a database that does not exist.
pub const NOT_FOUND: &[&str] = &[
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBClusterNotFoundFault",
    "DBClusterNotFound",
];

/// Statuses of a database on its way out.
const GOING_AWAY: &[&str] = &[
    "deleting",
    "deleted",
    "failed",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
];

/// What RDS says about a live instance or cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDatabase {
    pub arn: String,
    pub status: Option<String>,
    pub engine: Option<String>,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub dbname: Option<String>,
    pub username: Option<String>,
    /// Clusters only.
    pub reader_host: Option<String>,
    /// The RDS-managed master user secret, when RDS manages the password.
    pub master_user_secret_arn: Option<String>,
    /// When RDS created this database (RFC 3339, seconds): with the ARN, it names one lifetime
    /// of a database, which a database deleted and re-created under the same name does not share.
    pub created_at: Option<String>,
}

/// Where a database stands, as RDS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// There, and not on its way out.
    Live(LiveDatabase),
    /// There, but being deleted (or in a state it does not come back from).
    GoingAway(LiveDatabase),
    /// RDS does not know it.
    Gone,
}

impl Liveness {
    pub fn live(self) -> Option<LiveDatabase> {
        match self {
            Liveness::Live(db) => Some(db),
            Liveness::GoingAway(_) | Liveness::Gone => None,
        }
    }
}

/// Where databases stand: RDS in production, a fake in unit tests.
pub trait Databases: Send + Sync {
    fn liveness(&self, arn: &str) -> impl std::future::Future<Output = Result<Liveness, AwsError>> + Send;

    /// The database (instance, else cluster) whose RDS-managed master user secret is `secret_arn`:
    /// every database is read, so this is the last resort when the secret's own tags do not say.
    /// Fakes that hold no such link find none.
    fn owner_of_secret(
        &self,
        _secret_arn: &str,
    ) -> impl std::future::Future<Output = Result<Option<String>, AwsError>> + Send {
        async { Ok(None) }
    }
}

impl Databases for RdsClient {
    async fn liveness(&self, arn: &str) -> Result<Liveness, AwsError> {
        liveness(self, arn).await
    }

    async fn owner_of_secret(&self, secret_arn: &str) -> Result<Option<String>, AwsError> {
        let owns = |secret: Option<&aws_sdk_rds::types::MasterUserSecret>| {
            secret.and_then(|s| s.secret_arn()) == Some(secret_arn)
        };
        let mut instances = self.describe_db_instances().into_paginator().send();
        while let Some(page) = instances.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("DescribeDBInstances", &e))?;
            if let Some(db) = page.db_instances().iter().find(|db| owns(db.master_user_secret())) {
                return Ok(db.db_instance_arn().map(str::to_string));
            }
        }
        let mut clusters = self.describe_db_clusters().into_paginator().send();
        while let Some(page) = clusters.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("DescribeDBClusters", &e))?;
            if let Some(cluster) = page.db_clusters().iter().find(|c| owns(c.master_user_secret())) {
                return Ok(cluster.db_cluster_arn().map(str::to_string));
            }
        }
        Ok(None)
    }
}

fn rfc3339(time: Option<&aws_sdk_rds::primitives::DateTime>) -> Option<String> {
    use aws_sdk_rds::primitives::{DateTime, DateTimeFormat};
    time.and_then(|t| DateTime::from_secs(t.secs()).fmt(DateTimeFormat::DateTime).ok())
}

/// The database behind `arn`, or `None` when it does not exist or is on its way out.
pub async fn describe(client: &RdsClient, arn: &str) -> Result<Option<LiveDatabase>, AwsError> {
    Ok(liveness(client, arn).await?.live())
}

/// Whether the database behind `arn` is there, going away, or gone (one describe call).
pub async fn liveness(client: &RdsClient, arn: &str) -> Result<Liveness, AwsError> {
    let Some(parsed) = Arn::parse(arn).filter(|a| a.service == "rds") else {
        return Ok(Liveness::Gone);
    };
    let found = if parsed.resource.starts_with("cluster:") {
        match client.describe_db_clusters().db_cluster_identifier(arn).send().await {
            Ok(output) => output.db_clusters().first().map(|c| LiveDatabase {
                arn: arn.to_string(),
                status: c.status().map(str::to_string),
                engine: c.engine().map(str::to_string),
                host: c.endpoint().map(str::to_string),
                port: c.port(),
                dbname: c.database_name().map(str::to_string),
                username: c.master_username().map(str::to_string),
                reader_host: c.reader_endpoint().map(str::to_string),
                master_user_secret_arn: c.master_user_secret().and_then(|s| s.secret_arn()).map(str::to_string),
                created_at: rfc3339(c.cluster_create_time()),
            }),
            Err(e) => return not_found_is_gone(AwsError::from_sdk("DescribeDBClusters", &e)),
        }
    } else {
        match client.describe_db_instances().db_instance_identifier(arn).send().await {
            Ok(output) => output.db_instances().first().map(|db| LiveDatabase {
                arn: arn.to_string(),
                status: db.db_instance_status().map(str::to_string),
                engine: db.engine().map(str::to_string),
                host: db.endpoint().and_then(|e| e.address()).map(str::to_string),
                port: db.endpoint().and_then(|e| e.port()),
                dbname: db.db_name().map(str::to_string),
                username: db.master_username().map(str::to_string),
                reader_host: None,
                master_user_secret_arn: db.master_user_secret().and_then(|s| s.secret_arn()).map(str::to_string),
                created_at: rfc3339(db.instance_create_time()),
            }),
            Err(e) => return not_found_is_gone(AwsError::from_sdk("DescribeDBInstances", &e)),
        }
    };
    Ok(match found {
        None => Liveness::Gone,
        Some(db) if db.status.as_deref().is_some_and(|s| GOING_AWAY.contains(&s)) => Liveness::GoingAway(db),
        Some(db) => Liveness::Live(db),
    })
}

fn not_found_is_gone(error: AwsError) -> Result<Liveness, AwsError> {
    if NOT_FOUND.iter().any(|code| error.is_code(code)) {
        Ok(Liveness::Gone)
    } else {
        Err(error)
    }
}
