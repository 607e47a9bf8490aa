//! Key metadata is durable: it survives a hard kill and a SIGTERM, follows
//! renames of files and directories, goes with DELE, and no client path can
//! see or reach it.

mod support;

use std::io::Write;
use std::time::Duration;

use keyfs::key;
use support::keyftpd::{key_of, pattern, prompt_size, temp_root, Keyftpd};

fn partial(srv: &Keyftpd, name: &str, data: &[u8], n: usize) {
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(data))).0, 230);
    let (code, text) = c.upload(&format!("STOR {name}"), &data[..n]);
    assert_eq!(code, 226, "{text}");
}

/// KEY + STOR `name`: the prompt's size and the KEY NULL answer, or None when not prompted.
fn probe(srv: &Keyftpd, name: &str, key_arg: &str) -> Option<(u64, Option<key::Key>)> {
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {key_arg}")).0, 230);
    let _d = c.data();
    let (code, text) = c.cmd(&format!("STOR {name}"));
    if code != 350 {
        assert!(code == 150 || code == 550, "{code} {text}");
        return None;
    }
    let size = prompt_size(&text);
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!(code, 230);
    Some((
        size,
        key::parse_key_null_reply(&text).expect("KEY NULL reply"),
    ))
}

#[test]
fn key_and_state_survive_a_hard_kill() {
    let (_d, root) = temp_root();
    let data = pattern(400_000, 1);
    let mut srv = Keyftpd::start(&root, &[]);
    partial(&srv, "k.bin", &data, 150_000);
    srv.kill();
    let srv = Keyftpd::start(&root, &[]);
    assert_eq!(
        probe(&srv, "k.bin", &key_of(&data)),
        Some((150_000, Some(key::Key::of(&data))))
    );
}

#[test]
fn rename_carries_the_key_for_files_and_directories() {
    let (_d, root) = temp_root();
    let data = pattern(300_000, 2);
    let k = key::Key::of(&data);
    let mut srv = Keyftpd::start(&root, &[]);
    {
        let mut c = srv.login();
        assert_eq!(c.cmd("MKD a").0, 257);
        assert_eq!(c.cmd("MKD a/sub").0, 257);
    }
    partial(&srv, "a/sub/f.bin", &data, 1000);
    {
        let mut c = srv.login();
        assert_eq!(c.cmd("RNFR a/sub/f.bin").0, 350);
        assert_eq!(c.cmd("RNTO a/sub/g.bin").0, 250);
    }
    assert_eq!(
        probe(&srv, "a/sub/g.bin", &key_of(&data)),
        Some((1000, Some(k)))
    );
    {
        let mut c = srv.login();
        assert_eq!(c.cmd("RNFR a").0, 350);
        assert_eq!(c.cmd("RNTO b").0, 250);
    }
    srv.kill();
    let srv = Keyftpd::start(&root, &[]);
    assert_eq!(
        probe(&srv, "b/sub/g.bin", &key_of(&data)),
        Some((1000, Some(k)))
    );
    // The old names carry nothing.
    assert_eq!(probe(&srv, "a/sub/g.bin", &key_of(&data)), None);
    // DELE takes the key with it: a new upload of that name is not prompted.
    let mut c = srv.login();
    assert_eq!(c.cmd("DELE b/sub/g.bin").0, 250);
    drop(c);
    assert_eq!(probe(&srv, "b/sub/g.bin", &key_of(&data)), None);
}

#[test]
fn sigterm_mid_upload_leaves_a_recorded_partial() {
    let (_d, root) = temp_root();
    let data = pattern(1 << 20, 3);
    let mut srv = Keyftpd::start(&root, &[]);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR t.bin").0, 150);
    d.write_all(&data[..400_000]).expect("send");
    // Until the server has written all of it (no fixed sleep: CI is slow).
    let t = std::time::Instant::now();
    while std::fs::metadata(root.join("t.bin")).map(|m| m.len()).ok() != Some(400_000) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "server never stored 400 kB"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.terminate(), "keyftpd exits cleanly on SIGTERM");
    let (code, _) = c.try_read_reply().unwrap_or((0, String::new()));
    assert!(code == 426 || code == 421 || code == 0, "{code}");
    assert_eq!(
        std::fs::metadata(root.join("t.bin")).map(|m| m.len()).ok(),
        Some(400_000)
    );
    let srv = Keyftpd::start(&root, &[]);
    assert_eq!(
        probe(&srv, "t.bin", &key_of(&data)),
        Some((400_000, Some(key::Key::of(&data))))
    );
}

/// Metadata lives on the files now; the old directory name `.keyftpd`
/// stays reserved: a pre-existing one (not an old metadata log) is left
/// alone, hidden, and no command can reach it.
#[test]
fn metadata_is_invisible_and_unreachable() {
    let (_d, root) = temp_root();
    let data = pattern(1000, 4);
    std::fs::create_dir(root.join(".keyftpd")).expect("mkdir");
    std::fs::write(root.join(".keyftpd/notes"), b"admin's").expect("write");
    let srv = Keyftpd::start(&root, &[]);
    partial(&srv, "x.bin", &data, 10);
    assert!(root.join(".keyftpd").is_dir());
    let mut c = srv.login();
    for cmd in ["MLSD", "LIST", "NLST", "LIST -a", "NLST -a"] {
        let lines = c.listing(cmd);
        assert!(
            lines.iter().any(|l| l.contains("x.bin")),
            "{cmd}: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains(".keyftpd")),
            "{cmd}: {lines:?}"
        );
    }
    for cmd in [
        "CWD .keyftpd",
        "CWD /.keyftpd",
        "SIZE .keyftpd/meta.log",
        "SIZE /./.keyftpd/meta.log",
        "SIZE sub/../.keyftpd/meta.log",
        "RETR .keyftpd/meta.log",
        "DELE .keyftpd/meta.log",
        "MKD .keyftpd",
        "RMD .keyftpd",
        "XCRC .keyftpd/meta.log",
        "MLST .keyftpd",
        "RNFR .keyftpd",
    ] {
        assert_eq!(c.cmd(cmd).0, 553, "{cmd}");
    }
    assert_eq!(c.cmd("RNFR x.bin").0, 350);
    assert_eq!(c.cmd("RNTO .keyftpd").0, 553);
    assert!(!root.join(".keyftpd").join("meta.log").exists());
    assert_eq!(
        std::fs::read(root.join(".keyftpd/notes")).ok(),
        Some(b"admin's".to_vec())
    );
}
