//! keyftpd's HTTP face over TLS (`--https`) against the real binary, with
//! a rustls client that trusts the server's self-signed certificate: the
//! seed's state query, a POST cut mid-body then resumed, logins under
//! `--require-tls` (credentials refused over plain HTTP, taken over
//! HTTPS), and a handshake that never comes giving its slot back.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::http::{form, form_parts, parse_state, read_response, Client, HttpKeyftpd, Resp};
use support::keyftpd::{key_of, pattern, temp_root, PASS, USER};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A server with `--https` and `--require-tls` (plain HTTP too), and a
/// client config that trusts its certificate.
struct Rig {
    srv: HttpKeyftpd,
    https: SocketAddr,
    client: Arc<ClientConfig>,
    _certs: tempfile::TempDir,
}

fn rig(root: &Path, extra: &[&str]) -> Rig {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = keyfs::server::tls::self_signed("localhost").expect("certificate");
    let cert_file = certs.path().join("cert.pem");
    let key_file = certs.path().join("key.pem");
    std::fs::write(&cert_file, &cert).expect("write cert");
    std::fs::write(&key_file, &key).expect("write key");
    let (cf, kf) = (
        cert_file.to_str().expect("utf-8 path"),
        key_file.to_str().expect("utf-8 path"),
    );
    let mut args = vec![
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        cf,
        "--tls-key",
        kf,
        "--require-tls",
    ];
    args.extend_from_slice(extra);
    let srv = HttpKeyftpd::start(root, false, &args);
    let https = srv.https.expect("https address");
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(c.expect("cert pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Rig {
        srv,
        https,
        client: Arc::new(client),
        _certs: certs,
    }
}

impl Rig {
    /// A TLS connection to the HTTPS face, handshake done.
    fn connect(&self) -> Tls {
        let tcp =
            TcpStream::connect_timeout(&self.https, Duration::from_secs(10)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(self.client.clone(), name).expect("tls client");
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        s
    }

    /// The request heads, with the test account's credentials.
    fn heads(&self) -> Client {
        Client {
            addr: self.https,
            auth: Some((USER.into(), PASS.into())),
        }
    }

    /// One request over HTTPS with `body`; the response.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let len = body.len().to_string();
        let mut hs = headers.to_vec();
        if !body.is_empty() || method == "POST" {
            hs.push(("Content-Length", &len));
        }
        let mut s = self.connect();
        s.write_all(&self.heads().head_bytes(method, path, &hs))
            .expect("head");
        s.write_all(body).expect("body");
        s.flush().expect("flush");
        read_response(&mut s, method == "HEAD").expect("response")
    }

    fn state(&self, path: &str) -> (u64, Option<String>, bool) {
        let r = self.request("GET", &format!("{path}?state"), &[], b"");
        assert_eq!(r.status, 200, "state of {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        parse_state(&r.text())
    }
}

#[test]
fn seed_flow_over_https_state_cut_resume() {
    let (_d, root) = temp_root();
    let rig = rig(&root, &[]);
    let data = pattern(3 << 20, 11);
    let key = key_of(&data);
    assert_eq!(rig.state("/f.bin"), (0, None, false));

    // The POST is cut after part of the file: the TCP connection ends
    // without a TLS close_notify, as a dropped link does.
    let sent = 1_500_000;
    let (head, tail) = form_parts(Some(0), Some(&key));
    let total = (head.len() + data.len() + tail.len()).to_string();
    let ct = format!("multipart/form-data; boundary={}", support::http::BOUNDARY);
    let mut s = rig.connect();
    let h = rig.heads().head_bytes(
        "POST",
        "/f.bin",
        &[("Content-Type", &ct), ("Content-Length", &total)],
    );
    s.write_all(&h).expect("head");
    s.write_all(&head).expect("form head");
    s.write_all(&data[..sent]).expect("part of the file");
    s.flush().expect("flush");
    let _ = s.sock.shutdown(Shutdown::Both);
    drop(s);
    assert!(
        rig.srv.wait_log_count("http: upload /f.bin", 1),
        "the cut upload was not recorded: {}",
        rig.srv.log_text()
    );

    let (n, k, complete) = rig.state("/f.bin");
    assert_eq!(k.as_deref(), Some(key.as_str()));
    assert!(!complete, "a cut upload is not complete");
    assert!(n > 0 && n <= sent as u64, "kept {n} of {sent}");
    assert_eq!(
        std::fs::read(root.join("f.bin")).expect("partial"),
        data[..n as usize]
    );

    // The rest from the state's offset completes the file.
    let (ct, body) = form(Some(n), Some(&key), &data[n as usize..]);
    let r = rig.request("POST", "/f.bin", &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        parse_state(&r.text()),
        (data.len() as u64, Some(key.clone()), true)
    );
    assert_eq!(std::fs::read(root.join("f.bin")).expect("file"), data);
    assert_eq!(rig.state("/f.bin"), (data.len() as u64, Some(key), true));

    // A Range GET over TLS.
    let r = rig.request("GET", "/f.bin", &[("Range", "bytes=1000-1999")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[1000..2000]);
}

#[test]
fn require_tls_refuses_credentials_over_plain_http() {
    let (_d, root) = temp_root();
    let rig = rig(&root, &[]);
    std::fs::write(root.join("a.txt"), b"hello").expect("file");

    // Plain HTTP with a password: 403 with the reason, no challenge.
    let plain = rig.srv.client();
    let r = plain.get("/a.txt?state");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("HTTPS only"), "{}", r.text());
    assert_eq!(r.text().lines().count(), 1, "one line: {}", r.text());
    assert!(r.header("www-authenticate").is_none());
    // Without one: 403 too, never a 401 that would prompt for a password.
    let r = plain.anonymous().get("/a.txt");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("www-authenticate").is_none());
    let log = rig.srv.log_text();
    assert!(log.contains("credentials over plain HTTP"), "{log}");
    assert!(
        !log.contains("failed login"),
        "the password was checked: {log}"
    );

    // The same credentials over HTTPS log in; a wrong password gets the
    // login gate's 401, as over plain HTTP without --require-tls.
    assert_eq!(rig.state("/a.txt"), (5, None, true));
    let mut bad = rig.heads();
    bad.auth = Some((USER.into(), "wrong".into()));
    let mut s = rig.connect();
    s.write_all(&bad.head_bytes("GET", "/a.txt", &[]))
        .expect("head");
    let r = read_response(&mut s, false).expect("response");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
}

#[test]
fn a_handshake_that_never_comes_gives_its_slot_back() {
    let (_d, root) = temp_root();
    // One connection at a time, handshakes bounded by 1 s.
    let rig = rig(&root, &["--max-sessions", "1", "--login-timeout", "1"]);
    let mut idle = TcpStream::connect(rig.https).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    std::thread::sleep(Duration::from_millis(200));
    // A real request waits for the only slot, which the silent connection
    // must give back.
    let t0 = Instant::now();
    assert_eq!(rig.state("/none"), (0, None, false));
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(10), "served after {waited:?}");
    let mut b = [0u8; 16];
    let t0 = Instant::now();
    match idle.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a client that said nothing"),
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset,
            "the silent connection was not closed: {e} after {:?}",
            t0.elapsed()
        ),
    }
    assert!(
        rig.srv.log_text().contains("no TLS handshake within"),
        "{}",
        rig.srv.log_text()
    );
}
