//! Growing delays after failed attempts (NIST SP 800-63B §5.2.2: limit
//! consecutive failures, well under 100). Pure: the counts live in the
//! database, the time is passed in.
//!
//! An attempt is counted as a failure *before* it is verified, and the lock
//! it would earn is set in the same statement (`store::login_throttle::claim`),
//! so attempts in flight at once can never outnumber what the policy allows;
//! a success then ends the run. [`LockSchedule`] is the policy in the shape
//! that statement computes it in.

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

/// [`ThrottlePolicy::delay_after`] as integer arithmetic a SQL `CASE` can do
/// on both SQLite and PostgreSQL: no delay below `free`, the cap from
/// `capped_from` on, and `base << (n - free)` between (no overflow there,
/// since the shift stays below `capped_from - free`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSchedule {
    pub free: i64,
    pub capped_from: i64,
    pub base: i64,
    pub max: i64,
}

/// No lock lasts longer than a year, whatever the settings say: the end of
/// a lock is `now + delay` in SQL, which must stay far from `i64::MAX`.
pub const LONGEST_LOCK_SECS: i64 = 366 * 86_400;

impl ThrottlePolicy {
    pub fn schedule(&self) -> LockSchedule {
        let clamp =
            |secs: u64| i64::try_from(secs).map_or(LONGEST_LOCK_SECS, |s| s.min(LONGEST_LOCK_SECS));
        let (base, max) = (clamp(self.base_delay_secs), clamp(self.max_delay_secs));
        // The first doubling count whose delay reaches the cap. `delay_after`
        // stops doubling after 32: when even that is below the cap, the
        // delay there is the cap instead.
        let (doublings, cap) = match (0..=32u32).find(|d| (base << d) >= max) {
            Some(d) => (d, max),
            None => (32, base << 32),
        };
        LockSchedule {
            free: i64::from(self.free_failures),
            capped_from: i64::from(self.free_failures) + i64::from(doublings),
            base,
            max: cap.min(LONGEST_LOCK_SECS),
        }
    }
}

impl LockSchedule {
    /// What the SQL computes, for the unit tests to hold against the policy.
    pub fn delay_after(&self, failures: i64) -> Option<i64> {
        if failures < self.free {
            None
        } else if failures >= self.capped_from {
            Some(self.max)
        } else {
            Some(self.base << (failures - self.free))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_policy() {
        for (free, base, max) in [
            (5, 30, 900),
            (5, 60, 900),
            (0, 1, 1),
            (3, 0, 10),
            (1, 7, 5),
            (2, 1, u64::from(u32::MAX)),
            (4, 1 << 40, u64::MAX),
        ] {
            let policy = ThrottlePolicy {
                free_failures: free,
                base_delay_secs: base,
                max_delay_secs: max,
            };
            let schedule = policy.schedule();
            for n in 0..80u32 {
                assert_eq!(
                    schedule.delay_after(i64::from(n)),
                    policy.delay_after(n).map(|d| i64::try_from(d)
                        .map_or(LONGEST_LOCK_SECS, |d| d.min(LONGEST_LOCK_SECS))),
                    "{policy:?} after {n}"
                );
            }
        }
    }

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
