//! keyftpd's FTPS at the protocol level, with a rustls client: AUTH TLS,
//! PBSZ, PROT, CCC, FEAT, and the binding of data connections to their
//! control connection's TLS session (a data connection that resumes no
//! session, or another connection's session, is refused with 522 and gets
//! no byte of the file), under TLS 1.3 and TLS 1.2.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::keyftpd::{server, Ctrl, PASS, USER};

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn gen_cert(dir: &std::path::Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_keyftpd"))
        .args(["gen-cert", "--host", "localhost", "--out-cert"])
        .arg(&cert)
        .arg("--out-key")
        .arg(&key)
        .output()
        .expect("run gen-cert");
    assert!(st.status.success(), "{st:?}");
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

fn client_config(cert: &str, tls12: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(c.expect("cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider);
    let b = if tls12 {
        b.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        b.with_protocol_versions(&[&rustls::version::TLS13])
    }
    .expect("versions");
    Arc::new(b.with_root_certificates(roots).with_no_client_auth())
}

fn wrap(cfg: &Arc<ClientConfig>, tcp: TcpStream) -> Tls {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(cfg.clone(), name).expect("client conn");
    StreamOwned::new(conn, tcp)
}

/// A control connection after AUTH TLS.
struct TlsCtrl {
    r: BufReader<Tls>,
}

impl TlsCtrl {
    fn open(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> TlsCtrl {
        let mut c = Ctrl::connect(addr);
        let (code, text) = c.cmd("AUTH TLS");
        assert_eq!(code, 234, "{text}");
        let tcp = c.w.try_clone().expect("clone");
        drop(c);
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        TlsCtrl {
            r: BufReader::new(wrap(cfg, tcp)),
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.r
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        self.reply()
    }

    fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).expect("read reply");
            assert!(!l.is_empty(), "control closed after {all:?}");
            all.push_str(&l);
            let b = l.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
                return (l[..3].parse().unwrap_or(0), all);
            }
        }
    }

    fn login(&mut self) {
        assert_eq!(self.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(self.cmd(&format!("PASS {PASS}")).0, 230);
        assert_eq!(self.cmd("PBSZ 0").0, 200);
        assert_eq!(self.cmd("PROT P").0, 200);
        assert_eq!(self.cmd("TYPE I").0, 200);
    }

    fn epsv(&mut self, addr: SocketAddr) -> SocketAddr {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .expect("EPSV port");
        SocketAddr::new(addr.ip(), port)
    }
}

/// RETR over a data connection whose TLS uses `data_cfg`: the bytes read
/// and the final reply code.
fn retr_with(c: &mut TlsCtrl, addr: SocketAddr, data_cfg: &Arc<ClientConfig>) -> (Vec<u8>, u16) {
    let to = c.epsv(addr);
    let tcp = TcpStream::connect(to).expect("data connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (code, text) = c.cmd("RETR f.bin");
    assert_eq!(code, 150, "{text}");
    let mut data = wrap(data_cfg, tcp);
    let mut got = Vec::new();
    let _ = data.read_to_end(&mut got);
    drop(data);
    (got, c.reply().0)
}

fn binding(tls12: bool) {
    let (dir, srv) = server(&[]);
    let (cert, key) = gen_cert(dir.path());
    drop(srv);
    let srv = support::keyftpd::Keyftpd::start(
        &dir.path().join("root"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(srv.root.join("f.bin"), &body).expect("write file");

    let cfg = client_config(&cert, tls12);
    let mut c = TlsCtrl::open(srv.addr, &cfg);
    c.login();
    // The control connection's own session: the file.
    let (got, code) = retr_with(&mut c, srv.addr, &cfg);
    assert_eq!(code, 226);
    assert!(got == body, "{} bytes of {}", got.len(), body.len());
    // Again: a session resumes any number of times.
    let (got, code) = retr_with(&mut c, srv.addr, &cfg);
    assert_eq!((got.len(), code), (body.len(), 226));

    // No session at all: refused, nothing sent.
    let fresh = client_config(&cert, tls12);
    let (got, code) = retr_with(&mut c, srv.addr, &fresh);
    assert_eq!(code, 522);
    assert!(got.is_empty(), "{} bytes leaked", got.len());

    // Another connection's session (a stranger did AUTH TLS, no login): refused.
    let thief_cfg = client_config(&cert, tls12);
    let mut thief = TlsCtrl::open(srv.addr, &thief_cfg);
    assert_eq!(thief.cmd("NOOP").0, 200);
    let (got, code) = retr_with(&mut c, srv.addr, &thief_cfg);
    assert_eq!(code, 522);
    assert!(got.is_empty(), "{} bytes leaked", got.len());

    // The session still works afterwards.
    let (got, code) = retr_with(&mut c, srv.addr, &cfg);
    assert_eq!((got.len(), code), (body.len(), 226));
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    assert_eq!(
        log.matches("refused a TLS data connection").count(),
        2,
        "{log}"
    );
}

#[test]
fn data_connections_must_resume_their_own_session_tls13() {
    binding(false);
}

#[test]
fn data_connections_must_resume_their_own_session_tls12() {
    binding(true);
}

#[test]
fn auth_pbsz_prot_ccc_and_feat() {
    let (dir, srv) = server(&[]);
    let mut plain = Ctrl::connect(srv.addr);
    // No certificate: FEAT says nothing of TLS, AUTH is not implemented.
    assert!(!plain.cmd("FEAT").1.contains("AUTH TLS"));
    assert_eq!(plain.cmd("AUTH TLS").0, 502);
    drop(plain);
    drop(srv);
    let (cert, key) = gen_cert(dir.path());
    let srv = support::keyftpd::Keyftpd::start(
        &dir.path().join("root"),
        &["--tls-cert", &cert, "--tls-key", &key, "--require-tls"],
    );
    let mut plain = Ctrl::connect(srv.addr);
    let (code, feat) = plain.cmd("FEAT");
    assert_eq!(code, 211);
    for f in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(feat.contains(f), "{f:?} missing in {feat}");
    }
    assert_eq!(plain.cmd("PBSZ 0").0, 503);
    assert_eq!(plain.cmd("PROT P").0, 503);
    assert_eq!(plain.cmd("AUTH KERBEROS").0, 504);
    assert_eq!(plain.cmd(&format!("USER {USER}")).0, 530);
    drop(plain);

    let cfg = client_config(&cert, false);
    let mut c = TlsCtrl::open(srv.addr, &cfg);
    assert_eq!(c.cmd("PROT P").0, 503, "PROT P before PBSZ");
    c.login();
    assert_eq!(c.cmd("AUTH TLS").0, 503);
    assert_eq!(c.cmd("CCC").0, 534);
    assert_eq!(c.cmd("PROT S").0, 536);
    // --require-tls: a transfer under PROT C is refused.
    assert_eq!(c.cmd("PROT C").0, 200);
    let _to = c.epsv(srv.addr);
    assert_eq!(c.cmd("LIST").0, 521);
    assert_eq!(c.cmd("PROT P").0, 200);
    assert_eq!(c.cmd("QUIT").0, 221);

    // AUTH SSL is an alias.
    let mut plain = Ctrl::connect(srv.addr);
    assert_eq!(plain.cmd("AUTH SSL").0, 234);
}

#[test]
fn tls_logins_are_capped_per_address() {
    let (dir, srv) = server(&[]);
    let (cert, key) = gen_cert(dir.path());
    drop(srv);
    let srv = support::keyftpd::Keyftpd::start(
        &dir.path().join("root"),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--max-pending-per-ip",
            "2",
        ],
    );
    // Two connections wait in their handshakes; a third AUTH TLS from the
    // same address is refused, and taken again once one of them is gone.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Ctrl::connect(srv.addr);
        assert_eq!(c.cmd("AUTH TLS").0, 234);
        held.push(c);
    }
    let mut c = Ctrl::connect(srv.addr);
    assert_eq!(c.cmd("AUTH TLS").0, 421);
    drop(held.pop());
    let cfg = client_config(&cert, false);
    let mut ok = None;
    for _ in 0..50 {
        let mut c = Ctrl::connect(srv.addr);
        let (code, _) = c.cmd("AUTH TLS");
        if code == 234 {
            ok = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = ok.expect("AUTH TLS taken again after a slot freed");
    let tcp = c.w.try_clone().expect("clone");
    drop(c);
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut t = TlsCtrl {
        r: BufReader::new(wrap(&cfg, tcp)),
    };
    assert_eq!(t.cmd("NOOP").0, 200);
}

/// ALPN: a client offering only HTTP (a browser sent to the FTPS port) fails
/// the handshake rather than having its request read as FTP commands; one
/// offering "ftp", or none, gets in.
#[test]
fn a_client_offering_only_http_alpn_is_refused() {
    let (dir, _) = server(&[]);
    let (cert, key) = gen_cert(dir.path());
    let srv = support::keyftpd::Keyftpd::start(
        &dir.path().join("root"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let with_alpn = |alpn: &[&[u8]]| {
        let mut cfg = (*client_config(&cert, false)).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    };
    let handshake = |cfg: &Arc<ClientConfig>| {
        let mut c = Ctrl::connect(srv.addr);
        assert_eq!(c.cmd("AUTH TLS").0, 234);
        let tcp = c.w.try_clone().expect("clone");
        drop(c);
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut tls = wrap(cfg, tcp);
        tls.conn.complete_io(&mut tls.sock).map(|_| ())
    };
    let refused = handshake(&with_alpn(&[b"http/1.1", b"h2"]));
    assert!(refused.is_err(), "an HTTP-only client got a TLS session");
    handshake(&with_alpn(&[b"ftp"])).expect("ALPN ftp");
    let mut c = TlsCtrl::open(srv.addr, &with_alpn(&[]));
    c.login();
    assert_eq!(c.cmd("QUIT").0, 221);
}
