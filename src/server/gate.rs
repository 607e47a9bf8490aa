//! The login gate: the one place that decides whether a password may be
//! checked now, checks it, and remembers failures by source address. It
//! knows no protocol, so every face of the server (FTP, HTTP Basic auth)
//! shares the same limits.
//!
//! Per address (an IPv4 address, or an IPv6 /64, since one host commonly
//! holds a whole /64):
//! - one password check at a time; others from that address wait their turn;
//! - after the n-th failure, the next check waits `fail_delay * 2^(n-1)`
//!   (at most `max_delay`). The failed reply is held back as long, so a
//!   client that waits for its reply never notices; parallel connections
//!   queue behind each other, so fifty of them guess no faster than one;
//! - `ban_after` failures ban the address for `ban_time`;
//! - failures are forgotten `forget_after` after the last one. A successful
//!   login does not forget them (an attacker holding one account must not
//!   reset the count to keep guessing another).
//!
//! Overall: checks from addresses that have failed draw on one token bucket
//! of `global_rate` per second, bounding many addresses together, while an
//! address with no failures (the usual user) never waits for it. The table
//! of addresses is bounded; when it is full, unknown addresses are checked
//! as if they had failed before (they draw on the bucket).
//!
//! Two ways in: [`LoginGate::check`] blocks (a thread per request), and
//! [`LoginGate::try_begin`] + [`Ticket::verify`] never wait, for an event
//! loop that parks the request and retries after [`Refusal::Wait`].

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::auth::Accounts;

/// The limits of a [`LoginGate`].
#[derive(Clone, Debug)]
pub struct GateLimits {
    /// The wait after an address's first failure; it doubles with each further one.
    pub fail_delay: Duration,
    /// The longest wait between two checks from one address.
    pub max_delay: Duration,
    /// Failures (not yet forgotten) that ban an address; 0: never ban.
    pub ban_after: u32,
    /// How long a ban lasts.
    pub ban_time: Duration,
    /// Failures are forgotten this long after an address's last one.
    pub forget_after: Duration,
    /// Checks per second, over all addresses that have failed; 0: no limit.
    pub global_rate: u32,
    /// The longest [`LoginGate::check`] waits for its turn.
    pub max_wait: Duration,
    /// Addresses remembered at most.
    pub max_tracked: usize,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            fail_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            ban_after: 10,
            ban_time: Duration::from_secs(600),
            forget_after: Duration::from_secs(900),
            global_rate: 10,
            max_wait: Duration::from_secs(30),
            max_tracked: 65_536,
        }
    }
}

/// A successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The account name.
    pub name: String,
    /// Logged in as `anonymous`/`ftp` (read-only).
    pub anonymous: bool,
}

/// Why a login was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong name or password (one answer for both). From
    /// [`Ticket::verify`], the caller holds its reply back by `delay`;
    /// [`LoginGate::check`] has already waited it.
    Denied { delay: Duration },
    /// No password was checked: this address must wait (its last failure,
    /// or another check from it in progress, or the overall limit).
    Wait { retry_after: Duration },
    /// The address is banned for this much longer.
    Banned { retry_after: Duration },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied { .. } => write!(f, "Login incorrect"),
            Refusal::Wait { retry_after } => write!(
                f,
                "Too many failed logins; try again in {} s",
                retry_after.as_secs().max(1)
            ),
            Refusal::Banned { retry_after } => write!(
                f,
                "Too many failed logins from your address; banned for {} s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

/// How soon to retry while another check from the same address runs
/// (a check takes a few milliseconds).
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(10);

/// Shared, cloneable login gate over a set of accounts.
#[derive(Clone)]
pub struct LoginGate {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Accounts,
    limits: GateLimits,
    state: Mutex<State>,
}

struct State {
    table: HashMap<IpAddr, Record>,
    tokens: f64,
    refilled: Instant,
    pruned: Instant,
}

struct Record {
    failures: u32,
    last_failure: Instant,
    next_try: Instant,
    in_flight: bool,
    banned_until: Option<Instant>,
}

/// The right to check one password from one address now. Dropping it
/// unused gives the turn back.
pub struct Ticket {
    gate: LoginGate,
    /// None when the address is not tracked (table full).
    key: Option<IpAddr>,
    peer: IpAddr,
    done: bool,
}

/// The address's key: IPv4 (also when IPv4-mapped), or the IPv6 /64.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl LoginGate {
    /// A gate over `accounts` with `limits`.
    pub fn new(accounts: Accounts, limits: GateLimits) -> LoginGate {
        let now = Instant::now();
        LoginGate {
            inner: Arc::new(Inner {
                accounts,
                state: Mutex::new(State {
                    table: HashMap::new(),
                    tokens: f64::from(limits.global_rate.max(1)),
                    refilled: now,
                    pruned: now,
                }),
                limits,
            }),
        }
    }

    /// The accounts behind the gate.
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    /// The limits in force.
    pub fn limits(&self) -> &GateLimits {
        &self.inner.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How much longer `peer` is banned, if it is.
    pub fn banned(&self, peer: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let st = self.lock();
        let until = st.table.get(&ip_key(peer))?.banned_until?;
        (until > now).then(|| until - now)
    }

    /// Checks a login, waiting (at most `max_wait`) for the address's turn,
    /// and on a wrong password waiting the failure delay before returning.
    pub fn check(&self, peer: IpAddr, user: &str, pass: &str) -> Result<Login, Refusal> {
        let start = Instant::now();
        let ticket = loop {
            match self.try_begin(peer) {
                Ok(t) => break t,
                Err(Refusal::Wait { retry_after }) => {
                    if start.elapsed() + retry_after > self.inner.limits.max_wait {
                        return Err(Refusal::Wait { retry_after });
                    }
                    std::thread::sleep(retry_after);
                }
                Err(e) => return Err(e),
            }
        };
        let r = ticket.verify(user, pass);
        if let Err(Refusal::Denied { delay }) = r {
            std::thread::sleep(delay);
        }
        r
    }

    /// The right to check a password from `peer` now, or why not (never waits).
    pub fn try_begin(&self, peer: IpAddr) -> Result<Ticket, Refusal> {
        let lim = &self.inner.limits;
        let now = Instant::now();
        let key = ip_key(peer);
        let mut st = self.lock();
        if now.duration_since(st.pruned) >= Duration::from_secs(1)
            || st.table.len() >= lim.max_tracked
        {
            st.prune(now, lim.forget_after);
        }
        if !st.table.contains_key(&key) && st.table.len() >= lim.max_tracked {
            st.take_token(now, lim.global_rate)?;
            return Ok(self.ticket(None, peer));
        }
        let rec = st.table.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
            next_try: now,
            in_flight: false,
            banned_until: None,
        });
        if let Some(until) = rec.banned_until {
            if until > now {
                return Err(Refusal::Banned {
                    retry_after: until - now,
                });
            }
            rec.banned_until = None;
            rec.failures = 0;
        }
        if rec.failures > 0 && now.duration_since(rec.last_failure) >= lim.forget_after {
            rec.failures = 0;
        }
        if rec.in_flight {
            return Err(Refusal::Wait {
                retry_after: IN_FLIGHT_RETRY,
            });
        }
        if now < rec.next_try {
            return Err(Refusal::Wait {
                retry_after: rec.next_try - now,
            });
        }
        if rec.failures > 0 {
            st.take_token(now, lim.global_rate)?;
        }
        if let Some(rec) = st.table.get_mut(&key) {
            rec.in_flight = true;
        }
        Ok(self.ticket(Some(key), peer))
    }

    fn ticket(&self, key: Option<IpAddr>, peer: IpAddr) -> Ticket {
        Ticket {
            gate: self.clone(),
            key,
            peer,
            done: false,
        }
    }
}

impl State {
    /// Drops what no longer matters: clean addresses, forgotten failures, ended bans.
    fn prune(&mut self, now: Instant, forget_after: Duration) {
        self.pruned = now;
        self.table.retain(|_, r| {
            r.in_flight
                || r.banned_until.is_some_and(|u| u > now)
                || r.next_try > now
                || (r.failures > 0 && now.duration_since(r.last_failure) < forget_after)
        });
    }

    fn take_token(&mut self, now: Instant, rate: u32) -> Result<(), Refusal> {
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Refusal::Wait {
            retry_after: Duration::from_secs_f64((1.0 - self.tokens) / rate),
        })
    }
}

impl Ticket {
    /// Checks the password (one hash verification, known name or not) and
    /// records the outcome for the address.
    pub fn verify(mut self, user: &str, pass: &str) -> Result<Login, Refusal> {
        self.done = true;
        let inner = &self.gate.inner;
        let lim = &inner.limits;
        let ok = inner.accounts.check(user, pass);
        let now = Instant::now();
        let mut st = self.gate.lock();
        let rec = self.key.and_then(|k| st.table.get_mut(&k));
        if ok {
            if let Some(r) = rec {
                r.in_flight = false;
            }
            return Ok(Login {
                name: user.to_string(),
                anonymous: inner.accounts.is_anonymous(user),
            });
        }
        let Some(r) = rec else {
            log::warn!("failed login for {user:?} from {}", self.peer);
            return Err(Refusal::Denied {
                delay: lim.fail_delay,
            });
        };
        r.in_flight = false;
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        let doubling = 1u32 << (r.failures - 1).min(20);
        let delay = lim.fail_delay.saturating_mul(doubling).min(lim.max_delay);
        r.next_try = now + delay;
        let failures = r.failures;
        if lim.ban_after > 0 && failures >= lim.ban_after {
            r.banned_until = Some(now + lim.ban_time);
            log::warn!(
                "failed login for {user:?} from {}: {failures} failures, address banned for {} s",
                self.peer,
                lim.ban_time.as_secs()
            );
        } else {
            log::warn!(
                "failed login for {user:?} from {}: {failures} failures, next check in {} ms",
                self.peer,
                delay.as_millis()
            );
        }
        Err(Refusal::Denied { delay })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(k) = self.key {
            let mut st = self.gate.lock();
            if let Some(r) = st.table.get_mut(&k) {
                r.in_flight = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn gate(fail_ms: u64, f: impl FnOnce(&mut GateLimits)) -> LoginGate {
        let mut l = GateLimits {
            fail_delay: Duration::from_millis(fail_ms),
            ..GateLimits::default()
        };
        f(&mut l);
        LoginGate::new(Accounts::single("u", "pw").with_anonymous(true), l)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn one_check_at_a_time_per_address() {
        let g = gate(50, |_| {});
        let t = g.try_begin(ip("10.0.0.1"));
        assert!(t.is_ok());
        assert!(matches!(
            g.try_begin(ip("10.0.0.1")),
            Err(Refusal::Wait { .. })
        ));
        assert!(g.try_begin(ip("10.0.0.2")).is_ok());
        drop(t);
        assert!(g.try_begin(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn delays_double_and_are_capped() {
        let g = gate(10, |l| l.max_delay = Duration::from_millis(40));
        let a = ip("10.0.0.1");
        let mut delays = Vec::new();
        for _ in 0..5 {
            let t = loop {
                match g.try_begin(a) {
                    Ok(t) => break t,
                    Err(Refusal::Wait { retry_after }) => std::thread::sleep(retry_after),
                    Err(e) => panic!("{e}"),
                }
            };
            match t.verify("u", "bad") {
                Err(Refusal::Denied { delay }) => delays.push(delay.as_millis()),
                other => panic!("{other:?}"),
            }
            // Right after a failure, the address waits.
            assert!(matches!(g.try_begin(a), Err(Refusal::Wait { .. })));
        }
        assert_eq!(delays, vec![10, 20, 40, 40, 40]);
        // The right password still works once the wait is over, and the
        // failures are not forgotten by it.
        std::thread::sleep(Duration::from_millis(45));
        assert_eq!(g.check(a, "u", "pw").map(|l| l.name), Ok("u".to_string()));
        assert!(matches!(
            g.try_begin(a).map(|t| t.verify("u", "bad")),
            Ok(Err(Refusal::Denied { delay })) if delay.as_millis() == 40
        ));
    }

    #[test]
    fn ban_after_n_failures_only_for_that_address() {
        let g = gate(0, |l| l.ban_after = 3);
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert!(matches!(
                g.check(a, "nosuchuser", "x"),
                Err(Refusal::Denied { .. })
            ));
        }
        assert!(matches!(g.check(a, "u", "pw"), Err(Refusal::Banned { .. })));
        assert!(g.banned(a).is_some());
        assert!(g.banned(ip("10.0.0.2")).is_none());
        assert!(g.check(ip("10.0.0.2"), "u", "pw").is_ok());
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        assert_eq!(ip_key(ip("2001:db8::1")), ip_key(ip("2001:db8::ffff:2")));
        assert_ne!(ip_key(ip("2001:db8::1")), ip_key(ip("2001:db8:0:1::1")));
        assert_eq!(ip_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let g = gate(0, |l| l.ban_after = 2);
        let _ = g.check(ip("2001:db8::1"), "u", "x");
        let _ = g.check(ip("2001:db8::2"), "u", "x");
        assert!(g.banned(ip("2001:db8::3")).is_some());
    }

    #[test]
    fn overall_rate_bounds_many_failing_addresses_not_clean_ones() {
        let g = gate(0, |l| l.global_rate = 3);
        // Each address fails once (a clean address never waits for the bucket).
        for i in 1..=10 {
            assert!(matches!(
                g.check(ip(&format!("10.0.1.{i}")), "u", "x"),
                Err(Refusal::Denied { .. })
            ));
        }
        // Their second guesses draw on the bucket: 3 now, the rest wait.
        let mut ok = 0;
        let mut waits = 0;
        for i in 1..=10 {
            match g.try_begin(ip(&format!("10.0.1.{i}"))) {
                Ok(t) => {
                    ok += 1;
                    let _ = t.verify("u", "x");
                }
                Err(Refusal::Wait { .. }) => waits += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, waits), (3, 7));
        assert!(g.try_begin(ip("10.0.2.1")).is_ok());
    }

    #[test]
    fn a_full_table_treats_new_addresses_as_suspects() {
        let g = gate(0, |l| {
            l.max_tracked = 2;
            l.global_rate = 2;
            l.forget_after = Duration::from_secs(900);
        });
        let _ = g.check(ip("10.0.0.1"), "u", "x");
        let _ = g.check(ip("10.0.0.2"), "u", "x");
        let mut ok = 0;
        for i in 3..10 {
            if let Ok(t) = g.try_begin(ip(&format!("10.0.0.{i}"))) {
                ok += 1;
                drop(t);
            }
        }
        assert_eq!(ok, 2);
    }

    /// The bound the gate exists for: over one window, many threads of one
    /// address get no more checks than one thread.
    #[test]
    fn parallel_guessing_is_no_faster_than_serial() {
        let window = Duration::from_millis(400);
        let count = |threads: usize, addr: &str| {
            let g = gate(20, |_| {});
            let n = Arc::new(AtomicU32::new(0));
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let (g, n) = (g.clone(), n.clone());
                    s.spawn(move || {
                        while start.elapsed() < window {
                            if let Ok(t) = g.try_begin(ip(addr)) {
                                if t.verify("u", "x").is_err() {
                                    n.fetch_add(1, Ordering::SeqCst);
                                }
                            } else {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                    });
                }
            });
            n.load(Ordering::SeqCst)
        };
        let one = count(1, "10.0.0.1");
        let many = count(16, "10.0.0.2");
        // Checks at 0, 20, 60, 140, 300 ms (doubling from 20 ms): at most 5 in 400 ms.
        assert!(many <= 5 && one <= 5, "one {one} many {many}");
        assert!(many <= one + 1, "one {one} many {many}");
    }

    #[test]
    fn anonymous_and_success_leave_no_record() {
        let g = gate(0, |_| {});
        let l = g.check(ip("10.0.0.1"), "anonymous", "a@b");
        assert_eq!(
            l,
            Ok(Login {
                name: "anonymous".into(),
                anonymous: true
            })
        );
        assert!(g.check(ip("10.0.0.1"), "u", "pw").is_ok());
        g.lock().prune(Instant::now(), Duration::from_secs(900));
        assert!(g.lock().table.is_empty());
    }
}
