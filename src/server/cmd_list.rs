//! Listing commands: MLSD, MLST, LIST, NLST. Entries are collected before
//! the data connection opens, so errors are plain replies; symlinks that
//! lead outside the root are left out.

use std::fs;
use std::io::{self, BufWriter, Write};

use super::cmd_transfer::open_data;
use super::listing::{hidden, list_line, mlsx_line};
use super::paths::VPath;
use super::session::Session;

struct Entry {
    name: String,
    md: fs::Metadata,
    rel: String,
}

fn entries(s: &Session, dir: &VPath) -> io::Result<Vec<Entry>> {
    let real = s.shared.jail.real(dir);
    let mut out = Vec::new();
    for e in fs::read_dir(real)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if hidden(&name) {
            continue;
        }
        let Ok(child) = dir.resolve(&name) else {
            continue;
        };
        let Ok(real) = s.shared.jail.check(&child, true) else {
            continue;
        };
        let Ok(md) = fs::metadata(&real) else {
            continue;
        };
        out.push(Entry {
            name,
            md,
            rel: child.rel(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

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
    let Some((v, real)) = s.target(&path, true, None)? else {
        return Ok(());
    };
    let md = match fs::metadata(&real) {
        Ok(m) => m,
        Err(e) => return s.io_error(verb, &e),
    };
    if verb == "MLST" {
        let meta = s.shared.store.get(&v.rel());
        let line = mlsx_line(&v.display(), &md, meta.as_ref(), false);
        let text = format!("250-Listing {}\r\n {line}\r\n250 End\r\n", v.display());
        return (&s.ctrl).write_all(text.as_bytes());
    }
    let list = if md.is_dir() {
        match entries(s, &v) {
            Ok(l) => l,
            Err(e) => return s.io_error(verb, &e),
        }
    } else if verb == "MLSD" {
        return s.reply(501, "MLSD needs a directory");
    } else {
        vec![Entry {
            name: v.name().unwrap_or("").to_string(),
            md,
            rel: v.rel(),
        }]
    };
    let Some(data) = open_data(s)? else {
        return Ok(());
    };
    // A client that never reads must not block this session forever.
    let _ = data.set_write_timeout(Some(s.shared.cfg.data_timeout));
    s.reply(150, "Here comes the listing")?;
    let mut w = BufWriter::with_capacity(64 * 1024, &data);
    let mut res = Ok(());
    for e in &list {
        let line = match verb {
            "MLSD" => {
                let meta = s.shared.store.get(&e.rel);
                mlsx_line(&e.name, &e.md, meta.as_ref(), false)
            }
            "LIST" => list_line(&e.name, &e.md),
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
    drop(data);
    match res {
        Ok(()) => s.reply(226, &format!("Listing sent, {} entries", list.len())),
        Err(e) => s.reply(426, &format!("Listing aborted: {e}")),
    }
}
