//! A connection cut mid-upload (through the fault-injecting proxy, which
//! counts every byte): against keyftpd, over FTP and over HTTP, the resume
//! re-sends only the missing part; against pure-ftpd (no KEY, no XCRC) the upload restarts
//! from zero by default, or resumes with `--resume=trust-size`.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use keyfs::faultproxy::{FaultProxy, Faults};
use keyfs::transport::Scheme;
use keyfs::upload::resume::Policy;
use keyfs::upload::Tuning;
use support::core_rig::{self, Rig};
use support::jobs::{
    data, endpoint, eventually, sent_more_than, start, start_tuned, tuning, InProcKeyftpd, Spool,
    PATIENCE,
};
use support::pureftpd::{self, PureFtpd};

const WAIT: Duration = Duration::from_secs(30);
const SIZE: usize = 1_000_000;
const CUT: u64 = 400_000;

fn proxy(upstream: u16) -> FaultProxy {
    FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{upstream}").parse().unwrap(),
        Faults {
            cut_after: Some(CUT),
            cuts: 1,
            ..Faults::default()
        },
    )
    .expect("proxy")
}

/// A proxy in front of the rig's keyftpd that cuts the upload after `cut`
/// bytes: FTP data connections, or HTTP connections relayed as streams.
fn cutting_proxy(rig: &Rig, cut: u64) -> FaultProxy {
    let listen = "127.0.0.1:0".parse().unwrap();
    let up = format!("127.0.0.1:{}", rig.port).parse().unwrap();
    let faults = Faults {
        cut_after: Some(cut),
        cuts: 1,
        ..Faults::default()
    };
    match rig.scheme {
        Scheme::Ftp => FaultProxy::start(listen, up, faults),
        Scheme::Http => FaultProxy::start_tcp(listen, up, faults),
    }
    .expect("proxy")
}

/// The upload bytes the proxy saw, for a file of `size` resumed after a
/// cut: exactly `size` over FTP (data connections only); over HTTP the
/// stream also carries the request heads, the multipart form around the
/// bytes and the state queries, a few KiB.
fn assert_only_the_rest(rig: &Rig, up_data: u64, size: u64) {
    match rig.scheme {
        Scheme::Ftp => assert_eq!(up_data, size, "cut, then only the rest over FTP"),
        Scheme::Http => assert!(
            (size..size + 16 * 1024).contains(&up_data),
            "cut, then only the rest over HTTP: {up_data} bytes for {size}"
        ),
    }
}

over_both! {
    fn keyftpd_cut_resumes_sending_only_the_missing_part() {
        let rig = Rig::new();
        let px = cutting_proxy(&rig, CUT);
        let d = data(SIZE, 31);
        let spool = Spool::new();
        let s = start(rig.endpoint_at(px.addr().port()), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("cut.bin", &d)).unwrap();
        s.up.wait("cut.bin", WAIT).expect("uploaded");
        assert_eq!(rig.server_file("cut.bin").unwrap(), d);
        let st = px.stats();
        assert_eq!(st.cuts, 1);
        assert_only_the_rest(&rig, st.up_data, SIZE as u64);
        eprintln!(
            "keyftpd over {:?}, cut at {CUT} of {SIZE}: {} bytes up",
            rig.scheme, st.up_data
        );
        s.up.shutdown();
    }

    /// Several `sendfile` chunks (over FTP), cut after 5 MiB: the resume
    /// still sends exactly the missing part and the file is whole.
    fn keyftpd_cut_during_a_multi_chunk_sendfile_resumes() {
        const BIG: usize = 9 << 20;
        const BIG_CUT: u64 = 5 << 20;
        let rig = Rig::new();
        let px = cutting_proxy(&rig, BIG_CUT);
        let d = data(BIG, 34);
        let spool = Spool::new();
        let s = start(rig.endpoint_at(px.addr().port()), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("big.bin", &d)).unwrap();
        s.up.wait("big.bin", WAIT).expect("uploaded");
        assert!(rig.server_file("big.bin").unwrap() == d, "server copy differs");
        let st = px.stats();
        assert_eq!(st.cuts, 1);
        assert_only_the_rest(&rig, st.up_data, BIG as u64);
        // What was pushed into the cut socket counts as sent too.
        assert!(s.up.bytes_sent() >= BIG as u64, "{}", s.up.bytes_sent());
        s.up.shutdown();
    }
}

#[test]
fn stock_server_cut_restarts_by_default() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let px = proxy(srv.port);
    let d = data(SIZE, 32);
    let spool = Spool::new();
    let ep = endpoint(px.addr().port(), pureftpd::USER, pureftpd::PASSWORD);
    let s = start(ep, &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("cut.bin", &d)).unwrap();
    s.up.wait("cut.bin", WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.path("cut.bin")).unwrap(), d);
    let st = px.stats();
    assert_eq!(st.cuts, 1);
    assert_eq!(st.up_data, CUT + SIZE as u64, "restarted from zero: {st:?}");
    s.up.shutdown();
}

#[test]
fn stock_server_cut_trust_size_resumes() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let px = proxy(srv.port);
    let d = data(SIZE, 33);
    let spool = Spool::new();
    let ep = endpoint(px.addr().port(), pureftpd::USER, pureftpd::PASSWORD);
    let s = start(ep, &spool, 1, None, Policy::TrustSize);
    s.up.submit(spool.job("cut.bin", &d)).unwrap();
    s.up.wait("cut.bin", WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.path("cut.bin")).unwrap(), d);
    let st = px.stats();
    assert_eq!(st.cuts, 1);
    // Resumed at the server's size S: CUT + SIZE - S bytes in all. S is
    // CUT once pure-ftpd has written all it read before the cut, less when
    // keyfs asked while it was still at it (a loaded machine); a restart
    // from zero would be CUT + SIZE.
    assert!(
        st.up_data >= SIZE as u64 && st.up_data < CUT + SIZE as u64,
        "not resumed at the server's size: {st:?}"
    );
    s.up.shutdown();
}

/// On a slow uplink (1 MiB/s through the proxy) a rename, then a cancel,
/// of a file being sent by `sendfile` lets go of the name within 2 s: the
/// worker checks for abort between calls, and no call lasts longer than
/// its time budget (a 4 MiB call would hold it for 4 s).
#[test]
fn slow_sendfile_lets_go_quickly_on_rename_and_cancel() {
    const RATE: u64 = 1 << 20;
    const BOUND: Duration = Duration::from_secs(2);
    let srv = InProcKeyftpd::start();
    let px = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{}", srv.port).parse().unwrap(),
        Faults {
            throttle: Some(RATE),
            ..Faults::default()
        },
    )
    .expect("proxy");
    let d = data(32 << 20, 35);
    let spool = Spool::new();
    let s = start_tuned(
        endpoint(px.addr().port(), "u", "pw"),
        &spool,
        1,
        None,
        Policy::Safe,
        Tuning {
            chunk_size: 256 << 10,
            ..tuning()
        },
    );
    s.up.submit(spool.job("slow.bin", &d)).unwrap();
    assert!(sent_more_than(&s.up, 6 << 20), "upload did not get going");

    let t = Instant::now();
    let moved = s.up.rename("slow.bin", "moved.bin");
    assert_eq!(moved.len(), 1);
    assert!(s.up.wait_idle("slow.bin", Duration::from_secs(15)));
    let took = t.elapsed();
    eprintln!("rename let go after {took:?}");
    assert!(took < BOUND, "rename waited {took:?} for the upload");

    // The job restarts under its new name; cancel it mid-transfer.
    assert!(
        eventually(PATIENCE, || s.up.status().iter().any(|j| j
            .record
            .remote_path
            == "moved.bin"
            && j.sent > (1 << 20))),
        "upload under the new name did not get going"
    );
    let t = Instant::now();
    s.up.cancel("moved.bin");
    assert!(s.up.wait_idle("moved.bin", Duration::from_secs(15)));
    let took = t.elapsed();
    eprintln!("cancel let go after {took:?}");
    assert!(took < BOUND, "cancel waited {took:?} for the upload");
    assert!(s.up.sendfile_bytes() > 0, "the upload went by sendfile");

    // A shutdown in the middle of a third upload.
    s.up.submit(spool.job("third.bin", &d)).unwrap();
    assert!(
        eventually(PATIENCE, || s.up.status().iter().any(|j| j
            .record
            .remote_path
            == "third.bin"
            && j.sent > (1 << 20))),
        "third upload did not get going"
    );
    let t = Instant::now();
    s.up.shutdown();
    let took = t.elapsed();
    eprintln!("shutdown took {took:?}");
    assert!(took < BOUND, "shutdown took {took:?}");
}
