//! A server that lists a checksum command in FEAT but refuses it (ProFTPD
//! with `<Limit XCRC> DenyAll` answers `550 Operation not permitted`):
//! played by a real keyftpd behind the fault proxy, which hides KEY from
//! FEAT (a stock server, verified by SIZE + checksum) and answers the
//! refused commands with 550 itself. The uploader falls back XCRC -> HASH
//! -> size only, uploads each file once, and says so in its status note.

mod support;

use std::time::Duration;

use keyfs::faultproxy::{FaultProxy, Faults};
use keyfs::upload::resume::Policy;
use support::jobs::{data, endpoint, start, Spool};
use support::keyftpd::{server, Keyftpd, PASS, USER};

const WAIT: Duration = Duration::from_secs(30);

fn proxy(srv: &Keyftpd, refuse: &[&str]) -> FaultProxy {
    FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        srv.addr,
        Faults {
            refuse: refuse.iter().map(|s| s.to_string()).collect(),
            hide_feat: vec!["KEY".into()],
            ..Faults::default()
        },
    )
    .expect("proxy")
}

/// How many `VERB` commands keyftpd received (its debug log).
fn count(srv: &Keyftpd, verb: &str) -> usize {
    let needle = format!(": {verb} ");
    srv.log_text()
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains(&needle))
        .count()
}

#[test]
fn xcrc_listed_but_refused_falls_back_to_hash() {
    let (_d, srv) = server(&[]);
    let px = proxy(&srv, &["XCRC"]);
    let spool = Spool::new();
    let s = start(
        endpoint(px.addr().port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    let a = data(300_000, 11);
    let b = data(200_000, 12);
    s.up.submit(spool.job("a.bin", &a)).unwrap();
    s.up.submit(spool.job("b.bin", &b)).unwrap();
    s.up.wait("a.bin", WAIT).expect("a verified");
    s.up.wait("b.bin", WAIT).expect("b verified");
    assert_eq!(std::fs::read(srv.root.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(srv.root.join("b.bin")).unwrap(), b);
    assert_eq!(s.up.bytes_sent(), 500_000, "each file sent once");
    let note = s.up.checksum_note().expect("note");
    assert!(
        note.starts_with("checksum: HASH CRC32 (fallback: XCRC refused: "),
        "{note}"
    );
    assert!(note.contains("550"), "{note}");
    // The server computed the CRCs by HASH, once per upload; XCRC never
    // reached it (the proxy refused it), and the refusal was not asked again.
    assert_eq!(count(&srv, "HASH"), 2, "{}", srv.log_text());
    assert_eq!(count(&srv, "XCRC"), 0);
    s.up.shutdown();
}

#[test]
fn every_checksum_refused_falls_back_to_size_only() {
    let (_d, srv) = server(&[]);
    let px = proxy(&srv, &["XCRC", "HASH"]);
    let spool = Spool::new();
    let s = start(
        endpoint(px.addr().port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    let a = data(250_000, 13);
    s.up.submit(spool.job("a.bin", &a)).unwrap();
    s.up.wait("a.bin", WAIT).expect("verified by size");
    assert_eq!(std::fs::read(srv.root.join("a.bin")).unwrap(), a);
    assert_eq!(s.up.bytes_sent(), 250_000, "sent once");
    let note = s.up.checksum_note().expect("note");
    assert!(
        note.starts_with("checksum: size only (fallback: "),
        "{note}"
    );
    assert!(
        note.contains("XCRC refused") && note.contains("HASH CRC32 refused"),
        "{note}"
    );
    s.up.shutdown();
}

/// The HASH fallback also serves the resume decision: a same-name partial
/// (placed on the server, keyless) whose prefix CRC, asked by HASH with
/// RANG, matches ours is resumed.
#[test]
fn a_partial_is_resumed_by_hash_when_xcrc_is_refused() {
    let (_d, srv) = server(&[]);
    let d = data(400_000, 14);
    std::fs::write(srv.root.join("p.bin"), &d[..150_000]).unwrap();
    let px = proxy(&srv, &["XCRC"]);
    let spool = Spool::new();
    let s = start(
        endpoint(px.addr().port(), USER, PASS),
        &spool,
        1,
        None,
        Policy::Safe,
    );
    s.up.submit(spool.job("p.bin", &d)).unwrap();
    s.up.wait("p.bin", WAIT).expect("verified");
    assert_eq!(std::fs::read(srv.root.join("p.bin")).unwrap(), d);
    assert_eq!(s.up.bytes_sent(), 250_000, "resumed at 150,000");
    assert_eq!(count(&srv, "RANG"), 1, "the prefix asked with RANG");
    s.up.shutdown();
}
