//! Session commands: login, FEAT, and the transfer parameters that keyftpd
//! accepts but need no state (binary and ASCII types are both sent as-is,
//! only stream mode and file structure exist).

use std::io::{self, Write};

use super::session::{format_reply, Session};

/// Commands a connection may send before it logs in (the lobby answers them).
pub(crate) fn allowed_before_login(verb: &str) -> bool {
    matches!(
        verb,
        "USER" | "PASS" | "QUIT" | "NOOP" | "SYST" | "FEAT" | "OPTS" | "HELP" | "AUTH"
    )
}

/// The features listed by FEAT, one per line.
const FEATURES: [&str; 12] = [
    "KEY",
    "XCRC",
    super::cmd_hash::FEATURE,
    "MLST type*;size*;modify*;perm*;x.keystate*;x.key*;",
    "REST STREAM",
    "SIZE",
    "MDTM",
    "MFMT",
    "EPSV",
    "EPRT",
    "PASV",
    "UTF8",
];

/// The commands HELP lists.
const COMMANDS: &str = "USER PASS QUIT NOOP SYST FEAT OPTS HELP TYPE MODE STRU ALLO STAT\n\
PWD CWD CDUP MKD RMD DELE RNFR RNTO SIZE MDTM\n\
PASV EPSV PORT EPRT REST RETR STOR APPE ABOR LIST NLST MLSD MLST\n\
MFMT KEY XCRC HASH RANG (see keyftp(7))\n\
AUTH PBSZ PROT CCC (with a certificate)";

/// What FEAT adds when TLS is configured (RFC 4217).
const TLS_FEATURES: [&str; 3] = ["AUTH TLS", "PBSZ", "PROT"];

/// PROT's reply and the new protection (true for P), given whether PBSZ came first.
/// PROT C is the level a session starts at, so it needs no PBSZ.
pub(crate) fn prot(pbsz: bool, arg: &str) -> (u16, &'static str, Option<bool>) {
    match arg.trim().to_ascii_uppercase().as_str() {
        "P" if !pbsz => (503, "Send PBSZ first", None),
        "P" => (200, "Protection level set to P", Some(true)),
        "C" => (200, "Protection level set to C", Some(false)),
        "S" | "E" => (536, "Only C and P are supported", None),
        _ => (504, "PROT needs C or P", None),
    }
}

/// The wire reply to a command that needs no session state, or None when
/// `verb` is not one of them (or not allowed before login). `tls`: the
/// server has a certificate.
pub(crate) fn before_login(verb: &str, arg: &str, tls: bool) -> Option<String> {
    let (code, text) = match verb {
        "NOOP" => (200, "NOOP ok".to_string()),
        "SYST" => (215, "UNIX Type: L8".to_string()),
        "FEAT" => {
            let mut out = String::from("211-Features:\r\n");
            let extra = if tls { &TLS_FEATURES[..] } else { &[] };
            for f in FEATURES.iter().chain(extra) {
                out.push(' ');
                out.push_str(f);
                out.push_str("\r\n");
            }
            out.push_str("211 End\r\n");
            return Some(out);
        }
        "OPTS" => {
            let a = arg.trim().to_ascii_uppercase();
            if a.starts_with("UTF8") || a.starts_with("UTF-8") {
                (200, "UTF8 mode is always on".to_string())
            } else if a.starts_with("HASH") {
                super::cmd_hash::opts(arg)
            } else if a.starts_with("MLST") {
                (
                    200,
                    "MLST OPTS type;size;modify;perm;x.keystate;x.key;".to_string(),
                )
            } else {
                (501, "Option not understood".to_string())
            }
        }
        "HELP" => (
            214,
            format!("The following commands are recognized:\n{COMMANDS}\nHelp OK"),
        ),
        "AUTH" => (502, "TLS is not supported".to_string()),
        _ => return None,
    };
    Some(format_reply(code, &text))
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    let tls = s.shared.cfg.tls.is_some();
    if verb == "AUTH" && tls {
        return match s.tls_token {
            Some(_) => s.reply(503, "TLS is already active"),
            None => s.reply(503, "AUTH TLS must come before login"),
        };
    }
    if let Some(wire) = before_login(verb, arg, tls) {
        return s.ctrl.write_all(wire.as_bytes());
    }
    match verb {
        // Sessions start logged in (the lobby logs them in).
        "USER" => s.reply(530, "Already logged in"),
        "PASS" => s.reply(230, "Already logged in"),
        "QUIT" => {
            s.quit = true;
            s.reply(221, "Goodbye")
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
        "ALLO" => s.reply(202, "No storage allocation necessary"),
        "ACCT" => s.reply(202, "No account needed"),
        "STAT" => s.reply(211, "keyftpd status: ok"),
        "PBSZ" | "PROT" | "CCC" if !tls => s.reply(502, "TLS is not supported"),
        "PBSZ" | "PROT" | "CCC" if s.tls_token.is_none() => s.reply(503, "Send AUTH TLS first"),
        "PBSZ" => {
            s.pbsz = true;
            s.reply(200, "PBSZ=0")
        }
        "PROT" => {
            let (code, text, p) = prot(s.pbsz, arg);
            if let Some(p) = p {
                s.prot_private = p;
            }
            s.reply(code, text)
        }
        "CCC" => s.reply(534, "CCC refused: the control connection stays encrypted"),
        _ => s.reply(502, "Command not implemented"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_levels() {
        assert_eq!(prot(false, "P"), (503, "Send PBSZ first", None));
        assert_eq!(prot(true, " p ").2, Some(true));
        assert_eq!(prot(false, "C").2, Some(false));
        assert_eq!(prot(true, "S").0, 536);
        assert_eq!(prot(true, "X").0, 504);
    }

    #[test]
    fn feat_lists_tls_only_with_a_certificate() {
        let with = before_login("FEAT", "", true).unwrap_or_default();
        let without = before_login("FEAT", "", false).unwrap_or_default();
        for f in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
            assert!(with.contains(f), "{with}");
            assert!(!without.contains(f), "{without}");
        }
    }
}
