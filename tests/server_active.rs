//! Active mode (PORT/EPRT) against a real keyftpd: transfers, listings and
//! resumes over a data connection the server opens, with curl and wget
//! too; and no FTP bounce: any other address is refused and never reached.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use support::keyftpd::{pattern, server, wait_log, Ctrl, PASS, USER};

fn port_arg(a: SocketAddr) -> String {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 expected: {a}")
    };
    let o = a.ip().octets();
    format!(
        "{},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        a.port() >> 8,
        a.port() & 0xff
    )
}

/// A listener for one active data connection, and the command that names it.
fn active(c: &mut Ctrl, eprt: bool) -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    let cmd = if eprt {
        format!("EPRT |1|127.0.0.1|{}|", a.port())
    } else {
        format!("PORT {}", port_arg(a))
    };
    let (code, text) = c.cmd(&cmd);
    assert_eq!(code, 200, "{cmd}: {text}");
    l
}

/// The server's connection: it connects before its 150, so it is queued.
fn accepted(l: &TcpListener) -> TcpStream {
    let (s, from) = l.accept().expect("accept");
    assert_eq!(from.ip().to_string(), "127.0.0.1");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

fn upload(c: &mut Ctrl, eprt: bool, cmd: &str, data: &[u8]) {
    let l = active(c, eprt);
    let (code, text) = c.cmd(cmd);
    assert_eq!(code, 150, "{cmd}: {text}");
    let mut d = accepted(&l);
    d.write_all(data).expect("send");
    drop(d);
    assert_eq!(c.read_reply().0, 226);
}

fn download(c: &mut Ctrl, eprt: bool, cmd: &str) -> Vec<u8> {
    let l = active(c, eprt);
    let (code, text) = c.cmd(cmd);
    assert_eq!(code, 150, "{cmd}: {text}");
    let mut d = accepted(&l);
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("read");
    assert_eq!(c.read_reply().0, 226);
    got
}

#[test]
fn port_and_eprt_carry_uploads_resumes_downloads_and_listings() {
    let (_d, srv) = server(&[]);
    let data = pattern(300_000, 3);
    let mut c = srv.login();
    upload(&mut c, false, "STOR a.bin", &data[..100_000]);
    assert_eq!(c.cmd("REST 100000").0, 350);
    upload(&mut c, true, "STOR a.bin", &data[100_000..]);
    assert!(std::fs::read(srv.root.join("a.bin")).ok() == Some(data.clone()));
    assert!(download(&mut c, true, "RETR a.bin") == data);
    assert_eq!(c.cmd("REST 250000").0, 350);
    assert!(download(&mut c, false, "RETR a.bin") == data[250_000..]);
    let list = String::from_utf8(download(&mut c, false, "LIST")).expect("utf8");
    assert!(list.contains("a.bin"), "{list}");
    let mlsd = String::from_utf8(download(&mut c, true, "MLSD")).expect("utf8");
    assert!(mlsd.contains("size=300000;"), "{mlsd}");
    // PASV after PORT replaces it, and the other way round.
    let _l = active(&mut c, false);
    let mut d = c.data();
    assert_eq!(c.cmd("RETR a.bin").0, 150);
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("read");
    assert_eq!((got.len(), c.read_reply().0), (300_000, 226));
}

#[test]
fn port_to_another_address_is_refused_and_never_reached() {
    let (_d, srv) = server(&[]);
    let Ok(other) = TcpListener::bind("127.0.0.2:0") else {
        eprintln!("cannot bind 127.0.0.2; skipping");
        return;
    };
    other.set_nonblocking(true).expect("nonblocking");
    let o = other.local_addr().expect("addr");
    std::fs::write(srv.root.join("f"), b"secret").expect("write");
    let mut c = srv.login();
    let (code, text) = c.cmd(&format!("PORT {}", port_arg(o)));
    assert_eq!(code, 504, "{text}");
    assert_eq!(c.cmd("RETR f").0, 425);
    assert_eq!(c.cmd(&format!("EPRT |1|127.0.0.2|{}|", o.port())).0, 504);
    assert_eq!(c.cmd("LIST").0, 425);
    assert_eq!(c.cmd(&format!("EPRT |2|::1|{}|", o.port())).0, 504);
    // Privileged ports of the client's own host are refused too.
    assert_eq!(c.cmd("PORT 127,0,0,1,0,25").0, 504);
    assert_eq!(c.cmd("EPRT |3|x|1|").0, 522);
    assert_eq!(c.cmd("PORT 1,2,3").0, 501);
    assert_eq!(c.cmd("EPRT 127.0.0.1 40000").0, 501);
    std::thread::sleep(Duration::from_millis(300));
    match other.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the server connected to another address: {other:?}"),
    }
    assert!(wait_log(&srv, "PORT to 127.0.0.2"));
    // After EPSV ALL, only EPSV sets up data connections (RFC 2428).
    assert_eq!(c.cmd("EPSV ALL").0, 200);
    assert_eq!(c.cmd("PORT 127,0,0,1,156,64").0, 503);
    assert_eq!(c.cmd("PASV").0, 503);
    // Not logged in: 530.
    let mut anon = Ctrl::connect(srv.addr);
    assert_eq!(anon.cmd("PORT 127,0,0,1,156,64").0, 530);
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run client");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn curl_and_wget_in_active_mode() {
    let (d, srv) = server(&[]);
    let data = pattern(200_000, 5);
    let local = d.path().join("local.bin");
    std::fs::write(&local, &data).expect("write");
    let url = |name: &str| format!("ftp://{USER}:{PASS}@{}/{name}", srv.addr);
    // curl -P: EPRT by default, PORT with --disable-eprt.
    let curl = || {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60", "-P", "127.0.0.1"]);
        c
    };
    run(curl().arg("-T").arg(&local).arg(url("up.bin")));
    assert!(std::fs::read(srv.root.join("up.bin")).ok() == Some(data.clone()));
    let out = run(curl().arg("--disable-eprt").arg(url("up.bin")));
    assert!(out.stdout == data);
    let out = run(curl().arg("--disable-eprt").arg(url("")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up.bin"));
    // wget --no-passive-ftp, and a resumed download (REST + RETR) with -c.
    let got = d.path().join("got.bin");
    std::fs::write(&got, &data[..50_000]).expect("write");
    run(Command::new("wget")
        .args(["-q", "-c", "--no-passive-ftp", "-T", "30", "-t", "1", "-O"])
        .arg(&got)
        .arg(url("up.bin")));
    assert!(std::fs::read(&got).ok() == Some(data));
    let log = srv.log_text();
    assert!(log.contains("EPRT") && log.contains("PORT"), "{log}");
    assert!(log.contains("REST 50000"), "wget -c did not resume: {log}");
}

#[test]
fn a_same_name_prompt_keeps_the_port_address_until_the_stor_proceeds() {
    let (_d, srv) = server(&[]);
    let data = pattern(200_000, 9);
    let key = support::keyftpd::key_of(&data);
    let mut c = srv.login();
    assert_eq!(c.cmd(&format!("KEY {key}")).0, 230);
    upload(&mut c, false, "STOR p.bin", &data[..80_000]);
    assert_eq!(c.cmd(&format!("KEY {key}")).0, 230);
    let l = active(&mut c, true);
    l.set_nonblocking(true).expect("nonblocking");
    let (code, text) = c.cmd("STOR p.bin");
    assert_eq!(code, 350, "{text}");
    match l.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("connected before the STOR proceeded: {other:?}"),
    }
    assert_eq!(c.cmd("KEY NULL").1.trim(), format!("230 {key}"));
    assert_eq!(c.cmd("REST 80000").0, 350);
    assert_eq!(c.cmd("STOR p.bin").0, 150);
    l.set_nonblocking(false).expect("blocking");
    let mut d = accepted(&l);
    d.write_all(&data[80_000..]).expect("send");
    drop(d);
    let (code, text) = c.read_reply();
    assert_eq!(code, 226, "{text}");
    assert!(text.contains("complete"), "{text}");
    assert!(std::fs::read(srv.root.join("p.bin")).ok() == Some(data));
}
