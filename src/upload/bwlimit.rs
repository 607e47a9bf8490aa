//! The `--bwlimit` token bucket, shared by all workers so the cap holds
//! for the whole mount (a set-top box on a shared uplink).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `rate` bytes per second; bursts up to a quarter second of traffic.
    pub fn new(rate: u64) -> TokenBucket {
        let rate = rate.max(1) as f64;
        let burst = (rate / 4.0).max(1.0);
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// A chunk size that keeps the flow smooth at this rate.
    pub fn chunk_hint(&self, max: usize) -> usize {
        ((self.rate / 10.0) as usize).clamp(4096, max.max(4096))
    }

    /// Takes `n` tokens, sleeping as long as the debt requires.
    pub fn acquire(&self, n: usize) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let elapsed = now.duration_since(st.1).as_secs_f64();
            st.0 = (st.0 + elapsed * self.rate).min(self.burst);
            st.1 = now;
            st.0 -= n as f64;
            if st.0 < 0.0 {
                -st.0 / self.rate
            } else {
                0.0
            }
        };
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_rate() {
        let b = TokenBucket::new(400_000);
        let t = Instant::now();
        for _ in 0..20 {
            b.acquire(20_000); // 400 kB total, 100 kB burst
        }
        let el = t.elapsed().as_secs_f64();
        // Never faster than the rate allows; the upper bound only catches a
        // broken bucket (sleeps overshoot on a loaded machine).
        assert!((0.7..5.0).contains(&el), "{el}");
    }
}
