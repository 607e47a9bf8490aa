//! An HTTP upload the server refuses before taking its body (here 423: the
//! file is locked by another account's stalled upload) shows the server's
//! answer as the job's error, not the broken pipe the closed connection
//! left; once the lock is gone, the upload goes through.

mod support;

use std::time::Duration;

use keyfs::transport::Scheme;
use keyfs::upload::resume::Policy;
use support::http::HttpKeyftpd;
use support::jobs::{data, endpoint, eventually, start, Spool, PATIENCE};
use support::keyftpd::{key_of, pattern, temp_root, PASS, USER};

#[test]
fn a_locked_file_reports_http_423_then_uploads() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &["--http-timeout", "60"]);
    // Another upload of t.bin, with another key, stalls holding the lock.
    let other = pattern(900_000, 41);
    let stalled = srv
        .client()
        .post_partial("/t.bin", 0, &key_of(&other), &other, 300_000);
    assert!(eventually(PATIENCE, || {
        std::fs::metadata(root.join("t.bin")).map(|m| m.len()).ok() == Some(300_000)
    }));

    // Larger than the socket buffers, so the refusal meets a send.
    let ours = data(24 << 20, 7);
    let spool = Spool::new();
    let mut ep = endpoint(srv.http.port(), USER, PASS);
    ep.scheme = Scheme::Http;
    let s = start(ep, &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("/t.bin", &ours)).expect("submit");

    let mut last = String::new();
    let told = eventually(PATIENCE, || {
        last =
            s.up.status()
                .first()
                .and_then(|j| j.last_error.clone())
                .unwrap_or_default();
        last.contains("HTTP 423")
    });
    assert!(told, "the job's error does not name the refusal: {last:?}");
    assert!(last.contains("busy"), "{last}");
    assert!(s.done.lock().unwrap().is_empty());

    // The stalled upload goes away: ours replaces its partial.
    drop(stalled);
    assert!(eventually(PATIENCE + Duration::from_secs(30), || s
        .done
        .lock()
        .unwrap()
        .len()
        == 1));
    assert_eq!(std::fs::read(root.join("t.bin")).expect("file"), ours);
}
