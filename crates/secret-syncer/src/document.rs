//! The connection details of a database, as one canonical JSON document, and the
//! `ClientRequestToken` derived from it.

use std::collections::BTreeMap;
use std::fmt;

use common::rds::LiveDatabase;
use sha2::{Digest, Sha256};

/// A value that must never reach a log line, an error or an outcome: `Debug` and `Display`
/// print `***`. Read it with [`Secret::expose`] only where it is written to AWS.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a live RDS instance or cluster says about connecting to it, plus the password when
/// configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDetails {
    pub database: LiveDatabase,
    /// Only when configured (`INCLUDE_PASSWORD`), read from the RDS-managed secret.
    pub password: Option<Secret>,
}

impl From<LiveDatabase> for ConnectionDetails {
    fn from(database: LiveDatabase) -> Self {
        ConnectionDetails {
            database,
            password: None,
        }
    }
}

/// The key that holds the password, in the document and as an SSM parameter.
pub const PASSWORD_KEY: &str = "password";

impl ConnectionDetails {
    /// The document's entries, sorted by key; absent values are left out.
    pub fn entries(&self) -> BTreeMap<&'static str, Secret> {
        let mut entries = BTreeMap::new();
        let mut put = |key: &'static str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                entries.insert(key, Secret::new(value));
            }
        };
        let db = &self.database;
        let endpoint = |host: &Option<String>| host.as_ref().zip(db.port).map(|(h, p)| format!("{h}:{p}"));
        put("arn", Some(db.arn.clone()));
        put("engine", db.engine.clone());
        put("host", db.host.clone());
        put("port", db.port.map(|p| p.to_string()));
        put("dbname", db.dbname.clone());
        put("username", db.username.clone());
        put("endpoint", endpoint(&db.host));
        put("reader_endpoint", endpoint(&db.reader_host));
        put("master_user_secret_arn", db.master_user_secret_arn.clone());
        put(PASSWORD_KEY, self.password.as_ref().map(|p| p.expose().to_string()));
        entries
    }

    /// The canonical JSON document: keys sorted, no white space, `port` a number.
    /// Equal details always give the same bytes, so "unchanged" is a plain comparison.
    pub fn document(&self) -> Secret {
        let mut object = serde_json::Map::new();
        for (key, value) in self.entries() {
            let json = match (key, self.database.port) {
                ("port", Some(port)) => serde_json::Value::from(port),
                _ => serde_json::Value::String(value.expose().to_string()),
            };
            object.insert(key.to_string(), json);
        }
        Secret::new(serde_json::Value::Object(object).to_string())
    }
}

/// A `ClientRequestToken` for writing `content` over the version `previous` (None: a new
/// secret): the same write retried gets the same token, so Secrets Manager adds no version;
/// a later write of the same content over another version gets a new one, so it becomes current.
/// 64 hexadecimal characters: within Secrets Manager's 32–64.
pub fn request_token(content: &Secret, previous: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(previous.unwrap_or("new").as_bytes());
    hash.update([0]);
    hash.update(content.expose().as_bytes());
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> ConnectionDetails {
        ConnectionDetails::from(LiveDatabase {
            arn: "arn:aws:rds:us-east-1:123456789012:db:orders".into(),
            status: Some("available".into()),
            engine: Some("postgres".into()),
            host: Some("orders.abc.us-east-1.rds.amazonaws.com".into()),
            port: Some(5432),
            dbname: Some("orders".into()),
            username: Some("orders_admin".into()),
            reader_host: None,
            master_user_secret_arn: Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1".into()),
            created_at: Some("2026-11-20T09:02:41Z".into()),
        })
    }

    #[test]
    fn a_secret_prints_as_a_mask_in_every_format() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)", "also inside what holds it");
    }

    #[test]
    fn the_document_is_canonical() {
        let doc = instance().document();
        assert_eq!(
            doc.expose(),
            r#"{"arn":"arn:aws:rds:us-east-1:123456789012:db:orders","dbname":"orders","endpoint":"orders.abc.us-east-1.rds.amazonaws.com:5432","engine":"postgres","host":"orders.abc.us-east-1.rds.amazonaws.com","master_user_secret_arn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1","port":5432,"username":"orders_admin"}"#
        );
        assert_eq!(instance().document(), doc, "the same details give the same bytes");
    }

    #[test]
    fn clusters_carry_the_reader_endpoint() {
        let mut cluster = instance();
        cluster.database.reader_host = Some("orders.cluster-ro-abc.rds.amazonaws.com".into());
        let entries = cluster.entries();
        assert_eq!(
            entries["reader_endpoint"].expose(),
            "orders.cluster-ro-abc.rds.amazonaws.com:5432"
        );
    }

    #[test]
    fn the_password_only_when_present_and_never_in_debug() {
        assert!(!instance().document().expose().contains("password"));
        let mut with = instance();
        with.password = Some(Secret::new("hunter2-very-secret"));
        assert!(with.document().expose().contains(r#""password":"hunter2-very-secret""#));
        let debug = format!("{with:?} {:?} {}", with.document(), with.document());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn tokens() {
        let a = instance().document();
        let mut changed = instance();
        changed.database.host = Some("elsewhere".into());
        let b = changed.document();
        assert_eq!(
            request_token(&a, None),
            request_token(&a, None),
            "same content, same token"
        );
        assert_ne!(
            request_token(&a, None),
            request_token(&b, None),
            "different content, different token"
        );
        assert_ne!(
            request_token(&a, Some("v1")),
            request_token(&a, Some("v2")),
            "a new write over another version"
        );
        let token = request_token(&a, Some("v1"));
        assert!((32..=64).contains(&token.len()));
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
