//! The uploader against a real stock server (pure-ftpd: no KEY, no XCRC).

mod support;

use std::time::Duration;

use keyfs::spool::journal::JobState;
use keyfs::upload::resume::Policy;
use keyfs::upload::UploadError;
use support::jobs::{data, eventually, sent_more_than, start, Spool, PATIENCE};
use support::pureftpd::PureFtpd;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn upload_verify_and_drop_spool() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 2, None, Policy::Safe);
    let mut recs = Vec::new();
    for i in 0..4 {
        let d = data(100_000 + i * 33_333, i as u32);
        let r = spool.job(&format!("f{i}.bin"), &d);
        s.up.submit(r.clone()).expect("submit");
        recs.push((r, d));
    }
    // Line endings pass unchanged (binary mode).
    let text = b"a\nb\r\nc\n".to_vec();
    let r = spool.job("text.txt", &text);
    s.up.submit(r.clone()).unwrap();
    recs.push((r, text));
    for (r, d) in &recs {
        s.up.wait(&r.remote_path, WAIT).expect("uploaded");
        assert_eq!(&std::fs::read(srv.path(&r.remote_path)).unwrap(), d);
        assert!(
            !spool.journal.data_path(r.id).exists(),
            "spool data dropped"
        );
    }
    assert!(spool.journal.load_all().unwrap().is_empty());
    assert!(s.up.status().is_empty());
    assert_eq!(s.done.lock().unwrap().len(), recs.len());
    assert_eq!(
        s.up.bytes_sent(),
        recs.iter().map(|(r, _)| r.size).sum::<u64>()
    );
    s.up.shutdown();
}

#[test]
fn stock_server_restarts_from_zero_by_default() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let d = data(300_000, 7);
    srv.put_local("p.bin", &d[..120_000]).unwrap();
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("p.bin", &d)).unwrap();
    s.up.wait("p.bin", WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.path("p.bin")).unwrap(), d);
    assert_eq!(s.up.bytes_sent(), 300_000, "whole file re-sent");
    s.up.shutdown();
}

#[test]
fn stock_server_trust_size_resumes() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let d = data(300_000, 8);
    srv.put_local("p.bin", &d[..120_000]).unwrap();
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::TrustSize);
    s.up.submit(spool.job("p.bin", &d)).unwrap();
    s.up.wait("p.bin", WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.path("p.bin")).unwrap(), d);
    assert_eq!(s.up.bytes_sent(), 180_000, "only the missing part sent");
    s.up.shutdown();
}

#[test]
fn permanent_error_is_recorded_and_spool_kept() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    // A directory the FTP user cannot write into.
    let ro = srv.path("ro");
    std::fs::create_dir(&ro).unwrap();
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    let r = spool.job("ro/x.bin", b"forbidden");
    s.up.submit(r.clone()).unwrap();
    match s.up.wait("ro/x.bin", WAIT) {
        Err(UploadError::Permanent(msg)) => assert!(msg.contains("55"), "{msg}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    let st = s.up.status();
    assert_eq!(st.len(), 1);
    assert!(matches!(st[0].record.state, JobState::Failed(_)));
    assert!(st[0].last_error.is_some());
    assert!(spool.journal.data_path(r.id).exists(), "spooled copy kept");
    let recs = spool.journal.load_all().unwrap();
    assert!(matches!(recs[0].state, JobState::Failed(_)));
    assert!(s.done.lock().unwrap().is_empty());
    // Renaming the pending file to an allowed name uploads it.
    s.up.rename("ro/x.bin", "x.bin");
    s.up.wait("x.bin", WAIT).expect("uploaded after rename");
    assert_eq!(std::fs::read(srv.path("x.bin")).unwrap(), b"forbidden");
    s.up.shutdown();
}

#[test]
fn server_restart_mid_upload_recovers() {
    let mut srv = PureFtpd::start().expect("pure-ftpd");
    let d = data(1_500_000, 9);
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 1, Some(1_000_000), Policy::Safe);
    s.up.submit(spool.job("big.bin", &d)).unwrap();
    assert!(sent_more_than(&s.up, 300_000));
    srv.stop();
    std::thread::sleep(Duration::from_millis(700));
    srv.restart().expect("restart");
    s.up.wait("big.bin", WAIT).expect("uploaded after restart");
    assert_eq!(std::fs::read(srv.path("big.bin")).unwrap(), d);
    assert!(
        s.up.bytes_sent() > 1_500_000,
        "Safe policy restarted from 0"
    );
    s.up.shutdown();
}

#[test]
fn cancel_and_replace_while_uploading() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 2, Some(500_000), Policy::Safe);
    let old = data(2_000_000, 10);
    let r_old = spool.job("c.bin", &old);
    s.up.submit(r_old.clone()).unwrap();
    assert!(sent_more_than(&s.up, 100_000));
    // Replace: the new version wins, never mixed with the old.
    let new = data(300_000, 11);
    let r_new = spool.job("c.bin", &new);
    s.up.submit(r_new.clone()).unwrap();
    assert!(!spool.journal.data_path(r_old.id).exists());
    s.up.wait("c.bin", WAIT).expect("new version uploaded");
    assert_eq!(std::fs::read(srv.path("c.bin")).unwrap(), new);
    let done = s.done.lock().unwrap().clone();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, r_new.id);

    // Cancel: the job and its data are gone, wait returns at once.
    let r = spool.job("gone.bin", &data(2_000_000, 12));
    s.up.submit(r.clone()).unwrap();
    assert!(sent_more_than(&s.up, 50_000));
    s.up.cancel("gone.bin");
    assert!(s.up.status().is_empty());
    assert!(!spool.journal.data_path(r.id).exists());
    s.up.wait("gone.bin", Duration::from_secs(1))
        .expect("nothing pending");
    assert!(spool.journal.load_all().unwrap().is_empty());
    s.up.shutdown();
}

#[test]
fn journal_jobs_resume_at_start_and_wait_times_out_when_down() {
    let mut srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let d = data(50_000, 13);
    let r = spool.job("later.bin", &d);
    spool.journal.record(&r).unwrap();
    // A file that was open when the daemon died is reported, not uploaded.
    let mut open = spool.job("open.bin", b"half");
    open.state = JobState::Open;
    spool.journal.record(&open).unwrap();

    srv.stop();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    assert!(matches!(
        s.up.wait("later.bin", Duration::from_millis(800)),
        Err(UploadError::Timeout)
    ));
    assert!(eventually(PATIENCE, || s.up.status().iter().any(|j| j
        .record
        .id
        == r.id
        && j.last_error.is_some())));
    srv.restart().expect("restart");
    s.up.wait("later.bin", WAIT).expect("uploaded");
    assert_eq!(std::fs::read(srv.path("later.bin")).unwrap(), d);
    let st = s.up.status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].record.state, JobState::Open);
    assert!(!srv.path("open.bin").exists());
    assert!(spool.journal.data_path(open.id).exists());
    // A new version of that path uploads; the crashed one is still kept.
    s.up.submit(spool.job("open.bin", b"whole")).unwrap();
    s.up.wait("open.bin", WAIT).expect("new version uploaded");
    assert_eq!(std::fs::read(srv.path("open.bin")).unwrap(), b"whole");
    assert!(spool.journal.data_path(open.id).exists());
    assert_eq!(s.up.status().len(), 1);
    s.up.shutdown();
}
