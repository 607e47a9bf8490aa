//! Post-upload verification and what an upload costs on the wire, against a
//! real keyftpd (one MLST: `x.keystate=complete` + `x.key` + size) and a real
//! pure-ftpd (no KEY: SIZE, plus a CRC where offered); a spooled copy damaged
//! after its record was written fails the job instead of retrying forever.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use keyfs::key::Key;
use keyfs::remote::verify::verify_remote;
use keyfs::remote::{Session, StoreStart};
use keyfs::transport::{Verified, VerifyError};
use keyfs::upload::resume::Policy;
use keyfs::upload::UploadError;
use support::jobs::{data, endpoint, start, Spool};
use support::keyftpd::{server, PASS, USER};
use support::pureftpd::PureFtpd;

const WAIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(10);

/// `KEY` + STOR of `d` through a `Session`.
fn put(s: &mut Session, path: &str, d: &[u8]) {
    if s.features().key {
        s.key_set(Key::of(d)).expect("KEY");
    }
    match s.store_at(path, 0, false).expect("STOR") {
        StoreStart::Started(mut up) => {
            up.write_all(d).expect("data");
            s.finish_store(up).expect("226");
        }
        StoreStart::Prompt(_) => panic!("no partial expected"),
    }
}

fn verdict(r: Result<Verified, VerifyError>) -> &'static str {
    match r {
        Ok(Verified::Crc) => "ok",
        Ok(Verified::SizeOnly) => "size only",
        Err(VerifyError::Mismatch(_)) => "mismatch",
        Err(VerifyError::Gone(_)) => "gone",
        Err(VerifyError::CrcMismatch(_)) => "crc mismatch",
        Err(VerifyError::Remote(_)) => "remote error",
    }
}

/// The commands keyftpd logged (`session N: VERB ...`), counted by verb.
fn verbs(log: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in log.lines().filter(|l| l.contains("DEBUG")) {
        let Some((_, rest)) = l.split_once("session ") else {
            continue;
        };
        let Some((_, cmd)) = rest.split_once(": ") else {
            continue;
        };
        let verb = cmd.split(' ').next().unwrap_or("");
        if !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_uppercase()) {
            *m.entry(verb.to_string()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn keyftpd_small_files_take_four_commands_each() {
    let (_d, srv) = server(&[]);
    let spool = Spool::new();
    let s = start(
        endpoint(srv.addr.port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    const N: usize = 30;
    let files: Vec<Vec<u8>> = (0..N).map(|i| data(4096, 100 + i as u32)).collect();
    for (i, d) in files.iter().enumerate() {
        s.up.submit(spool.job(&format!("s{i}.bin"), d)).unwrap();
    }
    for (i, d) in files.iter().enumerate() {
        let name = format!("s{i}.bin");
        s.up.wait(&name, WAIT).expect("uploaded");
        assert_eq!(&std::fs::read(srv.root.join(&name)).unwrap(), d);
    }
    s.up.shutdown();
    let v = verbs(&srv.log_text());
    eprintln!("keyftpd saw, for {N} files: {v:?}");
    let per_file: usize = [
        "KEY", "PASV", "EPSV", "REST", "STOR", "SIZE", "XCRC", "MLST",
    ]
    .iter()
    .map(|k| v.get(*k).copied().unwrap_or(0))
    .sum();
    assert_eq!(v.get("KEY"), Some(&N), "{v:?}");
    assert_eq!(v.get("STOR"), Some(&N), "{v:?}");
    assert_eq!(v.get("MLST"), Some(&N), "verified by MLST: {v:?}");
    for never in ["REST", "SIZE", "XCRC", "HASH"] {
        assert_eq!(v.get(never), None, "{never} sent: {v:?}");
    }
    assert_eq!(per_file, 4 * N, "KEY, PASV, STOR, MLST per file: {v:?}");
    // Every session is in binary mode before its first transfer (suppaftp
    // starts in ASCII, which would rewrite line endings).
    let mut binary = BTreeMap::new();
    for l in srv.log_text().lines().filter(|l| l.contains("DEBUG")) {
        let Some((_, rest)) = l.split_once("session ") else {
            continue;
        };
        let Some((id, cmd)) = rest.split_once(": ") else {
            continue;
        };
        if cmd == "TYPE I" {
            binary.insert(id.to_string(), true);
        }
        if cmd.starts_with("STOR ") || cmd.starts_with("REST ") {
            assert!(binary.contains_key(id), "session {id}: {cmd} before TYPE I");
        }
    }
    assert!(!binary.is_empty());
}

#[test]
fn keyftpd_verifies_by_recorded_key_and_falls_back_without_it() {
    let (_d, srv) = server(&[]);
    let ep = endpoint(srv.addr.port(), USER, PASS);
    let mut s = Session::connect(&ep, T).expect("connect");
    let d = data(200_000, 9);
    let crc = crc32fast::hash(&d);
    put(&mut s, "v.bin", &d);
    assert_eq!(verdict(verify_remote(&mut s, "v.bin", 200_000, crc)), "ok");
    // Complete with another size or key: a mismatch, no CRC asked.
    assert_eq!(
        verdict(verify_remote(&mut s, "v.bin", 200_001, crc)),
        "mismatch"
    );
    assert_eq!(
        verdict(verify_remote(&mut s, "v.bin", 200_000, crc ^ 1)),
        "mismatch"
    );
    assert_eq!(verdict(verify_remote(&mut s, "none.bin", 1, crc)), "gone");
    let before = verbs(&srv.log_text());
    assert_eq!(before.get("XCRC"), None, "{before:?}");

    // The verdict rests on keyftpd's CRC of what it wrote, trusted while
    // the file is the one it wrote: bytes rewritten on its disk with size
    // and mtime kept change the ctime, which drops `x.key`, and the
    // fallback (SIZE + XCRC, which then reads the file) finds the damage.
    let path = srv.root.join("v.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bad = d.clone();
    bad[1000] ^= 0xFF;
    std::fs::write(&path, &bad).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(
        verdict(verify_remote(&mut s, "v.bin", 200_000, crc)),
        "crc mismatch"
    );
    let after = verbs(&srv.log_text());
    assert_eq!(after.get("XCRC"), Some(&1), "{after:?}");
    s.quit();
}

#[test]
fn stock_server_verifies_by_size() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let mut s = Session::connect(&srv.endpoint(), T).expect("connect");
    assert!(!s.features().key);
    let d = data(150_000, 10);
    put(&mut s, "p.bin", &d);
    assert_eq!(std::fs::read(srv.path("p.bin")).unwrap(), d);
    let crc = crc32fast::hash(&d);
    assert_eq!(
        verdict(verify_remote(&mut s, "p.bin", 150_000, crc)),
        "size only"
    );
    assert_eq!(
        verdict(verify_remote(&mut s, "p.bin", 150_001, crc)),
        "mismatch"
    );
    s.quit();
}

/// pure-ftpd offers no CRC, so the uploader checks the spooled bytes itself.
#[test]
fn damaged_spool_fails_against_a_stock_server_too() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let d = data(100_000, 12);
    let rec = spool.job("dmg.bin", &d);
    let mut bad = d.clone();
    bad[4096..8192].fill(0);
    std::fs::write(spool.journal.data_path(rec.id), &bad).unwrap();
    let ok = spool.job("ok.bin", &d);
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    s.up.submit(rec.clone()).unwrap();
    s.up.submit(ok).unwrap();
    match s.up.wait("dmg.bin", WAIT) {
        Err(UploadError::Permanent(m)) => {
            assert!(m.starts_with("spooled data damaged: CRC "), "{m}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(spool.journal.data_path(rec.id).exists(), "spool kept");
    s.up.wait("ok.bin", WAIT)
        .expect("an intact file still uploads");
    assert_eq!(std::fs::read(srv.path("ok.bin")).unwrap(), d);
    s.up.shutdown();
}

#[test]
fn damaged_spool_fails_the_job_once_and_keeps_the_data() {
    let (_d, srv) = server(&[]);
    let spool = Spool::new();
    let d = data(300_000, 11);
    let rec = spool.job("dmg.bin", &d);
    // Power cut: the record survived, a block of its data did not.
    let mut bad = d.clone();
    bad[150_000..154_096].fill(0);
    std::fs::write(spool.journal.data_path(rec.id), &bad).unwrap();
    let s = start(
        endpoint(srv.addr.port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    s.up.submit(rec.clone()).unwrap();
    let msg = match s.up.wait("dmg.bin", WAIT) {
        Err(UploadError::Permanent(m)) => m,
        other => panic!("expected a permanent failure, got {other:?}"),
    };
    let want = format!(
        "spooled data damaged: CRC {:08X}, its record says {:08X}; kept in the spool",
        crc32fast::hash(&bad),
        crc32fast::hash(&d)
    );
    assert_eq!(msg, want);
    assert!(spool.journal.data_path(rec.id).exists(), "spool kept");
    assert_eq!(s.up.bytes_sent(), 300_000, "sent once, not retried");
    s.up.shutdown();
    let v = verbs(&srv.log_text());
    assert_eq!(v.get("STOR"), Some(&1), "{v:?}");
}

/// An empty file: nothing to sendfile, key 0x00000000, verified by MLST.
#[test]
fn empty_file_uploads_and_verifies_by_mlst() {
    let (_d, srv) = server(&[]);
    let spool = Spool::new();
    let s = start(
        endpoint(srv.addr.port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    s.up.submit(spool.job("empty.bin", b"")).unwrap();
    s.up.wait("empty.bin", WAIT).expect("uploaded");
    assert_eq!(
        std::fs::metadata(srv.root.join("empty.bin")).unwrap().len(),
        0
    );
    s.up.shutdown();
    let v = verbs(&srv.log_text());
    assert_eq!(v.get("MLST"), Some(&1), "{v:?}");
    assert_eq!(v.get("XCRC"), None, "{v:?}");
}

/// A name with spaces and `;` (and what looks like facts): keyftpd echoes
/// it after the facts of its MLST entry, the uploader matches it with the
/// path it asked about and verifies by that one MLST, with no XCRC.
#[test]
fn odd_name_verifies_by_mlst_of_that_name() {
    let (_d, srv) = server(&[]);
    std::fs::create_dir(srv.root.join("d; x")).unwrap();
    let spool = Spool::new();
    let s = start(
        endpoint(srv.addr.port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    let name = "d; x/a b; size=1;x.key=0x00000000; c.bin";
    let d = data(50_000, 77);
    s.up.submit(spool.job(name, &d)).unwrap();
    s.up.wait(name, WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.root.join(name)).unwrap(), d);
    s.up.shutdown();
    let v = verbs(&srv.log_text());
    assert_eq!(v.get("MLST"), Some(&1), "{v:?}");
    assert_eq!(v.get("XCRC"), None, "{v:?}");
    assert_eq!(v.get("SIZE"), None, "{v:?}");
}

/// A network that damages one byte of every upload (the fault proxy
/// inverts byte 1000 of each data connection): the first mismatch is
/// retried, the second full upload in a row that does not verify, with the
/// spooled copy intact, fails the job (one line, spool kept, in status)
/// instead of re-sending the file every backoff forever.
#[test]
fn two_full_uploads_that_do_not_verify_fail_the_job() {
    use keyfs::faultproxy::{FaultProxy, Faults};
    use keyfs::spool::journal::JobState;
    let (_d, srv) = server(&[]);
    let px = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr,
        Faults {
            flip_byte: Some(1000),
            ..Faults::default()
        },
    )
    .expect("proxy");
    let spool = Spool::new();
    let s = start(
        endpoint(px.addr().port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    let d = data(300_000, 78);
    let rec = spool.job("flip.bin", &d);
    s.up.submit(rec.clone()).unwrap();
    let msg = match s.up.wait("flip.bin", WAIT) {
        Err(UploadError::Permanent(m)) => m,
        other => panic!("expected a permanent failure, got {other:?}"),
    };
    assert!(
        msg.contains("twice in a row with the spooled copy intact"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(spool.journal.data_path(rec.id).exists(), "spool kept");
    let st = s.up.status();
    assert!(
        st.iter()
            .any(|j| matches!(&j.record.state, JobState::Failed(r) if *r == msg)),
        "{st:?}"
    );
    assert_eq!(s.up.bytes_sent(), 600_000, "two full uploads, no more");
    assert_eq!(px.stats().up_data, 600_000);
    s.up.shutdown();
    let v = verbs(&srv.log_text());
    assert_eq!(v.get("STOR"), Some(&3), "two uploads, one prompt: {v:?}");
}
