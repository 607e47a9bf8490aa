//! A stalled upload over keyftpd's HTTP face is taken over at once by the
//! same account sending the same key, over HTTP or FTP, and an FTP upload
//! stalled the same way is taken over by an HTTP POST: a client whose
//! link went away gets its resume answered within a fraction of a second,
//! not 423 until the old body's request timeout (60 s here).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::http::{parse_state, read_response, HttpKeyftpd};
use support::keyftpd::{key_of, pattern, temp_root, Ctrl, PASS, USER};

/// Far below the server's 60 s request timeout.
const PROMPT: Duration = Duration::from_secs(20);
/// Longer than the server waits for silence before it stops an upload
/// (1 s): the old upload is stalled, not merely between two chunks.
const SILENT: Duration = Duration::from_millis(1300);

/// Waits (bounded) until `path` is `len` bytes long.
fn wait_len(path: &std::path::Path, len: u64) {
    let t = Instant::now();
    while std::fs::metadata(path).map(|m| m.len()).ok() != Some(len) {
        assert!(t.elapsed() < Duration::from_secs(30), "never reached {len}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a seed POST of the whole of `data` from 0 with its key, sends
/// `send` bytes of it and goes silent, the connection left open (a client
/// whose link went away), for [`SILENT`]. Returns the connection.
fn stalled_post(srv: &HttpKeyftpd, path: &str, data: &[u8], send: usize) -> TcpStream {
    let s = srv
        .client()
        .post_partial(path, 0, &key_of(data), data, send);
    wait_len(&srv.root.join(path.trim_start_matches('/')), send as u64);
    std::thread::sleep(SILENT);
    s
}

fn ftp_login(srv: &HttpKeyftpd) -> Ctrl {
    let mut c = Ctrl::connect(srv.ftp.expect("ftp face"));
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
    c
}

#[test]
fn stalled_post_taken_over_by_a_post_with_the_same_key() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &["--http-timeout", "60"]);
    let c = srv.client();
    let data = pattern(900_000, 31);
    let key = key_of(&data);
    let n = 300_000;
    let mut old = stalled_post(&srv, "/t.bin", &data, n);

    // Another key may not take it: busy.
    let r = c.post_file("/t.bin", n as u64, Some("0x12345678"), &data[n..]);
    assert_eq!(r.status, 423, "{}", r.text());

    // The same key resumes at once, where the stalled body stopped.
    let t0 = Instant::now();
    let r = c.post_file("/t.bin", n as u64, Some(&key), &data[n..]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t0.elapsed() < PROMPT, "takeover waited {:?}", t0.elapsed());
    assert_eq!(parse_state(&r.text()), (data.len() as u64, Some(key), true));
    assert_eq!(std::fs::read(root.join("t.bin")).expect("file"), data);

    // The old request was told why it ended.
    let r = read_response(&mut old, false).expect("old request's answer");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("took over"), "{}", r.text());
}

#[test]
fn stalled_post_taken_over_by_an_ftp_resume() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, true, &["--http-timeout", "60"]);
    let data = pattern(700_000, 32);
    let key = key_of(&data);
    let n = 250_000;
    let _old = stalled_post(&srv, "/u.bin", &data, n);

    let mut ctrl = ftp_login(&srv);
    let t0 = Instant::now();
    assert_eq!(ctrl.cmd(&format!("KEY {key}")).0, 230);
    // The same-name prompt: a partial of n bytes is there.
    let (code, text) = ctrl.cmd("STOR u.bin");
    assert_eq!(code, 350, "{text}");
    assert!(text.contains(&n.to_string()), "{text}");
    let mut d = ctrl.data();
    assert_eq!(ctrl.cmd(&format!("REST {n}")).0, 350);
    let (code, text) = ctrl.cmd("STOR u.bin");
    assert_eq!(code, 150, "{text}");
    d.write_all(&data[n..]).expect("data");
    drop(d);
    let (code, text) = ctrl.read_reply();
    assert_eq!(code, 226, "{text}");
    assert!(t0.elapsed() < PROMPT, "takeover waited {:?}", t0.elapsed());
    assert_eq!(std::fs::read(root.join("u.bin")).expect("file"), data);
    assert_eq!(
        srv.client().state("/u.bin"),
        (data.len() as u64, Some(key), true)
    );
}

#[test]
fn stalled_ftp_stor_taken_over_by_a_post() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, true, &["--http-timeout", "60"]);
    let data = pattern(600_000, 33);
    let key = key_of(&data);
    let n = 200_000;
    let mut ctrl = ftp_login(&srv);
    assert_eq!(ctrl.cmd(&format!("KEY {key}")).0, 230);
    let mut d = ctrl.data();
    assert_eq!(ctrl.cmd("STOR v.bin").0, 150);
    d.write_all(&data[..n]).expect("data");
    wait_len(&root.join("v.bin"), n as u64);
    std::thread::sleep(SILENT);

    let t0 = Instant::now();
    let r = srv
        .client()
        .post_file("/v.bin", n as u64, Some(&key), &data[n..]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t0.elapsed() < PROMPT, "takeover waited {:?}", t0.elapsed());
    assert_eq!(parse_state(&r.text()), (data.len() as u64, Some(key), true));
    let (code, text) = ctrl.read_reply();
    assert_eq!(code, 426, "{text}");
    assert!(text.contains("took over"), "{text}");
    drop(d);
    assert_eq!(std::fs::read(root.join("v.bin")).expect("file"), data);
}

/// An upload still receiving is not stopped for a newcomer with the same
/// key (its client may be draining what was in flight): the newcomer gets
/// 423 at once, and the old upload finishes.
#[test]
fn a_live_upload_is_not_taken_over() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &["--http-timeout", "60"]);
    let c = srv.client();
    let data = pattern(600_000, 34);
    let key = key_of(&data);
    let mut old = c.post_partial("/w.bin", 0, &key, &data, 0);
    let sent = 200_000;
    old.write_all(&data[..sent]).expect("first part");
    wait_len(&root.join("w.bin"), sent as u64);
    // Keep the old upload alive, a little at a time, while a newcomer asks.
    let feeder = {
        let mut s = old.try_clone().expect("clone");
        let rest = data[sent..].to_vec();
        std::thread::spawn(move || {
            for piece in rest.chunks(20_000) {
                s.write_all(piece).expect("keep sending");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let at = std::fs::metadata(root.join("w.bin")).expect("file").len() as usize;
    let t0 = Instant::now();
    let r = c.post_file("/w.bin", at as u64, Some(&key), &data[at..]);
    assert_eq!(r.status, 423, "{}", r.text());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "waited {:?}",
        t0.elapsed()
    );
    feeder.join().expect("feeder");
    let (_, tail) = support::http::form_parts(Some(0), Some(&key));
    old.write_all(&tail).expect("form tail");
    let r = read_response(&mut old, false).expect("old request's answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(parse_state(&r.text()), (data.len() as u64, Some(key), true));
    assert_eq!(std::fs::read(root.join("w.bin")).expect("file"), data);
}
