//! A dead or frozen server never hangs a thread: every socket has a timeout,
//! and the uploader retries through a frozen server until it answers again.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use keyfs::remote::Session;
use keyfs::transport::Endpoint;
use keyfs::upload::resume::Policy;
use keyfs::upload::Tuning;
use support::jobs::{data, eventually, sent_more_than, start_tuned, Spool, PATIENCE};
use support::pureftpd::PureFtpd;

#[test]
fn silent_server_times_out() {
    // Accepts connections (the kernel backlog) but never greets.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = Endpoint {
        scheme: Default::default(),
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
        user: "u".into(),
        password: "p".into(),
        root: "/".into(),
        tls: Default::default(),
    };
    let t = Instant::now();
    let e = Session::connect(&ep, Duration::from_millis(700))
        .err()
        .expect("no greeting");
    // Far below "forever"; generous for a loaded CI machine.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!e.is_permanent());
    assert_eq!(e.to_errno(), libc::ETIMEDOUT, "{e}");
}

#[test]
fn frozen_server_mid_upload_is_retried() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let tuning = Tuning {
        io_timeout: Duration::from_secs(1),
        slow_reply_timeout: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        chunk_size: 64 * 1024,
    };
    let d = data(2_000_000, 21);
    let s = start_tuned(
        srv.endpoint(),
        &spool,
        1,
        Some(1_000_000),
        Policy::Safe,
        tuning,
    );
    s.up.submit(spool.job("frozen.bin", &d)).unwrap();
    assert!(sent_more_than(&s.up, 300_000));
    srv.signal(libc::SIGSTOP);
    assert!(
        eventually(PATIENCE, || s
            .up
            .status()
            .first()
            .is_some_and(|j| j.last_error.is_some())),
        "the worker noticed the frozen server"
    );
    srv.signal(libc::SIGCONT);
    s.up.wait("frozen.bin", Duration::from_secs(60))
        .expect("uploaded after the server thawed");
    assert_eq!(std::fs::read(srv.path("frozen.bin")).unwrap(), d);
    s.up.shutdown();
}
