//! Capped exponential backoff with jitter, for reconnecting after a fault.
//! Jitter keeps N workers (and N clients after a server restart) from
//! hammering the server in lockstep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        let tid = format!("{:?}", std::thread::current().id());
        let seed = seed ^ crc32fast::hash(tid.as_bytes()) as u64 ^ 0x2545_F491_4F6C_DD1D;
        Backoff {
            next: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next delay: uniformly in [d/2, d], then d doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = d / 2;
        let span = (d - half).as_micros() as u64 + 1;
        half + Duration::from_micros(self.random() % span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_capped_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut prev_max = Duration::ZERO;
        for i in 0..12 {
            let d = b.next_delay();
            let nominal =
                (Duration::from_millis(100) * 2u32.pow(i.min(10))).min(Duration::from_secs(2));
            assert!(
                d <= nominal && d >= nominal / 2,
                "{i}: {d:?} vs {nominal:?}"
            );
            prev_max = prev_max.max(d);
        }
        assert!(prev_max <= Duration::from_secs(2));
    }

    #[test]
    fn a_huge_cap_does_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..4 {
            let _ = b.next_delay();
        }
    }
}
