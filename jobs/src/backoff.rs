//! How long a failed job waits before its next attempt.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A retry delay policy. The delay is stored in the job's `run_at`, so a waiting job holds no
/// worker slot and survives restarts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Backoff {
    /// `base · 2^(attempt-1)`, capped at `max`, then spread by `±jitter` (a fraction).
    Exponential {
        /// The delay after the first failed attempt.
        #[serde(with = "millis")]
        base: Duration,
        /// The longest delay.
        #[serde(with = "millis")]
        max: Duration,
        /// The spread, as a fraction of the delay (0.1 = ±10 %).
        jitter: f64,
    },
    /// The same delay after every attempt, spread by `±jitter`.
    Fixed {
        /// The delay.
        #[serde(with = "millis")]
        delay: Duration,
        /// The spread, as a fraction of the delay.
        jitter: f64,
    },
}

impl Backoff {
    /// 15 s doubling per attempt up to 6 h, ±10 %: twenty attempts span about three days.
    pub const DEFAULT: Backoff = Backoff::Exponential {
        base: Duration::from_secs(15),
        max: Duration::from_secs(6 * 3600),
        jitter: 0.1,
    };

    /// The delay after failed attempt `attempt` (1-based), before jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        match *self {
            Backoff::Exponential { base, max, .. } => {
                let doublings = attempt.saturating_sub(1).min(63) as i32;
                let secs = base.as_secs_f64() * 2f64.powi(doublings);
                if secs >= max.as_secs_f64() {
                    max
                } else {
                    Duration::from_secs_f64(secs)
                }
            }
            Backoff::Fixed { delay, .. } => delay,
        }
    }

    /// The jitter fraction of this policy.
    pub fn jitter(&self) -> f64 {
        match *self {
            Backoff::Exponential { jitter, .. } | Backoff::Fixed { jitter, .. } => jitter,
        }
    }

    /// The delay after failed attempt `attempt`, with jitter drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let nominal = crate::limits::bounded(self.nominal(attempt));
        let jitter = self.jitter().clamp(0.0, 1.0);
        if jitter == 0.0 {
            return nominal;
        }
        let factor = rng.random_range((1.0 - jitter)..=(1.0 + jitter));
        nominal.mul_f64(factor)
    }

    /// Checks the policy's numbers, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let jitter = self.jitter();
        if !(0.0..=1.0).contains(&jitter) {
            return Err(format!("jitter must be between 0 and 1, got {jitter}"));
        }
        if let Backoff::Exponential { base, max, .. } = self
            && base > max
        {
            return Err("base must not exceed max".to_owned());
        }
        Ok(())
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_and_caps() {
        let b = Backoff::Exponential {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
            jitter: 0.0,
        };
        let delays: Vec<u64> = (1..=6).map(|a| b.nominal(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.nominal(200), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::DEFAULT;
        let mut rng = rand::rng();
        for attempt in 1..=25 {
            let nominal = b.nominal(attempt).as_secs_f64();
            let d = b.delay(attempt, &mut rng).as_secs_f64();
            assert!(d >= nominal * 0.9 - 1e-9 && d <= nominal * 1.1 + 1e-9);
        }
    }

    #[test]
    fn validation_names_the_bad_number() {
        let b = Backoff::Fixed {
            delay: Duration::from_secs(1),
            jitter: 2.0,
        };
        assert!(b.validate().unwrap_err().contains("jitter"));
    }
}
