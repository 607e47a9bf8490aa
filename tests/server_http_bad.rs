//! keyftpd's HTTP face against bad input: every refusal is a 4xx with a
//! one-line reason, and nothing already stored changes.

mod support;

use std::io::Write;

use support::http::{form, form_parts, HttpKeyftpd, Resp, BOUNDARY};
use support::keyftpd::{key_of, pattern, temp_root};

fn one_line_4xx(r: &Resp, code: u16) {
    assert_eq!(r.status, code, "{}", r.text());
    let t = r.text();
    assert_eq!(t.trim_end().lines().count(), 1, "one-line reason: {t:?}");
    assert!(!t.trim().is_empty());
}

/// A server holding a complete file `/keep` and a partial `/part`.
fn with_files() -> (tempfile::TempDir, HttpKeyftpd, Vec<u8>, Vec<u8>) {
    let (d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &["--http-timeout", "1"]);
    let keep = pattern(40_000, 11);
    let part = pattern(90_000, 12);
    let c = srv.client();
    assert_eq!(
        c.post_file("/keep", 0, Some(&key_of(&keep)), &keep).status,
        200
    );
    // A partial: the first half under the whole file's key.
    let r = c.post_file("/part", 0, Some(&key_of(&part)), &part[..45_000]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.state("/part"), (45_000, Some(key_of(&part)), false));
    (d, srv, keep, part)
}

fn unchanged(srv: &HttpKeyftpd, keep: &[u8], part: &[u8]) {
    assert_eq!(std::fs::read(srv.root.join("keep")).expect("keep"), keep);
    assert_eq!(
        std::fs::read(srv.root.join("part")).expect("part"),
        &part[..45_000]
    );
    let c = srv.client();
    assert_eq!(
        c.state("/keep"),
        (keep.len() as u64, Some(key_of(keep)), true)
    );
    assert_eq!(c.state("/part"), (45_000, Some(key_of(part)), false));
}

#[test]
fn bad_paths() {
    let (_d, srv, keep, part) = with_files();
    let c = srv.client();
    let long = format!("/{}", "n".repeat(300));
    for p in [
        "/../etc/passwd",
        "/a/../../keep",
        "/%2e%2e/etc/passwd",
        "/%2E%2E/keep",
        "/x%00y",
        "/bad%zz",
        "/%ff%fe",
        "/.keyftpd/meta.log",
        long.as_str(),
    ] {
        one_line_4xx(&c.get(p), 400);
        one_line_4xx(&c.get(&format!("{p}?state")), 400);
        one_line_4xx(&c.post_file(p, 0, None, b"evil"), 400);
        one_line_4xx(&c.request("PUT", p, &[], b"evil"), 400);
        one_line_4xx(&c.request("DELETE", p, &[], b""), 400);
    }
    // A MOVE or COPY whose destination climbs out.
    let r = c.request("MOVE", "/keep", &[("Destination", "/../outside")], b"");
    one_line_4xx(&r, 400);
    let r = c.request(
        "COPY",
        "/keep",
        &[("Destination", "http://h/%2e%2e/x")],
        b"",
    );
    one_line_4xx(&r, 400);
    assert!(!srv.root.parent().expect("parent").join("outside").exists());
    unchanged(&srv, &keep, &part);
}

#[test]
fn bad_forms_offsets_and_keys() {
    let (_d, srv, keep, part) = with_files();
    let c = srv.client();
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let pk = key_of(&part);

    // Not multipart; no boundary; garbage; no file part.
    one_line_4xx(
        &c.request("POST", "/part", &[("Content-Type", "text/plain")], b"x"),
        415,
    );
    one_line_4xx(
        &c.request(
            "POST",
            "/part",
            &[("Content-Type", "multipart/form-data")],
            b"x",
        ),
        415,
    );
    one_line_4xx(
        &c.request(
            "POST",
            "/part",
            &[("Content-Type", &ct)],
            b"garbage without parts",
        ),
        400,
    );
    let no_file = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"offset\"\r\n\r\n45000\r\n--{BOUNDARY}--\r\n"
    );
    one_line_4xx(
        &c.request(
            "POST",
            "/part",
            &[("Content-Type", &ct)],
            no_file.as_bytes(),
        ),
        400,
    );
    // A field header that never ends.
    let broken = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n");
    one_line_4xx(
        &c.request("POST", "/part", &[("Content-Type", &ct)], broken.as_bytes()),
        400,
    );

    // Offsets: negative, not a number, huge, past the stored size (409).
    for bad in [
        "-1",
        "12abc",
        "99999999999999999999999999",
        "9223372036854775808",
        "",
    ] {
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"offset\"\r\n\r\n{bad}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nzz\r\n--{BOUNDARY}--\r\n"
        );
        one_line_4xx(
            &c.request("POST", "/part", &[("Content-Type", &ct)], body.as_bytes()),
            400,
        );
    }
    let r = c.post_file("/part", 90_000, Some(&pk), &part[45_000..]);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = c.post_file("/keep", 1 << 40, Some(&key_of(&keep)), b"x");
    assert_eq!(r.status, 409, "{}", r.text());
    // A resume without the key is another file's: 409.
    let r = c.post_file("/part", 45_000, None, &part[45_000..]);
    assert_eq!(r.status, 409, "{}", r.text());

    // Keys.
    for bad in ["1234", "0x", "0x123456789", "0xZZ", "NULL"] {
        let r = c.post_file("/part", 45_000, Some(bad), &part[45_000..]);
        one_line_4xx(&r, 400);
    }
    // An over-long field.
    let big = "9".repeat(5000);
    let r = c.post_file("/part", 45_000, Some(&big), b"x");
    assert_eq!(r.status / 100, 4, "{}", r.text());
    unchanged(&srv, &keep, &part);
}

#[test]
fn state_of_directories_and_missing_parents() {
    let (_d, srv, _keep, _part) = with_files();
    let c = srv.client();
    assert_eq!(c.request("MKCOL", "/dir", &[], b"").status, 201);
    one_line_4xx(&c.get("/dir?state"), 409);
    one_line_4xx(&c.get("/?state"), 409);
    one_line_4xx(&c.get("/nodir/f?state"), 404);
    one_line_4xx(&c.post_file("/nodir/f", 0, None, b"x"), 404);
    // To a directory, the file part's filename names the file there.
    assert_eq!(c.post_file("/dir", 0, None, b"x").status, 200);
    assert_eq!(c.state("/dir/f.bin"), (1, None, true));
    assert_eq!(c.state("/dir/new"), (0, None, false));
}

#[test]
fn logins() {
    let (_d, srv, keep, part) = with_files();
    let c = srv.client();
    let anon = c.anonymous();
    let r = anon.get("/keep");
    one_line_4xx(&r, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    let mut wrong = c.clone();
    wrong.auth = Some(("u".into(), "nope".into()));
    one_line_4xx(&wrong.get("/keep"), 401);
    one_line_4xx(&wrong.post_file("/keep", 0, None, b"overwrite"), 401);
    let mut nobody = c.clone();
    nobody.auth = Some(("nobody".into(), "pw".into()));
    one_line_4xx(&nobody.get("/keep?state"), 401);
    let r = anon.request("GET", "/keep", &[("Authorization", "Basic !!!")], b"");
    one_line_4xx(&r, 401);
    unchanged(&srv, &keep, &part);
}

#[test]
fn anonymous_is_read_only() {
    let (_d, root) = temp_root();
    std::fs::write(root.join("pub"), b"public").expect("write");
    let srv = HttpKeyftpd::start(&root, false, &["--anonymous"]);
    let anon = srv.client().anonymous();
    let r = anon.get("/pub");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"public"[..]));
    one_line_4xx(&anon.post_file("/pub", 0, None, b"evil"), 401);
    one_line_4xx(&anon.request("PUT", "/new", &[], b"evil"), 401);
    one_line_4xx(&anon.request("DELETE", "/pub", &[], b""), 401);
    let mut named = anon.clone();
    named.auth = Some(("anonymous".into(), "me@".into()));
    assert_eq!(named.get("/pub").status, 200);
    one_line_4xx(&named.request("PUT", "/pub", &[], b"evil"), 403);
    one_line_4xx(&named.request("MKCOL", "/d", &[], b""), 403);
    assert_eq!(std::fs::read(root.join("pub")).expect("pub"), b"public");
    assert!(!root.join("new").exists() && !root.join("d").exists());
}

#[test]
fn huge_headers_are_refused() {
    let (_d, srv, keep, part) = with_files();
    let c = srv.client();
    let big = "a".repeat(1 << 20);
    let mut s = c.connect();
    let head = c.head_bytes("GET", "/keep", &[("X-Big", &big)]);
    let _ = s.write_all(&head);
    let r = support::http::read_response(&mut s, false).expect("a response");
    assert_eq!(r.status, 431, "{}", r.text());
    unchanged(&srv, &keep, &part);
}

#[test]
fn a_body_that_never_ends_times_out_and_keeps_its_bytes() {
    let (_d, srv, keep, part) = with_files();
    let c = srv.client();
    let pk = key_of(&part);
    let (head, _tail) = form_parts(Some(45_000), Some(&pk));
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let mut s = c.connect();
    s.write_all(&c.head_bytes(
        "POST",
        "/part",
        &[("Content-Type", &ct), ("Content-Length", "10000000")],
    ))
    .expect("head");
    s.write_all(&head).expect("form head");
    s.write_all(&part[45_000..55_000]).expect("some bytes");
    // ... and then nothing: the server's body timeout (1 s here) ends it.
    let r = support::http::read_response(&mut s, false).expect("a response");
    one_line_4xx(&r, 408);
    let (n, k, complete) = c.state("/part");
    assert_eq!(k, Some(pk.clone()));
    assert!(!complete);
    assert!(
        (45_000..=55_000).contains(&n) && n + 128 >= 55_000,
        "kept {n}"
    );
    let disk = std::fs::read(srv.root.join("part")).expect("part");
    assert_eq!(disk, &part[..n as usize]);

    // A request whose headers never end times out too.
    let mut s = c.connect();
    s.write_all(b"GET /keep HTTP/1.1\r\nHost: x\r\n")
        .expect("partial head");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );

    // The upload still finishes.
    let (ct2, body) = form(Some(n), Some(&pk), &part[n as usize..]);
    let r = c.request("POST", "/part", &[("Content-Type", &ct2)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read(srv.root.join("part")).expect("part"), part);
    assert_eq!(std::fs::read(srv.root.join("keep")).expect("keep"), keep);
}

#[test]
fn http_failures_count_toward_the_ftp_login_limits() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, true, &["--ban-after", "3", "--ban-secs", "600"]);
    let mut wrong = srv.client();
    wrong.auth = Some(("u".into(), "guess".into()));
    for _ in 0..3 {
        one_line_4xx(&wrong.get("/?state"), 401);
    }
    // Banned now, on both faces, even with the right password.
    let r = srv.client().get("/");
    one_line_4xx(&r, 429);
    assert!(r.header("retry-after").is_some());
    // The FTP face turns the banned address away at once.
    let ftp = std::net::TcpStream::connect(srv.ftp.expect("ftp")).expect("connect");
    ftp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(ftp), &mut line).expect("greeting");
    assert!(
        line.starts_with("421"),
        "FTP greeting of a banned address: {line}"
    );
}
