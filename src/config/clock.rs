//! The time the proxy decides by: the system's, moved ahead by what a test asked for. Every
//! copy of a clock shares its offset, so a test that holds the config's clock moves the
//! running proxy's time (a presigned URL's expiry, a cache entry's freshness) without sleeping.
//! In production nothing moves it: the cost is one atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The proxy's clock (see the module).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far ahead of the system's clock, in nanoseconds.
    ahead: Arc<AtomicU64>,
}

impl Clock {
    fn ahead(&self) -> Duration {
        Duration::from_nanos(self.ahead.load(Ordering::Relaxed))
    }

    /// The wall-clock time: signatures' dates, expiries.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.ahead()
    }

    /// The monotonic time: how long an entry has been kept.
    pub fn instant(&self) -> Instant {
        Instant::now() + self.ahead()
    }

    /// Moves this clock, and every copy of it, `by` ahead. For tests.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.ahead.fetch_add(nanos, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_move_together_and_only_forward() {
        let clock = Clock::default();
        let copy = clock.clone();
        let before = copy.now();
        clock.advance(Duration::from_secs(3600));
        let after = copy.now();
        assert!(after.duration_since(before).unwrap() >= Duration::from_secs(3600));
        assert!(copy.instant() >= Instant::now() + Duration::from_secs(3599));
        // A fresh clock is the system's.
        let system = Clock::default().now();
        assert!(
            system.duration_since(SystemTime::now()).unwrap_or_default() < Duration::from_secs(1)
        );
    }
}
