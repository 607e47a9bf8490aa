//! Several keyftpd processes on one root (the metadata lives on the files,
//! the upload lock is the kernel's), and the takeover of a stalled upload
//! by the same account with the same key.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::keyftpd::{
    key_of, pattern, prompt_size, reset_on_close, temp_root, Ctrl, Keyftpd, PASS,
};

/// Waits (bounded) until `path` is `len` bytes long.
fn wait_len(path: &std::path::Path, len: u64) {
    let t = Instant::now();
    while std::fs::metadata(path).map(|m| m.len()).ok() != Some(len) {
        assert!(t.elapsed() < Duration::from_secs(30), "never reached {len}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resumes `name` through `c` after a same-name prompt: KEY, STOR (350),
/// KEY NULL, REST, STOR and the rest of `data`. Returns the final reply.
fn resume(c: &mut Ctrl, name: &str, data: &[u8]) -> (u16, String) {
    assert_eq!(c.cmd(&format!("KEY {}", key_of(data))).0, 230);
    let (code, text) = c.cmd(&format!("STOR {name}"));
    assert_eq!(code, 350, "{text}");
    let n = prompt_size(&text);
    let (code, text) = c.cmd("KEY NULL");
    assert_eq!((code, text.contains(&key_of(data))), (230, true), "{text}");
    let mut d = c.data();
    assert_eq!(c.cmd(&format!("REST {n}")).0, 350);
    let (code, text) = c.cmd(&format!("STOR {name}"));
    assert_eq!(code, 150, "{text}");
    d.write_all(&data[n as usize..]).expect("send rest");
    drop(d);
    c.read_reply()
}

/// An upload cut on the first server is resumed through the second.
#[test]
fn cut_on_one_server_resumed_on_another() {
    let (_d, root) = temp_root();
    let a = Keyftpd::start(&root, &[]);
    let b = Keyftpd::start(&root, &[]);
    let data = pattern(1 << 20, 21);
    let mut c = a.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR big.bin").0, 150);
    d.write_all(&data[..400_000]).expect("send");
    wait_len(&root.join("big.bin"), 400_000);
    reset_on_close(&d);
    drop(d);
    assert_eq!(c.read_reply().0, 426);

    let mut c2 = b.login();
    let (code, text) = resume(&mut c2, "big.bin", &data);
    assert_eq!(code, 226, "{text}");
    assert!(text.contains("key matches"), "{text}");
    assert_eq!(std::fs::read(root.join("big.bin")).ok(), Some(data));
    let (_, text) = c.cmd("MLST big.bin");
    assert!(text.contains("x.keystate=complete;"), "{text}");
}

/// The first server is killed with SIGKILL mid-upload; the client finishes
/// through the second, byte-identical.
#[test]
fn first_killed_mid_upload_second_finishes() {
    let (_d, root) = temp_root();
    let mut a = Keyftpd::start(&root, &[]);
    let b = Keyftpd::start(&root, &[]);
    let data = pattern(1 << 20, 22);
    let mut c = a.login();
    assert_eq!(c.cmd(&format!("KEY {}", key_of(&data))).0, 230);
    let mut d = c.data();
    assert_eq!(c.cmd("STOR k.bin").0, 150);
    d.write_all(&data[..300_000]).expect("send");
    wait_len(&root.join("k.bin"), 300_000);
    a.kill();
    drop(d);
    drop(c);

    let mut c2 = b.login();
    let (code, text) = resume(&mut c2, "k.bin", &data);
    assert_eq!(code, 226, "{text}");
    assert!(text.contains("key matches"), "{text}");
    assert_eq!(std::fs::read(root.join("k.bin")).ok(), Some(data));
}

/// The same name uploaded through both servers at once: one gets 150 and
/// completes, the other 450, and the file is exactly the winner's.
#[test]
fn same_name_through_both_servers_one_wins() {
    let (_d, root) = temp_root();
    let servers = [Keyftpd::start(&root, &[]), Keyftpd::start(&root, &[])];
    let blobs = [pattern(600_000, 23), pattern(600_000, 24)];
    let (tx_done, rx_done) = mpsc::channel::<usize>();
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel::<()>();
        txs.push(tx);
        rxs.push(Some(rx));
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let mut threads = Vec::new();
    for i in 0..2 {
        let addr = servers[i].addr;
        let blob = blobs[i].clone();
        let barrier = barrier.clone();
        let tx_done = tx_done.clone();
        let other = txs[1 - i].clone();
        let rx = rxs[i].take().expect("rx");
        threads.push(std::thread::spawn(move || {
            let mut c = Ctrl::connect(addr);
            assert_eq!(c.cmd("USER u").0, 331);
            assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
            let mut d: TcpStream = c.data();
            barrier.wait();
            let (code, _) = c.cmd("STOR same.bin");
            if code != 150 {
                let _ = other.send(());
                let _ = tx_done.send(i);
                return (code, 0);
            }
            d.write_all(&blob[..300_000]).expect("send");
            // Hold the file until the other has its answer (bounded).
            let _ = rx.recv_timeout(Duration::from_secs(15));
            d.write_all(&blob[300_000..]).expect("send");
            drop(d);
            let (code, _) = c.read_reply();
            let _ = other.send(());
            (150, code)
        }));
    }
    drop(tx_done);
    let results: Vec<(u16, u16)> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let winners: Vec<usize> = (0..2).filter(|&i| results[i].0 == 150).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let w = winners[0];
    assert_eq!(results[w].1, 226, "{results:?}");
    assert_eq!(results[1 - w].0, 450, "{results:?}");
    assert_eq!(rx_done.recv().ok(), Some(1 - w));
    assert_eq!(
        std::fs::read(root.join("same.bin")).ok().as_deref(),
        Some(&blobs[w][..])
    );
}

/// A users file with accounts `a` and `b`, both with password [`PASS`].
fn two_accounts(dir: &std::path::Path) -> std::path::PathBuf {
    let h = keyfs::server::hash_password(PASS).expect("hash");
    let p = dir.join("users");
    std::fs::write(&p, format!("a:{h}\nb:{h}\n")).expect("write users");
    p
}

fn login_as(srv: &Keyftpd, user: &str) -> Ctrl {
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd(&format!("USER {user}")).0, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
    c
}

/// A stalled upload (its data connection silent) is taken over at once by
/// the same account sending the same key; another account, another key,
/// or no key gets 450.
#[test]
fn stalled_upload_taken_over_by_same_account_and_key() {
    let (d, root) = temp_root();
    let users = two_accounts(d.path());
    let users = users.to_str().expect("utf-8 path");
    let srv = Keyftpd::start_raw(&root, &["--users", users, "--auth-delay-ms", "0"]);
    let data = pattern(800_000, 25);
    let key = key_of(&data);
    let mut c1 = login_as(&srv, "a");
    assert_eq!(c1.cmd(&format!("KEY {key}")).0, 230);
    let mut d1 = c1.data();
    assert_eq!(c1.cmd("STOR t.bin").0, 150);
    d1.write_all(&data[..200_000]).expect("send");
    wait_len(&root.join("t.bin"), 200_000);

    // Another account with the same key, the same account with another
    // key, and the same account without a key: busy.
    let mut other = login_as(&srv, "b");
    let mut wrong = login_as(&srv, "a");
    let mut keyless = login_as(&srv, "a");
    for (c, k) in [(&mut other, key.clone()), (&mut wrong, "0x12345678".into())] {
        assert_eq!(c.cmd(&format!("KEY {k}")).0, 230);
        assert_eq!(c.cmd("STOR t.bin").0, 350);
        let _d = c.data();
        assert_eq!(c.cmd("REST 200000").0, 350);
        assert_eq!(c.cmd("STOR t.bin").0, 450);
    }
    let _d = keyless.data();
    assert_eq!(keyless.cmd("STOR t.bin").0, 450);

    // The same account and key takes over at once once the old upload
    // has been silent for a second, not after the 60 s data timeout (the
    // old upload says it was taken over, not stalled).
    std::thread::sleep(Duration::from_millis(1300));
    let mut c2 = login_as(&srv, "a");
    let t0 = Instant::now();
    let (code, text) = resume(&mut c2, "t.bin", &data);
    assert_eq!(code, 226, "{text}");
    assert!(t0.elapsed() < Duration::from_secs(30), "takeover waited");
    let (code, text) = c1.read_reply();
    assert_eq!(code, 426, "{text}");
    assert!(text.contains("took over"), "{text}");
    drop(d1);
    assert_eq!(std::fs::read(root.join("t.bin")).ok(), Some(data));
    let (_, text) = c2.cmd("MLST t.bin");
    assert!(text.contains("x.keystate=complete;"), "{text}");
}

/// A CRC recorded by one process is trusted by another only after it read
/// the file once (XCRC): until then MLST there shows the state, no `x.key`.
#[test]
fn other_process_trusts_a_record_after_reading_once() {
    let (_d, root) = temp_root();
    let a = Keyftpd::start(&root, &[]);
    let b = Keyftpd::start(&root, &[]);
    let data = pattern(200_000, 26);
    let key = key_of(&data);
    let mut ca = a.login();
    assert_eq!(ca.cmd(&format!("KEY {key}")).0, 230);
    assert_eq!(ca.upload("STOR s.bin", &data).0, 226);
    let (_, text) = ca.cmd("MLST s.bin");
    assert!(text.contains(&format!("x.key={key};")), "{text}");
    let mut cb = b.login();
    let (_, text) = cb.cmd("MLST s.bin");
    assert!(text.contains("x.keystate=complete;"), "{text}");
    assert!(!text.contains("x.key="), "{text}");
    let (code, text) = cb.cmd("XCRC s.bin");
    assert_eq!(code, 250, "{text}");
    assert!(text.contains(&key[2..]), "{text}");
    let (_, text) = cb.cmd("MLST s.bin");
    assert!(text.contains(&format!("x.key={key};")), "{text}");
}
