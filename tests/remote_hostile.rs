//! A hostile or broken FTP server must never panic or hang the client: each
//! test runs a tiny scripted server on 127.0.0.1:0 that logs the client in
//! normally and then answers one command badly.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyfs::remote::{Session, StoreStart};
use keyfs::transport::{Endpoint, RemoteError};

/// What the script answers to one command line: raw bytes to send (CRLFs
/// included), or None to close the connection. It gets the PASV listener
/// and the control connection for commands that use a data connection.
type Script = fn(&str, &TcpListener, &mut TcpStream) -> Option<Vec<u8>>;

/// Serves one client: greeting, login, TYPE, CWD and FEAT (`feat` lines),
/// everything else from `script`. Ends when the client goes away.
fn serve(feat: &'static [&'static str], script: Script) -> (Endpoint, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let Ok((c, _)) = l.accept() else { return };
        let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
        // The data listener for PASV.
        let data = TcpListener::bind("127.0.0.1:0").expect("bind data");
        let mut w = c.try_clone().expect("clone");
        let mut r = BufReader::new(c);
        let _ = w.write_all(b"220 hostile ready\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let cmd = line.trim_end().to_string();
            let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let out: Option<Vec<u8>> = match verb.as_str() {
                "USER" => Some(b"331 pass\r\n".to_vec()),
                "PASS" => Some(b"230 in\r\n".to_vec()),
                "TYPE" | "QUIT" => Some(b"200 ok\r\n".to_vec()),
                "CWD" => Some(b"250 ok\r\n".to_vec()),
                "FEAT" => {
                    let mut s = String::from("211-Features:\r\n");
                    for f in feat {
                        s.push_str(&format!(" {f}\r\n"));
                    }
                    s.push_str("211 End\r\n");
                    Some(s.into_bytes())
                }
                "PASV" => {
                    let p = data.local_addr().expect("addr").port();
                    Some(
                        format!(
                            "227 Entering Passive Mode (127,0,0,1,{},{})\r\n",
                            p >> 8,
                            p & 0xff
                        )
                        .into_bytes(),
                    )
                }
                _ => script(&cmd, &data, &mut w),
            };
            match out {
                Some(b) => {
                    if w.write_all(&b).is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    let ep = Endpoint {
        scheme: Default::default(),
        host: "127.0.0.1".into(),
        port,
        user: "u".into(),
        password: "p".into(),
        root: "/".into(),
        tls: Default::default(),
    };
    (ep, t)
}

fn connect(ep: &Endpoint) -> Session {
    Session::connect(ep, Duration::from_secs(5)).expect("login to the scripted server")
}

#[test]
fn hash_reply_with_huge_range_end_is_an_error_not_a_panic() {
    let (ep, t) = serve(&["HASH CRC32"], |cmd, _, _| {
        Some(match cmd.split(' ').next() {
            Some("OPTS") => b"200 ok\r\n".to_vec(),
            Some("RANG") => b"350 ok\r\n".to_vec(),
            Some("HASH") => b"213 CRC32 0-18446744073709551615 0000ABCD\r\n".to_vec(),
            _ => b"502 no\r\n".to_vec(),
        })
    });
    let mut s = connect(&ep);
    assert!(s.features().hash_crc32);
    let r = s.hash_crc32("f", Some(10));
    assert!(matches!(r, Err(RemoteError::Protocol(_))), "{r:?}");
    drop(s);
    let _ = t.join();
}

#[test]
fn huge_reply_without_crlf_fails_fast() {
    let (ep, t) = serve(&[], |_, _, _| {
        let mut b = b"200 ".to_vec();
        b.extend(std::iter::repeat_n(b'x', 4 << 20));
        Some(b)
    });
    let mut s = connect(&ep);
    let t0 = Instant::now();
    let r = s.noop();
    assert!(r.is_err(), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    drop(s);
    let _ = t.join();
}

#[test]
fn endless_multiline_reply_fails_fast() {
    let (ep, t) = serve(&[], |_, _, _| {
        let mut b = Vec::new();
        for _ in 0..200_000 {
            b.extend_from_slice(b"200-still going\r\n");
        }
        Some(b)
    });
    let mut s = connect(&ep);
    let r = s.noop();
    assert!(r.is_err(), "{r:?}");
    drop(s);
    let _ = t.join();
}

#[test]
fn garbage_reply_codes_are_errors() {
    let (ep, t) = serve(&[], |cmd, _, _| {
        Some(match cmd {
            "NOOP" => b"2x0 what\r\n".to_vec(),
            _ => b"9\r\n".to_vec(),
        })
    });
    let mut s = connect(&ep);
    assert!(s.noop().is_err());
    assert!(s.raw("SITE X").is_err());
    drop(s);
    let _ = t.join();
}

#[test]
fn same_name_prompt_without_a_number_asks_size() {
    let (ep, t) = serve(&["KEY"], |cmd, _, _| {
        Some(match cmd.split(' ').next() {
            Some("STOR") => b"350 partial here, go on\r\n".to_vec(),
            Some("SIZE") => b"213 1234\r\n".to_vec(),
            _ => b"502 no\r\n".to_vec(),
        })
    });
    let mut s = connect(&ep);
    match s.store_at("p.bin", 0, false) {
        Ok(StoreStart::Prompt(n)) => assert_eq!(n, 1234),
        Ok(StoreStart::Started(_)) => panic!("expected a prompt"),
        Err(e) => panic!("expected a prompt, got {e}"),
    }
    drop(s);
    let _ = t.join();
}

#[test]
fn key_null_with_garbage_is_a_protocol_error() {
    let (ep, t) = serve(&["KEY"], |cmd, _, _| {
        Some(match cmd {
            "KEY NULL" => b"230 0xZZZZ\r\n".to_vec(),
            _ => b"250 zzzz\r\n".to_vec(),
        })
    });
    let mut s = connect(&ep);
    assert!(matches!(s.key_null(), Err(RemoteError::Protocol(_))));
    drop(s);
    let _ = t.join();
}

#[test]
fn server_closing_mid_session_is_an_io_error() {
    let (ep, t) = serve(&[], |_, _, _| None);
    let mut s = connect(&ep);
    let e = s.noop().expect_err("closed");
    assert!(!e.is_permanent(), "{e}");
    drop(s);
    let _ = t.join();
}

#[test]
fn endless_listing_is_cut_at_the_cap() {
    let (ep, t) = serve(&["MLST type*;size*;"], |cmd, data, ctrl| {
        if !cmd.starts_with("MLSD") {
            return Some(b"502 no\r\n".to_vec());
        }
        ctrl.write_all(b"150 here it comes\r\n").ok()?;
        let (mut d, _) = data.accept().ok()?;
        let line = format!("type=file;size=1; {}\r\n", "f".repeat(1000));
        // Until the client stops reading (well past the cap).
        while d.write_all(line.as_bytes()).is_ok() {}
        Some(b"426 data connection closed\r\n".to_vec())
    });
    let mut s = connect(&ep);
    let e = s.list("").expect_err("listing over the cap");
    assert!(
        matches!(&e, RemoteError::Protocol(m) if m.contains("larger than")),
        "{e}"
    );
    // The control connection is still in step: the next reply is NOOP's.
    assert_eq!(s.raw("NOOP").map(|r| r.code).ok(), Some(502));
    drop(s);
    let _ = t.join();
}
