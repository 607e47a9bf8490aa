//! The uploader and `remote::Session` against keyftpd (KEY + XCRC): the
//! same-name prompt, KEY NULL, resume of a same-key partial sending only the
//! missing bytes, restart for another file's partial or a damaged one (these
//! three over FTP and over HTTP), and a server killed (kill -9) mid-upload.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyfs::key::Key;
use keyfs::remote::{Session, StoreStart};
use keyfs::server::{Server, ServerConfig, ServerHandle};
use keyfs::transport::Endpoint;
use keyfs::transport::{Conn, Holding};
use keyfs::upload::resume::Policy;
use support::core_rig::{self, Rig};
use support::jobs::{data, eventually, sent_more_than, start, Spool, PATIENCE};

const WAIT: Duration = Duration::from_secs(30);
const USER: &str = "u";
const PASS: &str = "pw";

struct InProc {
    root: tempfile::TempDir,
    handle: Option<ServerHandle>,
    port: u16,
}

impl InProc {
    fn start() -> InProc {
        let root = tempfile::tempdir().unwrap();
        let cfg = ServerConfig::new(root.path().to_path_buf(), "127.0.0.1:0".parse().unwrap())
            .with_user(USER, PASS);
        let server = Server::bind(cfg).expect("bind keyftpd");
        let port = server.local_addr().port();
        InProc {
            root,
            handle: Some(server.spawn()),
            port,
        }
    }
    fn ep(&self) -> Endpoint {
        ep(self.port)
    }
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(rel)).unwrap_or_default()
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn ep(port: u16) -> Endpoint {
    Endpoint {
        scheme: Default::default(),
        host: "127.0.0.1".into(),
        port,
        user: USER.into(),
        password: PASS.into(),
        root: "/".into(),
        tls: Default::default(),
    }
}

/// Leaves a partial upload on the server: `KEY key`, STOR, `prefix`, close.
fn make_partial(ep: &Endpoint, path: &str, key: u32, prefix: &[u8]) {
    let mut s = Session::connect(ep, Duration::from_secs(5)).expect("connect");
    s.key_set(Key(key)).expect("KEY");
    match s.store_at(path, 0, false).expect("STOR") {
        StoreStart::Started(mut up) => {
            up.write_all(prefix).unwrap();
            s.finish_store(up).expect("226");
        }
        StoreStart::Prompt(_) => panic!("no partial expected yet"),
    }
}

#[test]
fn session_speaks_key() {
    let srv = InProc::start();
    let d = data(100_000, 1);
    let crc = crc32fast::hash(&d);
    make_partial(&srv.ep(), "k.bin", crc, &d[..40_000]);
    let mut s = Session::connect(&srv.ep(), Duration::from_secs(5)).unwrap();
    let f = s.features();
    assert!(f.key && f.xcrc && f.mlsd, "{f:?}");
    assert_eq!(s.size("k.bin").unwrap(), Some(40_000));
    assert_eq!(
        s.xcrc("k.bin", Some((0, 40_000))).unwrap(),
        crc32fast::hash(&d[..40_000])
    );
    s.key_set(Key(crc)).unwrap();
    match s.store_at("k.bin", 0, false).unwrap() {
        StoreStart::Prompt(n) => assert_eq!(n, 40_000),
        StoreStart::Started(_) => panic!("expected the same-name prompt"),
    }
    assert_eq!(s.key_null().unwrap(), Some(Key(crc)));
    // REST + STOR resumes with the bound key; the server marks it complete.
    match s.store_at("k.bin", 40_000, false).unwrap() {
        StoreStart::Started(mut up) => {
            up.write_all(&d[40_000..]).unwrap();
            s.finish_store(up).unwrap();
        }
        StoreStart::Prompt(_) => panic!("second prompt"),
    }
    assert_eq!(srv.read("k.bin"), d);
    assert_eq!(s.xcrc("k.bin", None).unwrap(), crc);
    let l = s.list("").unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].name.as_str(), l[0].size), ("k.bin", 100_000));
    let st = s.stat("k.bin").unwrap().expect("exists");
    assert_eq!((st.size, st.is_dir), (100_000, false));
    assert!(s.stat("none.bin").unwrap().is_none());
    s.mkdir("d").unwrap();
    assert!(s.stat("d").unwrap().unwrap().is_dir);
    s.rename("k.bin", "d/k2.bin").unwrap();
    assert_eq!(s.list("d").unwrap()[0].name, "k2.bin");
    // The key follows the rename: the file is complete, a plain STOR of a
    // new version with another key overwrites without a prompt.
    s.key_set(Key(1)).unwrap();
    match s.store_at("d/k2.bin", 0, false).unwrap() {
        StoreStart::Started(mut up) => {
            up.write_all(b"new").unwrap();
            s.finish_store(up).unwrap();
        }
        StoreStart::Prompt(_) => panic!("a complete file gives no prompt"),
    }
    assert_eq!(srv.read("d/k2.bin"), b"new");
}

#[test]
fn upload_and_verify() {
    let srv = InProc::start();
    let spool = Spool::new();
    let s = start(srv.ep(), &spool, 2, None, Policy::Safe);
    let a = data(500_000, 2);
    let b = b"line\nline\r\n".to_vec();
    s.up.submit(spool.job("a.bin", &a)).unwrap();
    s.up.submit(spool.job("b.txt", &b)).unwrap();
    s.up.wait("a.bin", WAIT).expect("a");
    s.up.wait("b.txt", WAIT).expect("b");
    assert_eq!(srv.read("a.bin"), a);
    assert_eq!(srv.read("b.txt"), b);
    assert_eq!(s.up.bytes_sent(), (a.len() + b.len()) as u64);
    // No cap, plain TCP: every byte went by sendfile, none through a buffer.
    assert_eq!(s.up.sendfile_bytes(), s.up.bytes_sent());
    assert!(spool.journal.load_all().unwrap().is_empty());
    s.up.shutdown();
}

/// `Duration::MAX` means "no time limit" to `wait`; it used to overflow
/// `Instant + Duration` and panic.
#[test]
fn wait_without_a_time_limit() {
    let srv = InProc::start();
    let spool = Spool::new();
    let s = start(srv.ep(), &spool, 1, None, Policy::Safe);
    s.up.wait("nothing.bin", Duration::MAX)
        .expect("nothing pending");
    let a = data(100_000, 3);
    s.up.submit(spool.job("a.bin", &a)).unwrap();
    s.up.wait("a.bin", Duration::MAX).expect("a");
    assert_eq!(srv.read("a.bin"), a);
    s.up.shutdown();
}

/// Leaves a partial upload on the server over the rig's transport: an
/// upload keyed `key` (KEY + STOR, or the seed POST) of `prefix` only.
fn make_partial_on(rig: &Rig, path: &str, key: u32, prefix: &[u8]) {
    let mut c = Conn::connect(&rig.endpoint(), Duration::from_secs(5)).expect("connect");
    let mut up = match c.probe(path, Key(key), prefix.len() as u64).expect("probe") {
        Holding::Nothing { open: Some(up) } => up,
        Holding::Nothing { open: None } => c.send_from(path, 0, prefix.len() as u64).expect("send"),
        Holding::Partial { .. } => panic!("no partial expected yet"),
    };
    up.write_all(prefix).unwrap();
    c.finish_send(up).expect("sent");
}

over_both! {
    fn same_key_partial_resumes_sending_only_the_rest() {
        let rig = Rig::new();
        let d = data(1_000_000, 3);
        make_partial_on(&rig, "r.bin", crc32fast::hash(&d), &d[..377_777]);
        let spool = Spool::new();
        let s = start(rig.endpoint(), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("r.bin", &d)).unwrap();
        s.up.wait("r.bin", WAIT).expect("uploaded");
        assert_eq!(rig.server_file("r.bin").unwrap(), d);
        assert_eq!(
            s.up.bytes_sent(),
            1_000_000 - 377_777,
            "only the missing part"
        );
        s.up.shutdown();
    }

    fn other_files_partial_restarts_never_mixed() {
        let rig = Rig::new();
        let other = data(600_000, 4);
        let d = data(400_000, 5);
        make_partial_on(&rig, "x.bin", crc32fast::hash(&other), &other[..200_000]);
        let spool = Spool::new();
        let s = start(rig.endpoint(), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("x.bin", &d)).unwrap();
        s.up.wait("x.bin", WAIT).expect("x");
        assert_eq!(rig.server_file("x.bin").unwrap(), d);
        assert_eq!(s.up.bytes_sent(), 400_000, "restarted from zero");
        s.up.shutdown();
    }

    fn small_file_over_a_same_key_partial_ends_whole() {
        // Up to 64 KiB, HTTP posts the file whole from 0 without asking
        // for the state first (a resume would save less than the query
        // costs), once the server has answered a state on the connection
        // (here to the first upload): the partial is replaced, and the
        // POST's answered state verifies it. FTP's KEY flow asks anyway
        // and resumes.
        let rig = Rig::new();
        let first = data(1000, 7);
        let d = data(50_000, 6);
        make_partial_on(&rig, "s.bin", crc32fast::hash(&d), &d[..20_000]);
        let spool = Spool::new();
        let s = start(rig.endpoint(), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("first.bin", &first)).unwrap();
        s.up.wait("first.bin", WAIT).expect("first");
        s.up.submit(spool.job("s.bin", &d)).unwrap();
        s.up.wait("s.bin", WAIT).expect("s");
        assert_eq!(rig.server_file("s.bin").unwrap(), d);
        let sent = match core_rig::transport() {
            keyfs::transport::Scheme::Ftp => 30_000,
            keyfs::transport::Scheme::Http => 50_000,
        };
        assert_eq!(s.up.bytes_sent(), 1000 + sent);
        s.up.shutdown();
    }

    fn same_key_damaged_partial_ends_replaced() {
        // Same key, damaged bytes: the prefix check (XCRC over FTP,
        // `?crc=N` over HTTP) catches it at once: the file is sent whole,
        // once, never resumed onto the damaged bytes.
        let rig = Rig::new();
        let d = data(400_000, 5);
        let mut bad = d[..150_000].to_vec();
        bad[1234] ^= 0xff;
        make_partial_on(&rig, "y.bin", crc32fast::hash(&d), &bad);
        let spool = Spool::new();
        let s = start(rig.endpoint(), &spool, 1, None, Policy::Safe);
        s.up.submit(spool.job("y.bin", &d)).unwrap();
        s.up.wait("y.bin", WAIT).expect("y");
        assert_eq!(rig.server_file("y.bin").unwrap(), d);
        assert_eq!(s.up.bytes_sent(), 400_000, "damaged prefix restarted at once");
        s.up.shutdown();
    }
}

/// The same damaged partial where no prefix check can tell (XCRC and HASH
/// refused): the resume onto it does not verify, the spooled copy is
/// intact, so the next attempt starts from zero, instead of resuming onto
/// the same bytes forever.
#[test]
fn damaged_partial_without_a_prefix_check_is_replaced_after_one_try() {
    use keyfs::faultproxy::{FaultProxy, Faults};
    let srv = InProc::start();
    let d = data(400_000, 5);
    let mut bad = d[..150_000].to_vec();
    bad[1234] ^= 0xff;
    make_partial(&srv.ep(), "z.bin", crc32fast::hash(&d), &bad);
    let px = FaultProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        format!("127.0.0.1:{}", srv.port).parse().unwrap(),
        Faults {
            refuse: vec!["XCRC".into(), "HASH".into()],
            ..Faults::default()
        },
    )
    .expect("proxy");
    let spool = Spool::new();
    let s = start(ep(px.addr().port()), &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("z.bin", &d)).unwrap();
    s.up.wait("z.bin", WAIT).expect("z");
    assert_eq!(srv.read("z.bin"), d);
    assert_eq!(
        s.up.bytes_sent(),
        250_000 + 400_000,
        "the rest once, then the whole file"
    );
    s.up.shutdown();
}

#[test]
fn replace_while_uploading_uploads_the_new_file() {
    let srv = InProc::start();
    let spool = Spool::new();
    let s = start(srv.ep(), &spool, 2, Some(600_000), Policy::Safe);
    let old = data(2_000_000, 6);
    s.up.submit(spool.job("v.bin", &old)).unwrap();
    assert!(sent_more_than(&s.up, 200_000));
    let new = data(250_000, 7);
    s.up.submit(spool.job("v.bin", &new)).unwrap();
    s.up.wait("v.bin", WAIT).expect("uploaded");
    assert_eq!(srv.read("v.bin"), new);
    s.up.shutdown();
}

/// keyftpd as a separate process, so it can be killed with SIGKILL.
struct Proc {
    child: Child,
    port: u16,
}

fn spawn_keyftpd(root: &Path, port: u16) -> Option<Proc> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyftpd"))
        .arg("--root")
        .arg(root)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--user")
        .arg(USER)
        .env("KEYFTPD_PASSWORD", PASS)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = child.stdout.take()?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).ok()?;
    match line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
    {
        Some(port) => Some(Proc { child, port }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn server_killed_mid_upload_resumes() {
    let root = tempfile::tempdir().unwrap();
    let srv = spawn_keyftpd(root.path(), 0).expect("keyftpd");
    let port = srv.port;
    let d = data(3_000_000, 8);
    let spool = Spool::new();
    let s = start(ep(port), &spool, 1, Some(1_500_000), Policy::Safe);
    s.up.submit(spool.job("big.bin", &d)).unwrap();
    assert!(sent_more_than(&s.up, 1_000_000));
    drop(srv); // SIGKILL
    std::thread::sleep(Duration::from_millis(300));
    let mut again = None;
    for _ in 0..50 {
        again = spawn_keyftpd(root.path(), port);
        if again.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _srv = again.expect("keyftpd restarted on the same port");
    s.up.wait("big.bin", WAIT)
        .expect("uploaded after the restart");
    assert_eq!(std::fs::read(root.path().join("big.bin")).unwrap(), d);
    let sent = s.up.bytes_sent();
    // The partial the server kept is resumed, not re-sent (bytes in flight
    // when it died are the only overhead).
    assert!(sent < 3_000_000 + 600_000, "sent {sent}");
    eprintln!("server kill -9 at ~1 MB of 3 MB: {sent} bytes sent in total");
    s.up.shutdown();
}

#[test]
fn rename_while_uploading_moves_the_upload() {
    let srv = InProc::start();
    let spool = Spool::new();
    let s = start(srv.ep(), &spool, 1, Some(800_000), Policy::Safe);
    let d = data(1_500_000, 40);
    s.up.submit(spool.job("before.bin", &d)).unwrap();
    assert!(sent_more_than(&s.up, 200_000));
    s.up.rename("before.bin", "after.bin");
    s.up.wait("after.bin", WAIT)
        .expect("uploaded under the new name");
    s.up.wait("before.bin", WAIT)
        .expect("nothing pending there");
    assert_eq!(srv.read("after.bin"), d);
    assert!(
        eventually(PATIENCE, || !srv.root.path().join("before.bin").exists()),
        "the partial under the old name is removed"
    );
    s.up.shutdown();
}

#[test]
fn bwlimit_caps_the_rate() {
    let srv = InProc::start();
    let spool = Spool::new();
    // Two workers share one 400 kB/s cap.
    let s = start(srv.ep(), &spool, 2, Some(400_000), Policy::Safe);
    let t = std::time::Instant::now();
    s.up.submit(spool.job("a.bin", &data(400_000, 41))).unwrap();
    s.up.submit(spool.job("b.bin", &data(400_000, 42))).unwrap();
    s.up.wait("a.bin", WAIT).unwrap();
    s.up.wait("b.bin", WAIT).unwrap();
    let el = t.elapsed().as_secs_f64();
    eprintln!("800 kB at a 400 kB/s cap took {el:.2} s");
    // 800 kB minus the 100 kB burst at 400 kB/s: at least 1.75 s.
    assert!(el >= 1.6, "{el}");
    // Only catches "no cap at all" (well under a second); CI may be slow.
    assert!(el < 15.0, "{el}");
    // Under a cap the bytes go through the paced buffer, never by sendfile.
    assert_eq!(s.up.bytes_sent(), 800_000);
    assert_eq!(s.up.sendfile_bytes(), 0);
    s.up.shutdown();
}

/// A rename in the moment between the uploader dropping a verified job's
/// record and the fs hearing of it (`on_complete`) must not move the job:
/// writing its record back under the new name would upload it again at the
/// next start, with its spooled data already gone ("spool data missing").
#[test]
fn rename_while_completing_writes_no_record_back() {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    let srv = InProc::start();
    let spool = Spool::new();
    let (entered_tx, entered_rx) = mpsc::channel::<String>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let release_rx = Mutex::new(release_rx);
    let on_complete = move |r: &keyfs::spool::journal::JobRecord| {
        let _ = entered_tx.lock().unwrap().send(r.remote_path.clone());
        // Hold the uploader inside on_complete until the test has renamed.
        let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
        None
    };
    let cfg = keyfs::upload::UploadConfig {
        endpoint: srv.ep(),
        workers: 1,
        bwlimit: None,
        policy: Policy::Safe,
        on_complete: Some(Arc::new(on_complete)),
    };
    let up =
        keyfs::upload::Uploader::start_tuned(cfg, spool.journal.clone(), support::jobs::tuning())
            .expect("start");
    let d = data(200_000, 50);
    up.submit(spool.job("a.bin", &d)).unwrap();
    let done = entered_rx.recv_timeout(WAIT).expect("on_complete called");
    assert_eq!(done, "a.bin");

    // In the gap: the fs has not seen the upload finish yet.
    assert!(
        up.wait("a.bin", Duration::from_millis(300)).is_err(),
        "wait returns only after on_complete"
    );
    let moved = up.rename("a.bin", "b.bin");
    assert!(moved.is_empty(), "a done job is not renamed: {moved:?}");
    up.cancel("a.bin");
    let left = spool.journal.load_all().unwrap();
    assert!(left.is_empty(), "no record written back: {left:?}");
    assert!(up.status().is_empty(), "nothing pending: {:?}", up.status());

    release_tx.send(()).unwrap();
    up.wait("a.bin", WAIT).expect("done");
    up.wait("b.bin", WAIT)
        .expect("nothing pending under the new name");
    up.shutdown();
    assert_eq!(srv.read("a.bin"), d);

    // A new uploader on the same journal uploads nothing again.
    let s = start(srv.ep(), &spool, 1, None, Policy::Safe);
    assert!(s.up.status().is_empty(), "{:?}", s.up.status());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.up.bytes_sent(), 0);
    assert!(s.done.lock().unwrap().is_empty());
    assert!(!srv.root.path().join("b.bin").exists());
    s.up.shutdown();
}

/// Uploads `bytes` as `path` with curl, a plain client that sends no KEY.
fn curl_put(ep: &Endpoint, path: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("part");
    std::fs::write(&local, bytes).unwrap();
    let url = format!("ftp://127.0.0.1:{}/{path}", ep.port);
    let st = Command::new("curl")
        .args([
            "-sS",
            "--user",
            &format!("{}:{}", ep.user, ep.password),
            "-T",
        ])
        .arg(&local)
        .arg(&url)
        .status()
        .expect("run curl");
    assert!(st.success(), "curl -T {url}");
}

#[test]
fn keyless_partial_from_a_plain_client_resumes_when_its_crc_matches() {
    let srv = InProc::start();
    let d = data(500_000, 8);
    // curl puts the first 123,456 bytes (no KEY: complete, keyless on the server).
    curl_put(&srv.ep(), "c.bin", &d[..123_456]);
    // Another file's bytes under the same name: replaced, never extended.
    let other = data(300_000, 9);
    curl_put(&srv.ep(), "o.bin", &other[..100_000]);
    let spool = Spool::new();
    let s = start(srv.ep(), &spool, 1, None, Policy::Safe);
    s.up.submit(spool.job("c.bin", &d)).unwrap();
    s.up.wait("c.bin", WAIT).expect("uploaded");
    assert_eq!(srv.read("c.bin"), d);
    assert_eq!(
        s.up.bytes_sent(),
        500_000 - 123_456,
        "resumed after the prefix checked by XCRC"
    );
    s.up.submit(spool.job("o.bin", &d)).unwrap();
    s.up.wait("o.bin", WAIT).expect("uploaded");
    assert_eq!(srv.read("o.bin"), d);
    assert_eq!(
        s.up.bytes_sent(),
        500_000 - 123_456 + 500_000,
        "another file's bytes: restarted from zero"
    );
    s.up.shutdown();
}
