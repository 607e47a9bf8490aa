//! Session commands: login, FEAT, and the transfer parameters that keyftpd
//! accepts but need no state (binary and ASCII types are both sent as-is,
//! only stream mode and file structure exist).

use std::io::{self, Write};

use super::session::Session;

/// Wrong passwords allowed per connection before it is closed.
const MAX_LOGIN_FAILURES: u32 = 3;

/// Commands allowed before login.
pub(crate) fn allowed_before_login(verb: &str) -> bool {
    matches!(
        verb,
        "USER" | "PASS" | "QUIT" | "NOOP" | "SYST" | "FEAT" | "OPTS" | "HELP" | "AUTH"
    )
}

/// The features listed by FEAT, one per line.
const FEATURES: [&str; 10] = [
    "KEY",
    "XCRC",
    "MLST type*;size*;modify*;perm*;x.keystate*;x.key*;",
    "REST STREAM",
    "SIZE",
    "MDTM",
    "MFMT",
    "EPSV",
    "PASV",
    "UTF8",
];

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    match verb {
        "USER" => {
            if s.user.is_some() {
                return s.reply(530, "Already logged in");
            }
            let name = arg.trim();
            if name.is_empty() {
                return s.reply(501, "USER needs a name");
            }
            s.pending_user = Some(name.chars().take(64).collect());
            if s.shared.cfg.accounts.is_anonymous(name) {
                s.reply(331, "Anonymous login ok, send any password")
            } else {
                s.reply(331, "Password required")
            }
        }
        "PASS" => {
            if s.user.is_some() {
                return s.reply(230, "Already logged in");
            }
            let Some(name) = s.pending_user.take() else {
                return s.reply(503, "Send USER first");
            };
            if s.shared.cfg.accounts.check(&name, arg) {
                log::info!("session {}: login {name} from {}", s.id, s.peer);
                s.anonymous = s.shared.cfg.accounts.is_anonymous(&name);
                s.user = Some(name);
                s.reply(230, "Login successful")
            } else {
                log::warn!("session {}: failed login for {name} from {}", s.id, s.peer);
                std::thread::sleep(s.shared.cfg.auth_fail_delay);
                s.failed_logins += 1;
                if s.failed_logins >= MAX_LOGIN_FAILURES {
                    s.quit = true;
                    return s.reply(421, "Too many failed logins, closing");
                }
                s.reply(530, "Login incorrect")
            }
        }
        "QUIT" => {
            s.quit = true;
            s.reply(221, "Goodbye")
        }
        "NOOP" => s.reply(200, "NOOP ok"),
        "SYST" => s.reply(215, "UNIX Type: L8"),
        "FEAT" => {
            let mut out = String::from("211-Features:\r\n");
            for f in FEATURES {
                out.push(' ');
                out.push_str(f);
                out.push_str("\r\n");
            }
            out.push_str("211 End\r\n");
            (&s.ctrl).write_all(out.as_bytes())
        }
        "OPTS" => {
            let a = arg.trim().to_ascii_uppercase();
            if a.starts_with("UTF8") || a.starts_with("UTF-8") {
                s.reply(200, "UTF8 mode is always on")
            } else if a.starts_with("MLST") {
                s.reply(200, "MLST OPTS type;size;modify;perm;x.keystate;x.key;")
            } else {
                s.reply(501, "Option not understood")
            }
        }
        "TYPE" => match arg.trim().to_ascii_uppercase().as_str() {
            "I" | "L 8" | "L8" => s.reply(200, "Type set to I"),
            "A" | "A N" => s.reply(200, "Type set to A"),
            _ => s.reply(504, "Type not supported"),
        },
        "MODE" => match arg.trim().to_ascii_uppercase().as_str() {
            "S" => s.reply(200, "Mode set to S"),
            _ => s.reply(504, "Only stream mode is supported"),
        },
        "STRU" => match arg.trim().to_ascii_uppercase().as_str() {
            "F" => s.reply(200, "Structure set to F"),
            _ => s.reply(504, "Only file structure is supported"),
        },
        "HELP" => s.reply(214, "See FEAT; KEY and XCRC are described in keyftp(7)"),
        "ALLO" => s.reply(202, "No storage allocation necessary"),
        "ACCT" => s.reply(202, "No account needed"),
        "STAT" => s.reply(211, "keyftpd status: ok"),
        "AUTH" | "PBSZ" | "PROT" => s.reply(502, "TLS is not supported"),
        _ => s.reply(502, "Command not implemented"),
    }
}
