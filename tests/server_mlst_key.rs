//! The `x.key` MLST/MLSD fact of a real keyftpd: advertised in FEAT, shown
//! with the key a file was uploaded under (complete or partial), absent for
//! keyless uploads and for files changed behind keyftpd's back.

mod support;

use std::io::Write;

use support::keyftpd::{key_of, pattern, server};

/// The value of `fact` in an MLST reply, if present.
fn fact(text: &str, fact: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(' '))?;
    line.trim_start()
        .split(';')
        .find_map(|f| f.strip_prefix(&format!("{fact}=")))
        .map(str::to_string)
}

#[test]
fn feat_advertises_x_key() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    let (code, text) = c.cmd("FEAT");
    assert_eq!(code, 211, "{text}");
    let mlst = text
        .lines()
        .find(|l| l.trim_start().starts_with("MLST "))
        .unwrap_or_default();
    assert!(mlst.contains("x.keystate*;x.key*;"), "{text}");
    let (code, text) = c.cmd("OPTS MLST type;size;x.key;");
    assert_eq!(code, 200, "{text}");
}

#[test]
fn complete_upload_shows_its_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(300_000, 5);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let (code, text) = c.upload("STOR a.bin", &data);
    assert_eq!(code, 226, "{text}");
    let (code, text) = c.cmd("MLST a.bin");
    assert_eq!(code, 250, "{text}");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("complete"));
    assert_eq!(fact(&text, "size"), Some(data.len().to_string()));
    let want = format!("0x{:08X}", crc32fast::hash(&data));
    assert_eq!(fact(&text, "x.key"), Some(want.clone()), "{text}");
    let listing = c.listing("MLSD");
    assert!(
        listing
            .iter()
            .any(|l| l.ends_with(" a.bin") && l.contains(&format!("x.key={want};"))),
        "{listing:?}"
    );
}

#[test]
fn partial_shows_the_bound_key_keyless_shows_none() {
    let (_d, srv) = server(&[]);
    let data = pattern(200_000, 6);
    let mut c = srv.login();
    // Only half the bytes arrive: CRC != key, recorded partial.
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let (code, _) = c.upload("STOR p.bin", &data[..100_000]);
    assert_eq!(code, 226);
    let (_, text) = c.cmd("MLST p.bin");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("partial"));
    assert_eq!(
        fact(&text, "x.key"),
        Some(format!("0x{:08X}", crc32fast::hash(&data))),
        "{text}"
    );
    // No KEY: complete, but no key to show.
    let (code, _) = c.upload("STOR k.bin", &data);
    assert_eq!(code, 226);
    let (_, text) = c.cmd("MLST k.bin");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("complete"));
    assert_eq!(fact(&text, "x.key"), None, "{text}");
}

#[test]
fn file_changed_behind_keyftpds_back_loses_its_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(50_000, 7);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    assert_eq!(c.upload("STOR c.bin", &data).0, 226);
    assert!(fact(&c.cmd("MLST c.bin").1, "x.key").is_some());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(srv.root.join("c.bin"))
        .expect("open on disk");
    f.write_all(b"more").expect("append on disk");
    drop(f);
    let (code, text) = c.cmd("MLST c.bin");
    assert_eq!(code, 250, "{text}");
    assert_eq!(fact(&text, "x.key"), None, "{text}");
}
