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

/// A rewrite in place behind keyftpd's back that keeps the size and
/// restores the mtime (as `touch -r` or `rsync --inplace -t` do) is seen:
/// the ctime differs, so MLST shows no `x.key` and XCRC reads the file
/// back and answers the CRC of what is on disk now.
#[test]
fn rewrite_in_place_with_restored_mtime_loses_its_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(120_000, 8);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    assert_eq!(c.upload("STOR r.bin", &data).0, 226);
    assert!(fact(&c.cmd("MLST r.bin").1, "x.key").is_some());

    let path = srv.root.join("r.bin");
    let before = std::fs::metadata(&path).expect("stat");
    let mut other = data.clone();
    other[60_000] ^= 0xFF;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open on disk");
    f.write_all(&other).expect("rewrite on disk");
    drop(f);
    // `touch -r REF` with a reference file carrying the old mtime.
    let r = std::fs::File::create(srv.root.join("ref")).expect("ref");
    r.set_modified(before.modified().expect("mtime"))
        .expect("set ref mtime");
    drop(r);
    let st = std::process::Command::new("touch")
        .arg("-r")
        .arg(srv.root.join("ref"))
        .arg(&path)
        .status()
        .expect("run touch");
    assert!(st.success());
    let after = std::fs::metadata(&path).expect("stat");
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().ok(), before.modified().ok());

    let (code, text) = c.cmd("MLST r.bin");
    assert_eq!(code, 250, "{text}");
    assert_eq!(fact(&text, "x.key"), None, "{text}");
    let (code, text) = c.cmd("XCRC r.bin");
    assert_eq!(code, 250, "{text}");
    assert!(
        text.contains(&format!("{:08X}", crc32fast::hash(&other))),
        "XCRC must read the file back: {text}"
    );
}

/// keyftpd's own rename changes the file's ctime but keeps its record
/// trusted: the key follows the file and XCRC still answers it.
#[test]
fn rename_through_keyftpd_keeps_the_key() {
    let (_d, srv) = server(&[]);
    let data = pattern(70_000, 9);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    assert_eq!(c.upload("STOR a.bin", &data).0, 226);
    assert_eq!(c.cmd("RNFR a.bin").0, 350);
    assert_eq!(c.cmd("RNTO b.bin").0, 250);
    let (_, text) = c.cmd("MLST b.bin");
    let want = format!("0x{:08X}", crc32fast::hash(&data));
    assert_eq!(fact(&text, "x.key"), Some(want), "{text}");
}

/// An old `.keyftpd/meta.log` is migrated into the files' attributes on
/// the first start and then removed with its directory. A line with the
/// file identity keeps its CRC trusted; a line from before the identity
/// was recorded keeps key and state, but its CRC is not trusted (no
/// `x.key`, XCRC reads); renames and deletes in the log are replayed.
#[test]
fn old_meta_log_is_migrated_into_attributes() {
    use std::os::unix::fs::MetadataExt;
    let (_d, root) = support::keyftpd::temp_root();
    let old = pattern(40_000, 10);
    let full = pattern(30_000, 11);
    std::fs::write(root.join("o.bin"), &old).expect("write");
    std::fs::write(root.join("f.bin"), &full).expect("write");
    std::fs::write(root.join("plain.bin"), b"no record").expect("write");
    let md = std::fs::metadata(root.join("f.bin")).expect("stat");
    let mtime = |m: &std::fs::Metadata| {
        m.modified()
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_nanos()
    };
    let omd = std::fs::metadata(root.join("o.bin")).expect("stat");
    let (ko, kf) = (crc32fast::hash(&old), crc32fast::hash(&full));
    let log = format!(
        "S old.bin {ko:08X} c {ko:08X} 40000 {}\nR old.bin o.bin\n\
         S f.bin {kf:08X} p {kf:08X} 30000 {} {} {} {}\n\
         S gone.bin - c 0 0 0\nS torn",
        mtime(&omd),
        mtime(&md),
        md.dev(),
        md.ino(),
        i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
    );
    std::fs::create_dir(root.join(".keyftpd")).expect("mkdir");
    std::fs::write(root.join(".keyftpd/meta.log"), log).expect("write log");

    let mut srv = support::keyftpd::Keyftpd::start(&root, &[]);
    assert!(
        !root.join(".keyftpd").exists(),
        "migration removes the log dir"
    );
    let mut c = srv.login();
    let (code, text) = c.cmd("MLST o.bin");
    assert_eq!(code, 250, "{text}");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("complete"));
    assert_eq!(fact(&text, "x.key"), None, "{text}");
    let (code, text) = c.cmd("XCRC o.bin");
    assert_eq!(code, 250, "{text}");
    assert!(text.contains(&format!("{ko:08X}")));
    let (_, text) = c.cmd("MLST f.bin");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("partial"));
    assert_eq!(fact(&text, "x.key"), Some(format!("0x{kf:08X}")), "{text}");
    let (_, text) = c.cmd("MLST plain.bin");
    assert_eq!(fact(&text, "x.keystate"), None, "{text}");
    drop(c);

    // The records now live on the files: a restart keeps them.
    assert!(srv.terminate());
    let srv = support::keyftpd::Keyftpd::start(&root, &[]);
    let mut c = srv.login();
    let (_, text) = c.cmd("MLST o.bin");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("complete"));
    let (_, text) = c.cmd("MLST f.bin");
    assert_eq!(fact(&text, "x.keystate").as_deref(), Some("partial"));
    assert!(!root.join("gone.bin").exists());
}
