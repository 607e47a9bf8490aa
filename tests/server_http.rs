//! keyftpd's HTTP face over raw HTTP against the real binary: the seed's
//! flow (state, a cut POST, resume), the 409 rule, uploads that move
//! between the FTP and HTTP faces, and bad input.

mod support;

use std::io::Write;
use std::net::Shutdown;

use support::http::{form, parse_state, HttpKeyftpd};
use support::keyftpd::{key_of, pattern, temp_root, Ctrl, PASS, USER};

/// Sends a seed POST of `data[offset..]` whose body is cut (FIN) after
/// `send` file bytes, and waits until the server has recorded the upload.
fn cut_post(
    srv: &HttpKeyftpd,
    path: &str,
    offset: u64,
    key: &str,
    rest: &[u8],
    send: usize,
    ended: usize,
) {
    let s = srv.client().post_partial(path, offset, key, rest, send);
    let _ = s.shutdown(Shutdown::Write);
    assert!(
        srv.wait_log_count("http: upload ", ended),
        "upload not recorded: {}",
        srv.log_text()
    );
}

#[test]
fn seed_flow_state_cut_resume_complete() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &[]);
    let c = srv.client();
    let data = pattern(3 << 20, 7);
    let key = key_of(&data);

    assert_eq!(c.state("/f.bin"), (0, None, false));
    let sent = 1_234_567;
    cut_post(&srv, "/f.bin", 0, &key, &data, sent, 1);

    let (n, k, complete) = c.state("/f.bin");
    assert_eq!(k.as_deref(), Some(key.as_str()));
    assert!(!complete);
    // Every byte the parser handed over is kept: all but at most the
    // delimiter's length it may hold back.
    assert!(
        n <= sent as u64 && n + 128 >= sent as u64,
        "kept {n} of {sent}"
    );
    let on_disk = std::fs::read(root.join("f.bin")).expect("partial");
    assert_eq!(on_disk, data[..n as usize]);

    let r = c.post_file("/f.bin", n, Some(&key), &data[n as usize..]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        parse_state(&r.text()),
        (data.len() as u64, Some(key.clone()), true)
    );
    assert_eq!(std::fs::read(root.join("f.bin")).expect("file"), data);
    assert_eq!(c.state("/f.bin"), (data.len() as u64, Some(key), true));
}

#[test]
fn different_key_is_409_then_offset_zero_replaces() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &[]);
    let c = srv.client();
    let old = pattern(100_000, 1);
    let new = pattern(150_000, 2);
    cut_post(&srv, "/g", 0, &key_of(&old), &old, 60_000, 1);
    let (n, _, _) = c.state("/g");
    assert!(n > 0);

    // Another file's key at the stored size: 409 with the state, nothing written.
    let r = c.post_file("/g", n, Some(&key_of(&new)), &new[n as usize..]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(parse_state(&r.text()), (n, Some(key_of(&old)), false));
    // The right key at a wrong offset: 409 too.
    let r = c.post_file("/g", n + 1, Some(&key_of(&old)), &old[n as usize + 1..]);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = c.post_file("/g", n - 1, Some(&key_of(&old)), &old[n as usize - 1..]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(std::fs::read(root.join("g")).expect("g"), old[..n as usize]);

    let r = c.post_file("/g", 0, Some(&key_of(&new)), &new);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        parse_state(&r.text()),
        (new.len() as u64, Some(key_of(&new)), true)
    );
    assert_eq!(std::fs::read(root.join("g")).expect("g"), new);
}

#[test]
fn plain_form_without_offset_or_key_is_a_whole_upload() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &[]);
    let c = srv.client();
    let data = pattern(70_000, 3);
    let (ct, body) = form(None, None, &data);
    let r = c.request("POST", "/plain", &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(parse_state(&r.text()), (data.len() as u64, None, true));
    assert_eq!(std::fs::read(root.join("plain")).expect("plain"), data);
}

/// A form whose one part is `file` with this Content-Disposition tail.
fn file_form(disposition: &str, data: &[u8]) -> (String, Vec<u8>) {
    let b = support::http::BOUNDARY;
    let mut body =
        format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"{disposition}\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// A plain HTML form posted to a directory (`<form action="/dir/">` with
/// a file input): the file part's filename names the file there.
#[test]
fn plain_form_posted_to_a_directory_names_the_file() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, false, &[]);
    let c = srv.client();
    assert_eq!(c.request("MKCOL", "/dir", &[], b"").status, 201);
    let data = pattern(50_000, 4);
    let post = |path: &str, disposition: &str| {
        let (ct, body) = file_form(disposition, &data);
        c.request("POST", path, &[("Content-Type", &ct)], &body)
    };
    for (url, name) in [("/dir/", "a.txt"), ("/dir", "b.txt"), ("/", "c.txt")] {
        let r = post(url, &format!("; filename=\"{name}\""));
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert_eq!(parse_state(&r.text()), (data.len() as u64, None, true));
        let at = root.join(url.trim_start_matches('/')).join(name);
        assert_eq!(std::fs::read(at).expect("stored"), data, "{url}");
    }
    // No filename: no name to store under; a name that is a path: refused.
    let r = post("/dir/", "");
    assert_eq!(r.status, 409, "{}", r.text());
    for bad in ["../x", "..", "a/b", ""] {
        let r = post("/dir/", &format!("; filename=\"{bad}\""));
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
    }
    assert!(!root.join("x").exists());
    let mut names: Vec<_> = std::fs::read_dir(root.join("dir"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"]);
}

/// An FTP STOR with KEY whose data connection closes early.
fn ftp_cut_stor(ctrl: &mut Ctrl, name: &str, key: &str, part: &[u8]) {
    assert_eq!(ctrl.cmd(&format!("KEY {key}")).0, 230);
    let mut d = ctrl.data();
    assert_eq!(ctrl.cmd(&format!("STOR {name}")).0, 150);
    d.write_all(part).expect("data");
    drop(d);
    let (code, text) = ctrl.read_reply();
    assert_eq!(code, 226, "{text}");
}

#[test]
fn started_over_ftp_finished_over_http() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, true, &[]);
    let c = srv.client();
    let data = pattern(500_000, 4);
    let key = key_of(&data);
    let mut ctrl = Ctrl::connect(srv.ftp.expect("ftp"));
    assert_eq!(ctrl.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(ctrl.cmd(&format!("PASS {PASS}")).0, 230);
    ftp_cut_stor(&mut ctrl, "x.bin", &key, &data[..200_000]);

    assert_eq!(c.state("/x.bin"), (200_000, Some(key.clone()), false));
    let r = c.post_file("/x.bin", 200_000, Some(&key), &data[200_000..]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(parse_state(&r.text()), (data.len() as u64, Some(key), true));
    assert_eq!(std::fs::read(root.join("x.bin")).expect("file"), data);
    // The FTP face sees the completed upload.
    let (code, text) = ctrl.cmd("MLST x.bin");
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("x.keystate=complete;"), "{text}");
}

#[test]
fn started_over_http_finished_over_ftp() {
    let (_d, root) = temp_root();
    let srv = HttpKeyftpd::start(&root, true, &[]);
    let data = pattern(800_000, 5);
    let key = key_of(&data);
    cut_post(&srv, "/y.bin", 0, &key, &data, 300_000, 1);
    let (n, _, _) = srv.client().state("/y.bin");
    assert!(n > 0);

    let mut ctrl = Ctrl::connect(srv.ftp.expect("ftp"));
    assert_eq!(ctrl.cmd(&format!("USER {USER}")).0, 331);
    assert_eq!(ctrl.cmd(&format!("PASS {PASS}")).0, 230);
    assert_eq!(ctrl.cmd(&format!("KEY {key}")).0, 230);
    let (code, text) = ctrl.cmd("STOR y.bin");
    assert_eq!(code, 350, "same-name prompt expected: {text}");
    assert!(text.contains(&n.to_string()), "{text}");
    let (code, stored) = ctrl.cmd("KEY NULL");
    assert_eq!(code, 230);
    assert!(stored.contains(&key), "{stored}");
    assert_eq!(ctrl.cmd(&format!("REST {n}")).0, 350);
    let mut d = ctrl.data();
    assert_eq!(ctrl.cmd("STOR y.bin").0, 150);
    d.write_all(&data[n as usize..]).expect("data");
    drop(d);
    let (code, text) = ctrl.read_reply();
    assert_eq!(code, 226, "{text}");
    assert_eq!(std::fs::read(root.join("y.bin")).expect("file"), data);
    assert_eq!(
        srv.client().state("/y.bin"),
        (data.len() as u64, Some(key), true)
    );
}
