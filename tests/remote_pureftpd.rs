//! `remote::Session` against a real pure-ftpd: namespace ops, listings,
//! RETR at an offset, STOR/REST, SIZE, and errno mapping.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use keyfs::remote::{Session, StoreStart};
use support::pureftpd::PureFtpd;

const T: Duration = Duration::from_secs(10);

fn upload(s: &mut Session, path: &str, offset: u64, data: &[u8]) {
    match s.store_at(path, offset, false).expect("STOR") {
        StoreStart::Started(mut up) => {
            up.write_all(data).expect("write");
            s.finish_store(up).expect("finish");
        }
        StoreStart::Prompt(_) => panic!("pure-ftpd never prompts"),
    }
}

#[test]
fn namespace_ops_and_features() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let mut s = Session::connect(&srv.endpoint(), T).expect("connect");
    let f = s.features();
    assert!(!f.key && !f.xcrc && !f.hash_crc32);
    assert!(f.mlsd);

    s.mkdir("dir one").expect("mkdir");
    upload(&mut s, "dir one/a.txt", 0, b"hello\r\nworld\n");
    // Binary mode: the bytes arrive unchanged.
    assert_eq!(
        std::fs::read(srv.path("dir one/a.txt")).unwrap(),
        b"hello\r\nworld\n"
    );
    let list = s.list("dir one").expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "a.txt");
    assert_eq!(list[0].size, 13);
    assert!(!list[0].is_dir);
    let root = s.list("").expect("list root");
    assert!(root.iter().any(|e| e.name == "dir one" && e.is_dir));

    let st = s.stat("dir one/a.txt").expect("stat").expect("exists");
    assert_eq!((st.size, st.is_dir), (13, false));
    assert!(st.mtime.is_some());
    assert!(s.stat("dir one").unwrap().unwrap().is_dir);
    assert!(s.stat("nope").expect("stat").is_none());
    assert!(s.stat("").unwrap().unwrap().is_dir);
    assert_eq!(s.size("dir one/a.txt").unwrap(), Some(13));
    assert_eq!(s.size("missing").unwrap(), None);

    s.rename("dir one/a.txt", "b.txt").expect("rename");
    assert!(srv.path("b.txt").exists());
    let e = s.delete("dir one/a.txt").expect_err("gone");
    assert_eq!(e.to_errno(), libc::ENOENT);
    let e = s.rmdir("nonexistent").expect_err("no dir");
    assert_eq!(e.code(), Some(550));
    s.rmdir("dir one").expect("rmdir");
    s.delete("b.txt").expect("dele");
    assert!(s.list("").unwrap().is_empty());
    s.noop().expect("noop");
    // Paths never leave the root nor smuggle commands.
    assert_eq!(s.delete("../x").unwrap_err().to_errno(), libc::EINVAL);
    assert_eq!(
        s.delete("a\r\nDELE b").unwrap_err().to_errno(),
        libc::EINVAL
    );
}

#[test]
fn retr_at_offsets_and_rest_stor() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    srv.put_local("big.bin", &data).unwrap();
    let mut s = Session::connect(&srv.endpoint(), T).expect("connect");
    for off in [0u64, 1, 65_536, 299_999, 300_000] {
        let mut d = s.retr_at("big.bin", off).expect("retr");
        let mut got = Vec::new();
        d.read_to_end(&mut got).expect("read");
        s.finish_retr(d).expect("finish");
        assert_eq!(got, &data[off as usize..], "offset {off}");
    }
    // Stop early: drop the stream, then the session is reconnected.
    let mut d = s.retr_at("big.bin", 10).expect("retr");
    let mut buf = [0u8; 100];
    d.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &data[10..110]);
    drop(d);
    drop(s);
    let mut s = Session::connect(&srv.endpoint(), T).expect("reconnect");
    let e = s.retr_at("missing.bin", 0).err().expect("missing");
    assert_eq!(e.to_errno(), libc::ENOENT);
    // The session stays usable after a refused RETR.
    s.noop().expect("noop after failed RETR");
    assert_eq!(s.size("big.bin").unwrap(), Some(300_000));

    // REST N + STOR truncates at N and writes the rest.
    upload(&mut s, "r.bin", 0, &data[..1000]);
    upload(&mut s, "r.bin", 400, &data[400..2000]);
    assert_eq!(std::fs::read(srv.path("r.bin")).unwrap(), &data[..2000]);
    assert_eq!(s.size("r.bin").unwrap(), Some(2000));
}

#[test]
fn login_and_connect_errors() {
    let srv = PureFtpd::start().expect("pure-ftpd");
    let mut ep = srv.endpoint();
    ep.password = "wrong".into();
    let e = Session::connect(&ep, T)
        .err()
        .expect("wrong password fails");
    assert_eq!(e.code(), Some(530));
    assert!(e.is_permanent());
    assert_eq!(e.to_errno(), libc::EACCES);

    let mut ep = srv.endpoint();
    ep.root = "/no/such/dir".into();
    let e = Session::connect(&ep, T).err().expect("missing root fails");
    assert_eq!(e.code(), Some(550));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ep = srv.endpoint();
    ep.port = port;
    let e = Session::connect(&ep, T).err().expect("refused");
    assert!(matches!(e, keyfs::transport::RemoteError::Io(_)));
    assert!(!e.is_permanent());
}

/// MFMT and SITE CHMOD: pure-ftpd lists MFMT and knows SITE CHMOD; the
/// listing shows the time and the mode back; keyftpd keeps the time by
/// MFMT and answers `Unsupported` for SITE CHMOD.
#[test]
fn mfmt_and_site_chmod() {
    use keyfs::remote::attrs::Applied;
    use std::time::UNIX_EPOCH;
    let srv = PureFtpd::start().expect("pure-ftpd");
    let mut s = Session::connect(&srv.endpoint(), T).expect("connect");
    assert!(s.features().mfmt);
    upload(&mut s, "t.txt", 0, b"times");
    let t = UNIX_EPOCH + Duration::new(978_307_200, 900_000_000);
    assert_eq!(s.set_mtime("t.txt", t).unwrap(), Applied::Done);
    assert_eq!(s.chmod("t.txt", 0o600).unwrap(), Applied::Done);
    let e = s.stat("t.txt").unwrap().expect("listed");
    assert_eq!(e.mtime, Some(UNIX_EPOCH + Duration::from_secs(978_307_200)));
    assert_eq!(e.mode, Some(0o600));
    let md = std::fs::metadata(srv.path("t.txt")).unwrap();
    assert_eq!(
        md.modified().unwrap(),
        UNIX_EPOCH + Duration::from_secs(978_307_200)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    // A missing file is an error, not "unsupported".
    assert!(s.chmod("none.txt", 0o600).is_err());
    assert!(s.set_mtime("none.txt", t).is_err());

    let k = support::jobs::InProcKeyftpd::start();
    std::fs::write(k.root.path().join("k.txt"), b"k").unwrap();
    let mut s = Session::connect(&k.endpoint(), T).expect("connect keyftpd");
    // keyftpd offers MFMT but not SITE CHMOD.
    assert!(s.features().mfmt);
    assert_eq!(s.set_mtime("k.txt", t).unwrap(), Applied::Done);
    assert_eq!(
        std::fs::metadata(k.root.path().join("k.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        UNIX_EPOCH + Duration::from_secs(978_307_200)
    );
    assert_eq!(s.chmod("k.txt", 0o600).unwrap(), Applied::Unsupported);
    // Remembered: not asked again on this session.
    assert_eq!(s.chmod("k.txt", 0o644).unwrap(), Applied::Unsupported);
}
