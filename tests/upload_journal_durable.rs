//! The close path's durability with a real uploader and keyftpd: records
//! submitted without fsync (`submit_volatile`) are committed by the
//! syncer in batches, flushed at shutdown, removed (data, then record)
//! once uploaded; and replay drops a `Queued` record whose data is gone
//! (an upload whose removal a power cut undid) instead of failing it,
//! while an `Open` record is still kept and reported.

mod support;

use std::time::Duration;

use keyfs::spool::journal::{JobRecord, JobState, Journal};
use keyfs::upload::resume::Policy;
use support::jobs::{data, endpoint, eventually, start, InProcKeyftpd, Spool, PATIENCE};

const WAIT: Duration = Duration::from_secs(30);

/// A port nothing listens on: uploads stay pending (connection refused).
/// A server that never answers: bound and listening (so no other test's
/// server can get its port, as a closed port could be reused by a parallel
/// test), but never accepting or greeting. Keep it alive for the test.
fn silent_server() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn volatile_submits_are_uploaded_synced_and_removed() {
    let srv = InProcKeyftpd::start();
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 2, None, Policy::Safe);
    let n = 60;
    let mut recs = Vec::new();
    for i in 0..n {
        let r = spool.job(&format!("f{i}.bin"), &data(4096, i));
        s.up.submit_volatile(r.clone()).expect("submit");
        recs.push(r);
    }
    for (i, r) in recs.iter().enumerate() {
        s.up.wait(&r.remote_path, WAIT).expect("uploaded");
        assert_eq!(srv.read(&r.remote_path), data(4096, i as u32));
    }
    assert!(s.up.flush_durable(WAIT), "syncer flush timed out");
    let st = s.up.sync_stats();
    assert_eq!(st.synced + st.skipped, n as u64, "{st:?}");
    assert_eq!(st.errors, 0);
    assert!(st.dir_syncs <= st.batches);
    // Completion dropped data and record, without leftovers.
    for r in &recs {
        assert!(!spool.journal.data_path(r.id).exists());
    }
    assert!(spool.journal.load_all().expect("load").is_empty());
    s.up.shutdown();
}

#[test]
fn shutdown_commits_pending_volatile_jobs() {
    let spool = Spool::new();
    let (_silent, port) = silent_server();
    let s = start(endpoint(port, "u", "pw"), &spool, 1, None, Policy::Safe);
    let n = 25u64;
    for i in 0..n {
        let r = spool.job(&format!("p{i}"), &data(100, i as u32));
        s.up.submit_volatile(r).expect("submit");
    }
    s.up.shutdown();
    let st = s.up.sync_stats();
    assert_eq!((st.synced, st.skipped, st.errors), (n, 0, 0), "{st:?}");
    assert!(st.dir_syncs >= 1 && st.dir_syncs <= st.batches);
    // Nothing was uploaded: every job is still queued in the journal.
    let again = Journal::open(spool.dir.path()).expect("reopen");
    let recs = again.load_all().expect("load");
    assert_eq!(recs.len(), n as usize);
    assert!(recs.iter().all(|r| r.state == JobState::Queued));
}

#[test]
fn replay_drops_queued_records_without_data_and_keeps_open_ones() {
    let srv = InProcKeyftpd::start();
    let spool = Spool::new();
    let j = &spool.journal;
    // Uploaded just before a power cut: data removed, record back.
    let stale = spool.job("stale.bin", b"gone");
    std::fs::remove_file(j.data_path(stale.id)).expect("rm data");
    j.record(&stale).expect("record");
    // A normal pending job.
    let live = spool.job("live.bin", &data(5000, 3));
    j.record(&live).expect("record");
    // Open at the crash, data missing too: kept and reported as before.
    let open = JobRecord {
        state: JobState::Open,
        ..spool.job("open.bin", b"half")
    };
    std::fs::remove_file(j.data_path(open.id)).expect("rm data");
    j.record(&open).expect("record");

    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    s.up.wait("live.bin", WAIT).expect("live uploaded");
    assert_eq!(srv.read("live.bin"), data(5000, 3));
    // The stale job is neither a failure nor uploaded, and its record is gone.
    s.up.wait("stale.bin", WAIT)
        .expect("stale is not a failure");
    assert!(srv.read("stale.bin").is_empty());
    assert!(!srv.root.path().join("stale.bin").exists());
    assert_eq!(j.load(stale.id).expect("load"), None);
    // The Open job is kept, reported, never uploaded.
    let status = s.up.status();
    assert!(status.iter().all(|js| js.record.id != stale.id));
    let kept = status
        .iter()
        .find(|js| js.record.id == open.id)
        .expect("open job reported");
    assert_eq!(kept.record.state, JobState::Open);
    assert!(kept.last_error.is_some());
    assert!(eventually(PATIENCE, || j
        .load(live.id)
        .is_ok_and(|r| r.is_none())));
    assert_eq!(
        j.load(open.id).expect("load").map(|r| r.state),
        Some(JobState::Open)
    );
    assert!(!srv.root.path().join("open.bin").exists());
    s.up.shutdown();
}

/// After a machine reset (the spool's boot marker says a daemon of another
/// boot was running), queued jobs are re-checksummed before upload: one
/// whose data no longer matches its record fails and is kept, and the
/// good server copy is not overwritten; an intact one uploads.
#[test]
fn after_a_machine_reset_damaged_jobs_fail_instead_of_overwriting() {
    let srv = InProcKeyftpd::start();
    let spool = Spool::new();
    let good = data(50_000, 7);
    let other = data(50_000, 8);
    // The server holds a complete, verified copy of a.bin.
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("a.bin", &good)).unwrap();
    s.up.wait("a.bin", WAIT).expect("first upload");
    s.up.shutdown();
    // A record of a.bin that survived a power cut while its data file
    // (same size) holds another file's bytes, and an intact job.
    let damaged = spool.job("a.bin", &good);
    std::fs::write(spool.journal.data_path(damaged.id), &other).unwrap();
    spool.journal.record(&damaged).unwrap();
    let intact = spool.job("b.bin", &other);
    spool.journal.record(&intact).unwrap();
    std::fs::write(
        spool.dir.path().join("boot"),
        "running 00000000-0000-reset\n",
    )
    .unwrap();

    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    s.up.wait("b.bin", WAIT).expect("intact job uploads");
    assert!(srv.read("b.bin") == other);
    let st = s.up.status();
    let a = st
        .iter()
        .find(|j| j.record.remote_path == "a.bin")
        .expect("a.bin kept");
    let err = a.last_error.clone().unwrap_or_default();
    assert!(err.contains("damaged by the machine reset"), "{err}");
    assert!(
        srv.read("a.bin") == good,
        "the good server copy was overwritten"
    );
    assert!(spool.journal.data_path(damaged.id).exists(), "data kept");
    s.up.shutdown();
    let marker = std::fs::read_to_string(spool.dir.path().join("boot")).unwrap();
    assert!(marker.starts_with("clean "), "{marker}");
}

/// A record that cannot be written (here the journal directory is gone;
/// on a device, a full spool disk) does not drop the file: it is still
/// queued and uploaded.
#[test]
fn a_job_whose_record_cannot_be_written_is_still_uploaded() {
    let srv = InProcKeyftpd::start();
    let spool = Spool::new();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    let body = data(30_000, 11);
    let rec = spool.job("norecord.bin", &body);
    let jdir = spool.dir.path().join("journal");
    std::fs::rename(&jdir, spool.dir.path().join("journal.away")).unwrap();
    std::fs::write(&jdir, b"not a directory").unwrap();
    s.up.submit_volatile(rec).expect("queued from memory");
    s.up.wait("norecord.bin", WAIT)
        .expect("uploaded without a record");
    assert!(srv.read("norecord.bin") == body);
    s.up.shutdown();
}
