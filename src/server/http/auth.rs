//! HTTP Basic logins with keyftpd's accounts.
//!
//! A password check is a SHA-crypt hash (a few ms), too slow to repeat on
//! every request of a keep-alive WebDAV client, so an accepted
//! `Authorization` value is remembered (in memory, a bounded set). Every
//! check goes through keyftpd's login gate, the one FTP logins use: a
//! failure counts toward the same per-address delays and bans, a refused
//! password is answered 401 after the address's delay, and a banned or
//! waiting address gets 429 with `Retry-After`. Without credentials, a server that allows anonymous
//! logins lets a request read.
//!
//! Under `--require-tls`, a request over plain HTTP that carries
//! credentials is answered 403 with the reason, its password never
//! checked (nor counted as a failure), and no 401 is sent there (it would
//! make a browser prompt for a password to send in the clear): the plain
//! listener stays useful for anonymous reads and for a redirect in front
//! of it, while passwords travel only over HTTPS. Refusing to start
//! instead would forbid that harmless use and still not stop a client
//! from sending a password to the port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use base64::Engine;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};

use super::reply::{self, Resp};
use super::Ctx;
use crate::server::gate::Refusal;

/// Remembered accepted credentials, at most this many.
const CACHE_MAX: usize = 256;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    User(String),
    /// Read-only.
    Anonymous,
}

impl Who {
    /// The account name (an upload's owner).
    pub fn name(&self) -> &str {
        match self {
            Who::User(n) => n,
            Who::Anonymous => "anonymous",
        }
    }
}

/// Accepted `Authorization` values and who they log in.
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<String, Who>>);

impl Cache {
    fn get(&self, k: &str) -> Option<Who> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    fn put(&self, k: &str, who: Who) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_MAX {
            m.clear();
        }
        m.insert(k.to_string(), who);
    }
}

/// The 401 that asks for credentials.
pub(crate) fn challenge(reason: &str) -> Resp {
    let mut r = reply::text(StatusCode::UNAUTHORIZED, reason);
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"keyftpd\", charset=\"UTF-8\""),
    );
    r
}

/// Under `--require-tls` over plain HTTP: the 403 that says where to log in.
fn tls_required() -> Resp {
    reply::text(
        StatusCode::FORBIDDEN,
        "this server takes passwords over HTTPS only (--require-tls); use https://",
    )
}

/// The answer that asks for a login: a 401 challenge, or over plain HTTP
/// under `--require-tls` the 403 that points to HTTPS.
pub(crate) fn ask_login(ctx: &Ctx, secure: bool, reason: &str) -> Resp {
    if ctx.cfg.require_tls && !secure {
        tls_required()
    } else {
        challenge(reason)
    }
}

/// The longest a request waits for its address's turn at the gate.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// 429 with `Retry-After`: the address must wait (or is banned).
fn too_many(retry_after: std::time::Duration) -> Resp {
    let secs = retry_after.as_secs().max(1);
    let mut r = reply::text(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed logins from this address; retry in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

/// `user:password` from a Basic `Authorization` value.
fn parse_basic(v: &str) -> Option<(String, String)> {
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Who sent the request (`secure`: over TLS), or the 401 or 403 to answer.
pub(crate) async fn authenticate(
    ctx: &Ctx,
    peer: SocketAddr,
    secure: bool,
    h: &HeaderMap,
) -> Result<Who, Resp> {
    let Some(value) = h.get(AUTHORIZATION) else {
        if ctx.backend.anonymous_allowed() {
            return Ok(Who::Anonymous);
        }
        return Err(ask_login(ctx, secure, "authentication required"));
    };
    if ctx.cfg.require_tls && !secure {
        log::warn!("http: credentials over plain HTTP from {peer} refused (--require-tls)");
        return Err(tls_required());
    }
    let Ok(value) = value.to_str() else {
        return Err(challenge("malformed Authorization header"));
    };
    if let Some(who) = ctx.auth.get(value) {
        return Ok(who);
    }
    let Some((user, pass)) = parse_basic(value) else {
        return Err(challenge("expected Basic credentials"));
    };
    // The shared gate: wait for this address's turn without holding a
    // thread, check the password on a blocking thread, and hold a refusal
    // back by the address's delay.
    let gate = ctx.backend.gate().clone();
    let ticket = loop {
        match gate.try_begin(peer.ip()) {
            Ok(t) => break t,
            Err(Refusal::Wait { retry_after }) if retry_after <= MAX_WAIT => {
                tokio::time::sleep(retry_after).await;
            }
            Err(Refusal::Wait { retry_after }) | Err(Refusal::Banned { retry_after }) => {
                return Err(too_many(retry_after));
            }
            Err(Refusal::Denied { .. }) => return Err(challenge("login incorrect")),
        }
    };
    let u = user.clone();
    let login = tokio::task::spawn_blocking(move || ticket.verify(&u, &pass)).await;
    let who = match login {
        Ok(Ok(l)) if l.anonymous => Who::Anonymous,
        Ok(Ok(l)) => Who::User(l.name),
        Ok(Err(Refusal::Denied { delay })) => {
            log::warn!("http: failed login for {user} from {peer}");
            tokio::time::sleep(delay).await;
            return Err(challenge("login incorrect"));
        }
        Ok(Err(Refusal::Wait { retry_after })) | Ok(Err(Refusal::Banned { retry_after })) => {
            return Err(too_many(retry_after));
        }
        Err(_) => return Err(challenge("login check failed")),
    };
    log::info!("http: login {user} from {peer}");
    ctx.auth.put(value, who.clone());
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_values() {
        assert_eq!(
            parse_basic("Basic dTpwdw=="),
            Some(("u".into(), "pw".into()))
        );
        assert_eq!(
            parse_basic("basic dTpwOnc="),
            Some(("u".into(), "p:w".into()))
        );
        assert_eq!(parse_basic("Bearer dTpwdw=="), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic dXB3"), None);
    }
}
