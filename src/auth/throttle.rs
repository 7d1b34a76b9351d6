//! Growing delays after failed attempts (NIST SP 800-63B §5.2.2: limit
//! consecutive failures, well under 100). Pure: the counts live in the
//! database, the time is passed in.

/// How a run of consecutive failures is throttled.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay, seconds; each further failure doubles it.
    pub base_delay_secs: u64,
    /// The cap, seconds.
    pub max_delay_secs: u64,
}

impl ThrottlePolicy {
    /// After `failures` consecutive failures, how long (seconds) until the
    /// next attempt is accepted; `None` when no delay applies yet.
    pub fn delay_after(&self, failures: u32) -> Option<u64> {
        if failures < self.free_failures {
            return None;
        }
        let doublings = (failures - self.free_failures).min(32);
        let delay = self.base_delay_secs.saturating_mul(1u64 << doublings);
        Some(delay.min(self.max_delay_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap() {
        let p = ThrottlePolicy {
            free_failures: 5,
            base_delay_secs: 30,
            max_delay_secs: 900,
        };
        assert_eq!(p.delay_after(0), None);
        assert_eq!(p.delay_after(4), None);
        assert_eq!(p.delay_after(5), Some(30));
        assert_eq!(p.delay_after(6), Some(60));
        assert_eq!(p.delay_after(7), Some(120));
        assert_eq!(p.delay_after(10), Some(900));
        assert_eq!(p.delay_after(u32::MAX), Some(900));
    }
}
