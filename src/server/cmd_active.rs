//! Active mode: PORT and EPRT name where the server connects for the next
//! transfer. Only the control connection's own peer address (and an
//! unprivileged port) is taken, so the server cannot be used to reach a
//! third host (no FTP bounce, RFC 2577); refusals get 504.

use std::io;
use std::net::TcpStream;

use super::data::{self, ActiveError};
use super::session::{one_line, Session};

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    if s.epsv_all {
        return s.reply(503, "EPSV ALL is in force; use EPSV");
    }
    let parsed = if verb == "PORT" {
        data::parse_port(arg)
    } else {
        data::parse_eprt(arg)
    };
    let to = match parsed {
        Ok(a) => a,
        Err(ActiveError::Family) => {
            return s.reply(522, "Network protocol not supported, use (1,2)")
        }
        Err(ActiveError::Syntax) => return s.reply(501, &format!("Bad {verb} argument")),
    };
    if !data::active_allowed(to, s.peer.ip()) {
        log::warn!(
            "session {}: {verb} to {to} refused: control peer is {}",
            s.id,
            s.peer
        );
        return s.reply(
            504,
            &format!(
                "{verb} refused: data connections go only to your own address ({}), port 1024 or above",
                s.peer.ip().to_canonical()
            ),
        );
    }
    s.passive = None;
    s.active = Some(to);
    s.reply(200, &format!("{verb} command successful"))
}

/// Connects the data connection set by PORT/EPRT. On failure replies 425
/// and returns None.
pub(crate) fn connect(s: &mut Session, to: std::net::SocketAddr) -> io::Result<Option<TcpStream>> {
    match data::connect_active(s.local.ip(), to, s.shared.cfg.data_timeout, &s.shared.stop) {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            log::warn!("session {}: active connect to {to}: {e}", s.id);
            s.reply(
                425,
                &format!("Cannot open data connection: {}", one_line(&e)),
            )?;
            Ok(None)
        }
    }
}
