//! One value loaded on first use and kept for a time to live (the tag policy, the webhook URL):
//! concurrent callers share one load, and a failed load is not cached.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct TtlCache<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> TtlCache<T> {
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The cached value while it is younger than the TTL, else what `load` gives (kept when
    /// it succeeds). The lock is held across the load, so a batch's events make one call.
    pub async fn get_or_load<F, Fut, E>(&self, load: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((loaded_at, value)) = slot.as_ref()
            && loaded_at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = load().await?;
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn loads_once_per_ttl_and_never_caches_a_failure() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let loads = AtomicU32::new(0);
        let load = || async { Ok::<_, String>(loads.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(cache.get_or_load(load).await, Ok(0));
        assert_eq!(cache.get_or_load(load).await, Ok(0), "cached within the TTL");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get_or_load(load).await, Ok(1), "reloaded after the TTL");
        let empty: TtlCache<u32> = TtlCache::new(Duration::from_secs(60));
        assert_eq!(empty.get_or_load(|| async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!(
            empty.get_or_load(|| async { Ok::<_, &str>(7) }).await,
            Ok(7),
            "a failure is not kept"
        );
    }
}
