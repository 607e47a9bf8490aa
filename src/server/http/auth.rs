//! HTTP Basic logins with keyftpd's accounts.
//!
//! A password check is a SHA-crypt hash (a few ms), too slow to repeat on
//! every request of a keep-alive WebDAV client, so an accepted
//! `Authorization` value is remembered (in memory, a bounded set). A
//! refused one waits the server's failure delay before its 401, as a wrong
//! FTP password does. Without credentials, a server that allows anonymous
//! logins lets a request read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use base64::Engine;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};

use super::backend::Login;
use super::reply::{self, Resp};
use super::Ctx;

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

/// Who sent the request, or the 401 to answer.
pub(crate) async fn authenticate(ctx: &Ctx, peer: SocketAddr, h: &HeaderMap) -> Result<Who, Resp> {
    let Some(value) = h.get(AUTHORIZATION) else {
        if ctx.backend.anonymous_allowed() {
            return Ok(Who::Anonymous);
        }
        return Err(challenge("authentication required"));
    };
    let Ok(value) = value.to_str() else {
        return Err(challenge("malformed Authorization header"));
    };
    if let Some(who) = ctx.auth.get(value) {
        return Ok(who);
    }
    let Some((user, pass)) = parse_basic(value) else {
        return Err(challenge("expected Basic credentials"));
    };
    let be = ctx.backend.clone();
    let u = user.clone();
    let login = tokio::task::spawn_blocking(move || be.login(peer.ip(), &u, &pass))
        .await
        .unwrap_or(Login::Refused);
    let who = match login {
        Login::User(n) => Who::User(n),
        Login::Anonymous => Who::Anonymous,
        Login::Refused => {
            log::warn!("http: failed login for {user} from {peer}");
            tokio::time::sleep(ctx.backend.auth_fail_delay()).await;
            return Err(challenge("login incorrect"));
        }
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
