//! Namespace commands: PWD CWD CDUP MKD RMD DELE RNFR RNTO SIZE MDTM MFMT.
//!
//! Everything acts through the store: a file's key metadata lives on the
//! file, so DELE removes it and RNTO carries it (for a directory, with
//! everything below it). A file with an upload in progress (in this
//! keyftpd or another on the same root) can be neither deleted nor
//! renamed, nor renamed onto (450).

use std::io;

use super::listing::{parse_timeval, timeval};
use super::session::Session;
use super::store::ErrorKind;

fn quote(p: &str) -> String {
    p.replace('"', "\"\"")
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    let writes = matches!(
        verb,
        "MKD" | "XMKD" | "RMD" | "XRMD" | "DELE" | "RNFR" | "RNTO" | "MFMT"
    );
    if writes && s.anonymous {
        return s.reply(550, "Anonymous sessions are read-only");
    }
    let store = s.shared.store.clone();
    match verb {
        "PWD" | "XPWD" => {
            let p = quote(&s.cwd.display());
            s.reply(257, &format!("\"{p}\" is the current directory"))
        }
        "CWD" | "XCWD" | "CDUP" | "XCUP" => {
            let arg = if matches!(verb, "CDUP" | "XCUP") {
                ".."
            } else {
                arg
            };
            let Some(v) = s.target(arg, None)? else {
                return Ok(());
            };
            match store.stat(&v) {
                Ok(st) if st.is_dir() => {
                    s.cwd = v;
                    let p = s.cwd.display();
                    s.reply(250, &format!("Directory changed to {p}"))
                }
                Ok(_) => s.reply(550, "Not a directory"),
                Err(e) if e.kind == ErrorKind::NotFound => s.reply(550, "No such directory"),
                Err(e) => s.store_error(verb, &e),
            }
        }
        "MKD" | "XMKD" => {
            let Some(v) = s.target(arg, Some((550, "Root exists")))? else {
                return Ok(());
            };
            match store.mkdir(&v) {
                Ok(()) => {
                    let p = quote(&v.display());
                    s.reply(257, &format!("\"{p}\" created"))
                }
                Err(e) => s.store_error("MKD", &e),
            }
        }
        "RMD" | "XRMD" => {
            let Some(v) = s.target(arg, Some((550, "Cannot remove the root")))? else {
                return Ok(());
            };
            match store.rmdir(&v) {
                Ok(()) => s.reply(250, "Directory removed"),
                Err(e) => s.store_error("RMD", &e),
            }
        }
        "DELE" => {
            let Some(v) = s.target(arg, Some((550, "Cannot delete the root")))? else {
                return Ok(());
            };
            match store.delete(&v) {
                Ok(()) => {
                    log::info!("session {}: DELE {}", s.id, v.display());
                    s.reply(250, "File deleted")
                }
                Err(e) if e.kind == ErrorKind::NotRegular => {
                    s.reply(550, "Is a directory (use RMD)")
                }
                Err(e) => s.store_error("DELE", &e),
            }
        }
        "RNFR" => {
            let Some(v) = s.target(arg, Some((550, "Cannot rename the root")))? else {
                return Ok(());
            };
            match store.check_idle(&v) {
                Ok(()) => {
                    s.rename_from = Some(v);
                    s.reply(350, "Ready for RNTO")
                }
                Err(e) => s.store_error("RNFR", &e),
            }
        }
        "RNTO" => {
            let Some(from) = s.rename_from.take() else {
                return s.reply(503, "Send RNFR first");
            };
            let Some(to) = s.target(arg, Some((550, "Cannot rename onto the root")))? else {
                return Ok(());
            };
            match store.rename(&from, &to) {
                Ok(()) => {
                    log::info!(
                        "session {}: RENAME {} -> {}",
                        s.id,
                        from.display(),
                        to.display()
                    );
                    s.reply(250, "Rename successful")
                }
                Err(e) if e.kind == ErrorKind::Conflict => s.reply(553, &e.msg),
                Err(e) => s.store_error("RNTO", &e),
            }
        }
        "SIZE" | "MDTM" => {
            let Some(v) = s.target(arg, None)? else {
                return Ok(());
            };
            match store.stat(&v) {
                Ok(st) if st.is_file() => {
                    if verb == "SIZE" {
                        s.reply(213, &st.len().to_string())
                    } else {
                        s.reply(213, &timeval(&st.md))
                    }
                }
                Ok(_) => s.reply(550, "Not a regular file"),
                Err(e) => s.store_error(verb, &e),
            }
        }
        "MFMT" => {
            // MFMT YYYYMMDDHHMMSS path (draft-somers-ftp-mfxx).
            let Some((when, path)) = arg.split_once(' ') else {
                return s.reply(501, "MFMT needs YYYYMMDDHHMMSS and a path");
            };
            let Some(t) = parse_timeval(when) else {
                return s.reply(501, "MFMT: time must be YYYYMMDDHHMMSS (UTC)");
            };
            let Some(v) = s.target(path, None)? else {
                return Ok(());
            };
            match store.set_mtime(&v, t) {
                Ok(st) => s.reply(213, &format!("Modify={}; {path}", timeval(&st.md))),
                Err(e) => s.store_error("MFMT", &e),
            }
        }
        _ => s.reply(502, "Command not implemented"),
    }
}
