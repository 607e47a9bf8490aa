//! The patent flow (CN102420875A claims 5-8) against a real keyftpd, in raw
//! protocol bytes: KEY, interrupted upload, the 350 same-name prompt, KEY
//! NULL, resume by REST+STOR or APPE, and restart of a different file.

mod support;

use std::io::Write;
use std::time::Duration;

use keyfs::key;
use support::keyftpd::{key_of, pattern, prompt_size, reset_on_close, server, Keyftpd};

/// Uploads the first `half` bytes of `data` under `key`; the client closes
/// the data connection early, as a client that dies would.
fn interrupted_upload(srv: &Keyftpd, name: &str, data: &[u8], half: usize) {
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(data))).0, 230);
    let (code, text) = c.upload(&format!("STOR {name}"), &data[..half]);
    assert_eq!(code, 226, "{text}");
    assert!(text.contains("partial"), "{text}");
    let facts = c.listing("MLSD");
    assert!(
        facts
            .iter()
            .any(|l| l.ends_with(&format!(" {name}")) && l.contains("x.keystate=partial;")),
        "{facts:?}"
    );
}

fn keystate(srv: &Keyftpd, name: &str) -> String {
    let mut c = srv.login();
    let (code, text) = c.cmd(&format!("MLST {name}"));
    assert_eq!(code, 250, "{text}");
    text.split("x.keystate=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .unwrap_or("none")
        .to_string()
}

#[test]
fn resume_with_rest_stor_after_prompt_and_key_null() {
    let (_d, srv) = server(&[]);
    let data = pattern(3 << 20, 1);
    let half = data.len() / 2 + 17;
    interrupted_upload(&srv, "f.bin", &data, half);

    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    // The data connection opened before the prompt stays usable afterwards.
    let mut d = c.data();
    let (code, text) = c.cmd("STOR f.bin");
    assert_eq!(code, 350, "{text}");
    assert_eq!(prompt_size(&text), half as u64);
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!(code, 230);
    assert_eq!(
        key::parse_key_null_reply(&text).ok().flatten(),
        Some(key::Key::of(&data))
    );
    assert_eq!(c.cmd(&format!("REST {half}")).0, 350);
    let (code, text) = c.cmd("STOR f.bin");
    assert_eq!(code, 150, "no second prompt: {text}");
    d.write_all(&data[half..]).expect("send rest");
    drop(d);
    let (code, text) = c.read_reply();
    assert_eq!(code, 226, "{text}");
    assert!(text.contains("complete"), "{text}");
    assert_eq!(
        std::fs::read(srv.root.join("f.bin")).ok(),
        Some(data.clone())
    );
    assert_eq!(keystate(&srv, "f.bin"), "complete");
    let (code, text) = c.cmd("XCRC f.bin");
    assert_eq!(code, 250);
    assert_eq!(key::parse_xcrc_reply(&text), Ok(crc32fast::hash(&data)));
}

#[test]
fn resume_with_appe_after_prompt() {
    let (_d, srv) = server(&[]);
    let data = pattern(1 << 20, 2);
    let half = 300_001;
    interrupted_upload(&srv, "a.bin", &data, half);

    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let (code, text) = c.cmd("STOR a.bin");
    assert_eq!(code, 350, "{text}");
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!(
        (code, text.trim()),
        (230, format!("230 {}", key_of(&data)).as_str())
    );
    let (code, text) = c.upload("APPE a.bin", &data[half..]);
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(srv.root.join("a.bin")).ok(), Some(data));
    assert_eq!(keystate(&srv, "a.bin"), "complete");
}

#[test]
fn different_file_same_name_is_deleted_and_reuploaded() {
    let (_d, srv) = server(&[]);
    let old = pattern(500_000, 3);
    interrupted_upload(&srv, "same.bin", &old, 200_000);

    let new = pattern(400_000, 4);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&new))).0, 230);
    let (code, text) = c.cmd("STOR same.bin");
    assert_eq!(code, 350, "{text}");
    assert_eq!(prompt_size(&text), 200_000);
    let (_, text) = c.cmd("KEY NULL");
    let stored = key::parse_key_null_reply(&text).ok().flatten();
    assert_eq!(stored, Some(key::Key::of(&old)));
    assert_ne!(stored, Some(key::Key::of(&new)));
    assert_eq!(c.cmd("DELE same.bin").0, 250);
    let (code, text) = c.upload("STOR same.bin", &new);
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(srv.root.join("same.bin")).ok(), Some(new));
    assert_eq!(keystate(&srv, "same.bin"), "complete");
}

#[test]
fn plain_stor_with_a_bound_key_after_prompt_overwrites_from_zero() {
    let (_d, srv) = server(&[]);
    let data = pattern(200_000, 5);
    interrupted_upload(&srv, "p.bin", &data, 50_000);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    assert_eq!(c.cmd("STOR p.bin").0, 350);
    let (code, text) = c.upload("STOR p.bin", &data);
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(srv.root.join("p.bin")).ok(), Some(data));
    assert_eq!(keystate(&srv, "p.bin"), "complete");
}

#[test]
fn session_without_key_overwrites_without_prompt_and_clears_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(100_000, 6);
    interrupted_upload(&srv, "n.bin", &data, 10_000);
    let mut c = srv.login();
    let other = pattern(1234, 7);
    let (code, text) = c.upload("STOR n.bin", &other);
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(srv.root.join("n.bin")).ok(), Some(other));
    assert_eq!(keystate(&srv, "n.bin"), "complete");
    // Complete now but keyless: a KEY session is prompted once (it may
    // hold a cut upload of the same file), then its STOR proceeds.
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let (code, text) = c.cmd("STOR n.bin");
    assert_eq!((code, prompt_size(&text)), (350, 1234), "{text}");
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!((code, text.trim()), (230, "230 0x00"));
    let (code, text) = c.upload("STOR n.bin", &data);
    assert_eq!(code, 226, "{text}");
    assert_eq!(keystate(&srv, "n.bin"), "complete");
}

#[test]
fn key_null_answers_0x00_when_no_key_is_stored() {
    let (_d, srv) = server(&[]);
    let data = pattern(300_000, 8);
    // A keyless upload whose data connection breaks (RST) is a partial without key.
    let mut c = srv.login();
    let mut d = c.data();
    assert_eq!(c.cmd("STOR k.bin").0, 150);
    d.write_all(&data[..100_000]).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    reset_on_close(&d);
    drop(d);
    let (code, text) = c.read_reply();
    assert_eq!(code, 426, "{text}");
    assert_eq!(keystate(&srv, "k.bin"), "partial");

    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let (code, text) = c.cmd("STOR k.bin");
    assert_eq!(code, 350, "{text}");
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!((code, text.trim()), (230, "230 0x00"));
    assert_eq!(key::parse_key_null_reply(&text), Ok(None));
}

#[test]
fn resume_without_key_keeps_the_stored_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(700_000, 9);
    let half = 333_333;
    interrupted_upload(&srv, "r.bin", &data, half);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("REST {half}")).0, 350);
    let (code, text) = c.upload("STOR r.bin", &data[half..]);
    assert_eq!(code, 226, "{text}");
    // The stored key was kept and the CRC now matches it.
    assert_eq!(keystate(&srv, "r.bin"), "complete");
}

#[test]
fn control_connection_dying_mid_upload_keeps_every_byte() {
    let (_d, srv) = server(&[]);
    let data = pattern(2 << 20, 10);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR c.bin").0, 150);
    d.write_all(&data[..1 << 20]).expect("send");
    drop(c); // the control connection dies
    d.write_all(&data[1 << 20..]).expect("send rest");
    drop(d);
    assert!(support::keyftpd::wait_log(
        &srv,
        "c.bin offset=0 bytes=2097152"
    ));
    assert_eq!(std::fs::read(srv.root.join("c.bin")).ok(), Some(data));
    assert_eq!(keystate(&srv, "c.bin"), "complete");
}

#[test]
fn malformed_key_and_rest_past_eof() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    for bad in [
        "KEY",
        "KEY 0x",
        "KEY 12345678",
        "KEY 0x123456789",
        "KEY 0xZZ",
    ] {
        assert_eq!(c.cmd(bad).0, 501, "{bad}");
    }
    let (code, _) = c.upload("STOR s.bin", b"hello");
    assert_eq!(code, 226);
    assert_eq!(c.cmd("REST 6").0, 350);
    let _d = c.data();
    assert_eq!(c.cmd("STOR s.bin").0, 554);
    assert_eq!(c.cmd("REST x").0, 501);
}
