//! Namespace commands: PWD CWD CDUP MKD RMD DELE RNFR RNTO SIZE MDTM.
//!
//! DELE drops a file's key metadata; RNFR/RNTO moves it (for a directory,
//! the metadata of everything below it). A file with an upload in progress
//! can be neither deleted nor renamed, nor renamed onto (450): the upload
//! would record its key over the moved file's when it ends.

use std::fs;
use std::io;

use super::listing::timeval;
use super::session::Session;

fn quote(p: &str) -> String {
    p.replace('"', "\"\"")
}

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    let writes = matches!(
        verb,
        "MKD" | "XMKD" | "RMD" | "XRMD" | "DELE" | "RNFR" | "RNTO"
    );
    if writes && s.anonymous {
        return s.reply(550, "Anonymous sessions are read-only");
    }
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
            let v = match s.resolve(arg) {
                Ok(v) => v,
                Err(e) => return s.path_error(e),
            };
            match s.shared.jail.check(&v, true) {
                Ok(real) if real.is_dir() => {
                    s.cwd = v;
                    let p = s.cwd.display();
                    s.reply(250, &format!("Directory changed to {p}"))
                }
                Ok(real) if real.exists() => s.reply(550, "Not a directory"),
                Ok(_) => s.reply(550, "No such directory"),
                Err(e) => s.path_error(e),
            }
        }
        "MKD" | "XMKD" => {
            let Some((v, real)) = s.target(arg, false, Some((550, "Root exists")))? else {
                return Ok(());
            };
            match fs::create_dir(&real) {
                Ok(()) => {
                    let p = quote(&v.display());
                    s.reply(257, &format!("\"{p}\" created"))
                }
                Err(e) => s.io_error("MKD", &e),
            }
        }
        "RMD" | "XRMD" => {
            let Some((_, real)) = s.target(arg, false, Some((550, "Cannot remove the root")))?
            else {
                return Ok(());
            };
            match fs::remove_dir(&real) {
                Ok(()) => s.reply(250, "Directory removed"),
                Err(e) => s.io_error("RMD", &e),
            }
        }
        "DELE" => {
            let Some((v, real)) = s.target(arg, false, None)? else {
                return Ok(());
            };
            match fs::symlink_metadata(&real) {
                Ok(md) if md.is_dir() => return s.reply(550, "Is a directory (use RMD)"),
                Ok(_) => {}
                Err(e) => return s.io_error("DELE", &e),
            }
            if s.shared.is_busy(&v.rel()) {
                return s.reply(450, "File busy: an upload of it is in progress");
            }
            match fs::remove_file(&real) {
                Ok(()) => {
                    if let Err(e) = s.shared.store.remove(&v.rel()) {
                        log::error!("session {}: metadata for DELE {}: {e}", s.id, v.display());
                    }
                    log::info!("session {}: DELE {}", s.id, v.display());
                    s.reply(250, "File deleted")
                }
                Err(e) => s.io_error("DELE", &e),
            }
        }
        "RNFR" => {
            let Some((v, real)) = s.target(arg, false, Some((550, "Cannot rename the root")))?
            else {
                return Ok(());
            };
            if fs::symlink_metadata(&real).is_err() {
                return s.reply(550, "No such file or directory");
            }
            if s.shared.is_busy(&v.rel()) {
                return s.reply(450, "File busy: an upload of it is in progress");
            }
            s.rename_from = Some(v);
            s.reply(350, "Ready for RNTO")
        }
        "RNTO" => {
            let Some(from) = s.rename_from.take() else {
                return s.reply(503, "Send RNFR first");
            };
            let to = match s.resolve(arg) {
                Ok(v) if !v.is_root() => v,
                Ok(_) => return s.reply(550, "Cannot rename onto the root"),
                Err(e) => return s.path_error(e),
            };
            let (rf, rt) = match (
                s.shared.jail.check(&from, false),
                s.shared.jail.check(&to, false),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return s.path_error(e),
            };
            if to.rel().starts_with(&format!("{}/", from.rel())) {
                return s.reply(553, "Cannot move a directory into itself");
            }
            // Hold both names for the rename, as an upload does: a busy
            // target would have its key metadata overwritten when its
            // (maybe stopped) upload finishes, and a source may have become
            // busy since RNFR.
            let shared = s.shared.clone();
            let (from_rel, to_rel) = (from.rel(), to.rel());
            let Some(_to_guard) = shared.claim(&to_rel) else {
                return s.reply(450, "Target busy: an upload of it is in progress");
            };
            let _from_guard = if from_rel == to_rel {
                None
            } else {
                match shared.claim(&from_rel) {
                    Some(g) => Some(g),
                    None => return s.reply(450, "File busy: an upload of it is in progress"),
                }
            };
            // A rename changes the file's ctime, which its CRC record
            // checks: stat it on both sides to carry the record over.
            let before = fs::symlink_metadata(&rf).ok().filter(|m| m.is_file());
            match fs::rename(&rf, &rt) {
                Ok(()) => {
                    if let Err(e) = s.shared.store.rename(&from.rel(), &to.rel()) {
                        log::error!("session {}: metadata for rename: {e}", s.id);
                    }
                    if let (Some(b), Ok(a)) = (&before, fs::symlink_metadata(&rt)) {
                        if let Err(e) = s.shared.store.renamed_file(&to_rel, b, &a) {
                            log::error!("session {}: metadata for rename: {e}", s.id);
                        }
                    }
                    log::info!(
                        "session {}: RENAME {} -> {}",
                        s.id,
                        from.display(),
                        to.display()
                    );
                    s.reply(250, "Rename successful")
                }
                Err(e) => s.io_error("RNTO", &e),
            }
        }
        "SIZE" | "MDTM" => {
            let Some((_, real)) = s.target(arg, true, None)? else {
                return Ok(());
            };
            match fs::metadata(&real) {
                Ok(md) if md.is_file() => {
                    if verb == "SIZE" {
                        s.reply(213, &md.len().to_string())
                    } else {
                        s.reply(213, &timeval(&md))
                    }
                }
                Ok(_) => s.reply(550, "Not a regular file"),
                Err(e) => s.io_error(verb, &e),
            }
        }
        _ => s.reply(502, "Command not implemented"),
    }
}
