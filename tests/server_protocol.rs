//! RFC 959/3659 commands, XCRC and authentication against a real keyftpd,
//! in raw protocol bytes.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyfs::key;
use support::keyftpd::{pattern, server, temp_root, Ctrl, Keyftpd, PASS, USER};

#[test]
fn feat_and_session_commands() {
    let (_d, srv) = server(&[]);
    let mut c = Ctrl::connect(srv.addr);
    let (code, text) = c.cmd("FEAT");
    assert_eq!(code, 211);
    let feats = key::parse_feat(&text);
    for f in [
        "KEY", "XCRC", "MLST", "REST", "SIZE", "MDTM", "EPSV", "UTF8",
    ] {
        assert!(feats.iter().any(|x| x == f), "{f} missing in {text}");
    }
    assert!(text.contains(" REST STREAM\r\n"), "{text}");
    assert_eq!(c.cmd("SYST").0, 215);
    assert_eq!(c.cmd("OPTS UTF8 ON").0, 200);
    drop(c);
    let mut c = srv.login();
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(c.cmd("TYPE I").0, 200);
    assert_eq!(c.cmd("TYPE A").0, 200);
    assert_eq!(c.cmd("TYPE X").0, 504);
    assert_eq!(c.cmd("MODE S").0, 200);
    assert_eq!(c.cmd("MODE B").0, 504);
    assert_eq!(c.cmd("STRU F").0, 200);
    assert_eq!(c.cmd("PORT 127,0,0,1,4,1").0, 200);
    assert_eq!(c.cmd("PORT 10,0,0,1,4,1").0, 504);
    assert_eq!(c.cmd("BOGUS").0, 502);
    let (code, text) = c.cmd("PWD");
    assert_eq!(
        (code, text.trim()),
        (257, "257 \"/\" is the current directory")
    );
    assert_eq!(c.cmd("QUIT").0, 221);
}

#[test]
fn commands_before_login_get_530() {
    let (_d, srv) = server(&[]);
    let mut c = Ctrl::connect(srv.addr);
    for cmd in [
        "PWD", "CWD /", "LIST", "MLSD", "EPSV", "PASV", "STOR x", "RETR x", "KEY 0x1", "KEY NULL",
        "XCRC x", "DELE x", "MKD d", "SIZE x",
    ] {
        assert_eq!(c.cmd(cmd).0, 530, "{cmd}");
    }
    assert_eq!(c.cmd("PASS x").0, 503);
    assert!(!srv.root.join("d").exists());
}

#[test]
fn wrong_password_is_delayed_then_530() {
    // A delay long enough that a right password (not delayed) stays well
    // below it even on a loaded machine.
    let (_d, root) = temp_root();
    let srv = Keyftpd::start_raw(&root, &["--user", USER, "--auth-delay-ms", "1000"]);
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    let t = Instant::now();
    assert_eq!(c.cmd("PASS nope").0, 530);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(c.cmd("LIST").0, 530);
    assert_eq!(c.cmd("USER nobody").0, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 530);
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    let t = Instant::now();
    assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn three_wrong_passwords_close_the_connection() {
    let (_d, srv) = server(&[]);
    let mut c = Ctrl::connect(srv.addr);
    for _ in 0..2 {
        assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(c.cmd("PASS guess").0, 530);
    }
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(c.cmd("PASS guess").0, 421);
    assert!(c.try_read_reply().is_err(), "closed");
    // Others can still log in.
    let mut c = srv.login();
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn users_file_with_hash_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyftpd"))
        .args(["hash-password", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"alice-secret\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(line.starts_with("alice:$6$"), "{line}");
    assert!(!line.contains("alice-secret"));
    let users = dir.path().join("users");
    std::fs::write(&users, format!("# accounts\n{line}\n")).expect("write users");
    let srv = Keyftpd::start_raw(
        &root,
        &[
            "--users",
            users.to_str().expect("utf8"),
            "--auth-delay-ms",
            "50",
        ],
    );
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("USER alice").0, 331);
    let t = Instant::now();
    assert_eq!(c.cmd("PASS alice-secret").0, 230);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("USER alice").0, 331);
    assert_eq!(c.cmd("PASS wrong").0, 530);
    assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 530);
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS a@b").0, 530);
}

#[test]
fn directories_files_and_renames() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    assert_eq!(c.cmd("MKD d").0, 257);
    assert_eq!(c.cmd("MKD d").0, 550);
    assert_eq!(c.cmd("CWD d").0, 250);
    assert_eq!(c.cmd("PWD").1.trim(), "257 \"/d\" is the current directory");
    let data = pattern(70_000, 1);
    assert_eq!(c.upload("STOR x.bin", &data).0, 226);
    assert_eq!(c.cmd("SIZE x.bin").1.trim(), "213 70000");
    let (code, text) = c.cmd("MDTM /d/x.bin");
    assert_eq!(code, 213);
    assert_eq!(text.trim().len(), 4 + 14, "{text}");
    assert_eq!(c.cmd("SIZE .").0, 550);
    assert_eq!(c.cmd("SIZE missing").0, 550);
    let (got, code) = c.download("x.bin");
    assert_eq!((got.len(), code), (data.len(), 226));
    assert_eq!(got, data);
    assert_eq!(c.cmd("REST 69990").0, 350);
    let (got, code) = c.download("x.bin");
    assert_eq!((&got[..], code), (&data[69_990..], 226));
    assert_eq!(c.cmd("CDUP").0, 250);
    assert_eq!(c.cmd("PWD").1.trim(), "257 \"/\" is the current directory");
    assert_eq!(c.cmd("RNTO y").0, 503);
    assert_eq!(c.cmd("RNFR d/x.bin").0, 350);
    assert_eq!(c.cmd("RNTO d/y.bin").0, 250);
    assert!(srv.root.join("d/y.bin").is_file());
    assert_eq!(c.cmd("RNFR nothing").0, 550);
    assert_eq!(c.cmd("RMD d").0, 550);
    assert_eq!(c.cmd("DELE d").0, 550);
    assert_eq!(c.cmd("DELE d/y.bin").0, 250);
    assert_eq!(c.cmd("DELE d/y.bin").0, 550);
    assert_eq!(c.cmd("RMD d").0, 250);
    assert_eq!(c.cmd("CWD d").0, 550);
    assert_eq!(c.cmd("RETR d").0, 550);
    // APPE creates and appends.
    assert_eq!(c.upload("APPE ap", b"abc").0, 226);
    assert_eq!(c.upload("APPE ap", b"def").0, 226);
    assert_eq!(
        std::fs::read(srv.root.join("ap")).ok(),
        Some(b"abcdef".to_vec())
    );
    // A transfer without PASV/EPSV.
    assert_eq!(c.cmd("STOR z").0, 425);
    // PASV works too.
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    assert!(text.contains("(127,0,0,1,"), "{text}");
    assert_eq!(c.cmd("ABOR").0, 226);
}

#[test]
fn listings() {
    let (_d, srv) = server(&[]);
    let mut c = srv.login();
    assert_eq!(c.cmd("MKD sub dir").0, 257);
    assert_eq!(c.upload("STOR a file.txt", b"hello").0, 226);
    let m = c.listing("MLSD");
    assert!(
        m.iter()
            .any(|l| l.starts_with("type=file;size=5;modify=") && l.ends_with(" a file.txt")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|l| l.starts_with("type=dir;") && l.ends_with(" sub dir")),
        "{m:?}"
    );
    let l = c.listing("LIST -la");
    assert!(
        l.iter()
            .any(|x| x.starts_with("-rw") && x.ends_with(" a file.txt")),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x.starts_with('d') && x.ends_with(" sub dir")),
        "{l:?}"
    );
    let mut n = c.listing("NLST");
    n.sort();
    assert_eq!(n, vec!["a file.txt".to_string(), "sub dir".to_string()]);
    assert_eq!(c.listing("MLSD sub dir"), Vec::<String>::new());
    let (code, text) = c.cmd("MLST a file.txt");
    assert_eq!(code, 250);
    assert!(text.contains("type=file;size=5;"), "{text}");
    let _d = c.data();
    assert_eq!(c.cmd("MLSD a file.txt").0, 501);
    assert_eq!(c.cmd("MLSD nothing").0, 550);
}

#[test]
fn xcrc_whole_ranges_and_errors() {
    let (_d, srv) = server(&[]);
    let data = pattern(100_000, 7);
    let mut c = srv.login();
    assert_eq!(c.upload("STOR x y.bin", &data).0, 226);
    assert_eq!(c.cmd("MKD dir").0, 257);
    let crc = |c: &mut Ctrl, cmd: &str| {
        let (code, text) = c.cmd(cmd);
        assert_eq!(code, 250, "{cmd}: {text}");
        assert_eq!(text.trim().len(), 12, "8 hex digits: {text}");
        key::parse_xcrc_reply(&text).expect("xcrc reply")
    };
    assert_eq!(crc(&mut c, "XCRC x y.bin"), crc32fast::hash(&data));
    assert_eq!(crc(&mut c, "XCRC x y.bin 0 100000"), crc32fast::hash(&data));
    assert_eq!(
        crc(&mut c, "XCRC x y.bin 10 20"),
        crc32fast::hash(&data[10..20])
    );
    assert_eq!(
        crc(&mut c, "XCRC x y.bin 0 99999"),
        crc32fast::hash(&data[..99_999])
    );
    assert_eq!(crc(&mut c, "XCRC x y.bin 5 5"), 0);
    // The cached whole-file CRC is not trusted after a change.
    std::fs::write(srv.root.join("x y.bin"), b"changed").expect("write");
    assert_eq!(crc(&mut c, "XCRC /x y.bin"), crc32fast::hash(b"changed"));
    std::fs::write(srv.root.join("x y.bin"), &data).expect("write");
    assert_eq!(c.cmd("XCRC x y.bin 20 10").0, 501);
    assert_eq!(c.cmd("XCRC x y.bin 0 100001").0, 501);
    assert_eq!(c.cmd("XCRC x y.bin 100001 100002").0, 501);
    assert_eq!(c.cmd("XCRC").0, 501);
    assert_eq!(c.cmd("XCRC missing").0, 550);
    assert_eq!(c.cmd("XCRC missing 0 1").0, 550);
    assert_eq!(c.cmd("XCRC dir").0, 550);
}

#[test]
fn anonymous_only_with_the_flag_and_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("pub.txt"), b"public").expect("write");
    let srv = Keyftpd::start(&root, &["--anonymous"]);
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("USER anonymous").0, 331);
    assert_eq!(c.cmd("PASS guest@").0, 230);
    let (got, code) = c.download("pub.txt");
    assert_eq!((got, code), (b"public".to_vec(), 226));
    for cmd in [
        "STOR x",
        "APPE x",
        "DELE pub.txt",
        "MKD d",
        "RMD d",
        "RNFR pub.txt",
    ] {
        assert_eq!(c.cmd(cmd).0, 550, "{cmd}");
    }
    assert!(!root.join("x").exists() && root.join("pub.txt").exists());
    // The named account still has write access.
    let mut c = srv.login();
    assert_eq!(c.upload("STOR x", b"y").0, 226);
}

#[test]
fn one_writer_per_file() {
    let (_d, srv) = server(&[]);
    let mut a = srv.login();
    let mut d = a.data();
    assert_eq!(a.cmd("STOR busy.bin").0, 150);
    d.write_all(b"first half ").expect("send");
    let mut b = srv.login();
    let _bd = b.data();
    assert_eq!(b.cmd("STOR busy.bin").0, 450);
    assert_eq!(b.cmd("APPE busy.bin").0, 450);
    assert_eq!(b.cmd("DELE busy.bin").0, 450);
    assert_eq!(b.cmd("RNFR busy.bin").0, 450);
    d.write_all(b"second half").expect("send");
    drop(d);
    assert_eq!(a.read_reply().0, 226);
    assert_eq!(b.upload("APPE busy.bin", b"!").0, 226);
    assert_eq!(
        std::fs::read(srv.root.join("busy.bin")).ok(),
        Some(b"first half second half!".to_vec())
    );
}

#[test]
fn passive_ports_stay_in_the_given_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    // Find a free block of ports to use as the range.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = probe.local_addr().expect("addr").port().clamp(20000, 60000);
    drop(probe);
    let range = format!("{}-{}", base, base + 20);
    let srv = Keyftpd::start(&root, &["--passive-ports", &range]);
    let mut c = srv.login();
    for _ in 0..3 {
        let port = c.epsv_port();
        assert!((base..=base + 20).contains(&port), "{port} not in {range}");
    }
    assert_eq!(c.upload("STOR r", b"ranged").0, 226);
}

/// The busy mark of an upload is gone by the time its 226 is sent: another
/// session writing the same file right after the reply is not refused.
#[test]
fn a_file_is_free_once_its_upload_is_answered() {
    let (_d, srv) = server(&[]);
    let mut a = srv.login();
    let mut b = srv.login();
    for i in 0..100 {
        assert_eq!(a.upload("STOR f.bin", b"x").0, 226, "round {i}");
        let d = b.data();
        let (code, text) = b.cmd("APPE f.bin");
        assert_eq!(code, 150, "round {i}: {text}");
        drop(d);
        assert_eq!(b.read_reply().0, 226, "round {i}");
    }
}

/// RNTO onto a file with an upload in progress is refused (450): the upload,
/// even a stopped one, would otherwise end after the rename and record its
/// key over the renamed file's. Once the upload is answered, RNTO works.
/// A source that became busy between RNFR and RNTO is refused as well.
#[test]
fn rnto_onto_a_busy_target_is_refused() {
    let (_d, srv) = server(&[]);
    let mut b = srv.login();
    assert_eq!(b.upload("STOR x.bin", b"the x file").0, 226);

    let mut a = srv.login();
    let mut d = a.data();
    assert_eq!(a.cmd("STOR busy.bin").0, 150);
    d.write_all(b"slow ").expect("send");

    assert_eq!(b.cmd("RNFR x.bin").0, 350);
    let (code, text) = b.cmd("RNTO busy.bin");
    assert_eq!(code, 450, "{text}");
    assert_eq!(
        std::fs::read(srv.root.join("x.bin")).ok(),
        Some(b"the x file".to_vec()),
        "the source is untouched"
    );
    // The refused RNTO used up the RNFR.
    assert_eq!(b.cmd("RNTO busy.bin").0, 503);

    d.write_all(b"upload").expect("send");
    drop(d);
    assert_eq!(a.read_reply().0, 226);
    assert_eq!(
        std::fs::read(srv.root.join("busy.bin")).ok(),
        Some(b"slow upload".to_vec())
    );

    assert_eq!(b.cmd("RNFR x.bin").0, 350);
    let (code, text) = b.cmd("RNTO busy.bin");
    assert_eq!(code, 250, "{text}");
    assert_eq!(
        std::fs::read(srv.root.join("busy.bin")).ok(),
        Some(b"the x file".to_vec())
    );
    assert!(!srv.root.join("x.bin").exists());

    // The source becomes busy after RNFR.
    assert_eq!(b.cmd("RNFR busy.bin").0, 350);
    let mut d = a.data();
    assert_eq!(a.cmd("APPE busy.bin").0, 150);
    let (code, text) = b.cmd("RNTO y.bin");
    assert_eq!(code, 450, "{text}");
    d.write_all(b"!").expect("send");
    drop(d);
    assert_eq!(a.read_reply().0, 226);
    assert!(!srv.root.join("y.bin").exists());
    assert_eq!(
        std::fs::read(srv.root.join("busy.bin")).ok(),
        Some(b"the x file!".to_vec())
    );
}
