//! Listing commands: MLSD, MLST, LIST, NLST. Entries come from the store
//! before the data connection opens, so errors are plain replies; entries
//! that lead outside the root, and special files, are left out.

use std::io::{self, BufWriter, Write};

use super::cmd_transfer::{open_data, secure_data};
use super::listing::{list_line, mlsx_line};
use super::session::Session;
use super::store::Entry;

pub(crate) fn handle(s: &mut Session, verb: &str, arg: &str) -> io::Result<()> {
    // LIST/NLST take ls options (`-la`); skip them.
    let path = if matches!(verb, "LIST" | "NLST") {
        arg.split(' ')
            .skip_while(|w| w.starts_with('-'))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        arg.to_string()
    };
    let Some(v) = s.target(&path, None)? else {
        return Ok(());
    };
    let store = s.shared.store.clone();
    let st = match store.stat(&v) {
        Ok(st) => st,
        Err(e) => return s.store_error(verb, &e),
    };
    if verb == "MLST" {
        let line = mlsx_line(&v.display(), &st.md, st.meta.as_ref(), false);
        let text = format!("250-Listing {}\r\n {line}\r\n250 End\r\n", v.display());
        return s.ctrl.write_all(text.as_bytes());
    }
    let list = if st.is_dir() {
        let l = if verb == "MLSD" {
            store.list(&v)
        } else {
            store.list_plain(&v)
        };
        match l {
            Ok(l) => l,
            Err(e) => return s.store_error(verb, &e),
        }
    } else if verb == "MLSD" {
        return s.reply(501, "MLSD needs a directory");
    } else {
        vec![Entry {
            name: v.name().unwrap_or("").to_string(),
            stat: st,
        }]
    };
    let Some(data) = open_data(s)? else {
        return Ok(());
    };
    // A client that never reads must not block this session forever.
    let _ = data.set_write_timeout(Some(s.shared.cfg.data_timeout));
    s.reply(150, "Here comes the listing")?;
    let Some(mut data) = secure_data(s, data, true)? else {
        return Ok(());
    };
    let _ = data
        .tcp()
        .set_write_timeout(Some(s.shared.cfg.data_timeout));
    let mut w = BufWriter::with_capacity(64 * 1024, &mut data);
    let mut res = Ok(());
    for e in &list {
        let line = match verb {
            "MLSD" => mlsx_line(&e.name, &e.stat.md, e.stat.meta.as_ref(), false),
            "LIST" => list_line(&e.name, &e.stat.md),
            _ => e.name.clone(),
        };
        res = w
            .write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\r\n"));
        if res.is_err() {
            break;
        }
    }
    if res.is_ok() {
        res = w.flush();
    }
    drop(w);
    if res.is_ok() {
        res = data.finish();
    }
    drop(data);
    match res {
        Ok(()) => s.reply(226, &format!("Listing sent, {} entries", list.len())),
        Err(e) => s.reply(426, &format!("Listing aborted: {e}")),
    }
}
