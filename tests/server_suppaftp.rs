//! keyftpd through a real FTP client library (suppaftp): ordinary commands,
//! and the whole KEY flow with custom commands. suppaftp maps codes it does
//! not know to `Status::Unknown`, so replies are read from the body.

mod support;

use std::io::{Cursor, Write};

use keyfs::key;
use suppaftp::types::FtpError;
use suppaftp::{FtpStream, Status};
use support::keyftpd::{key_of, pattern, server};

fn body(r: &suppaftp::types::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Sends a command and returns the reply text, whatever its code.
fn raw(ftp: &mut FtpStream, cmd: &str) -> String {
    match ftp.custom_command(cmd, &[]) {
        Ok(r) => body(&r),
        Err(FtpError::UnexpectedResponse(r)) => body(&r),
        Err(e) => panic!("{cmd}: {e}"),
    }
}

#[test]
fn ordinary_client_operations() {
    let (_d, srv) = server(&[]);
    let mut ftp = srv.suppaftp();
    let feat = ftp.feat().expect("FEAT");
    assert!(
        feat.contains_key("KEY") && feat.contains_key("XCRC"),
        "{feat:?}"
    );
    ftp.mkdir("dir").expect("MKD");
    ftp.cwd("dir").expect("CWD");
    assert_eq!(ftp.pwd().expect("PWD"), "/dir");
    let data = pattern(1 << 20, 1);
    ftp.put_file("f.bin", &mut Cursor::new(&data))
        .expect("STOR");
    assert_eq!(ftp.size("f.bin").expect("SIZE"), data.len());
    assert_eq!(
        ftp.retr_as_buffer("f.bin").expect("RETR").into_inner(),
        data
    );
    ftp.append_file("f.bin", &mut Cursor::new(b"tail"))
        .expect("APPE");
    assert_eq!(ftp.size("f.bin").expect("SIZE"), data.len() + 4);
    let mlsd = ftp.mlsd(None).expect("MLSD");
    assert!(mlsd.iter().any(|l| l.ends_with(" f.bin")), "{mlsd:?}");
    let list = ftp.list(None).expect("LIST");
    assert!(list.iter().any(|l| l.ends_with(" f.bin")), "{list:?}");
    assert_eq!(ftp.nlst(None).expect("NLST"), vec!["f.bin".to_string()]);
    ftp.mdtm("f.bin").expect("MDTM");
    ftp.rename("f.bin", "g.bin").expect("rename");
    ftp.cdup().expect("CDUP");
    ftp.resume_transfer(10).expect("REST");
    let tail = ftp
        .retr_as_buffer("dir/g.bin")
        .expect("RETR at offset")
        .into_inner();
    assert_eq!(tail.len(), data.len() + 4 - 10);
    ftp.rm("dir/g.bin").expect("DELE");
    ftp.rmdir("dir").expect("RMD");
    assert!(ftp.size("dir/g.bin").is_err());
    ftp.quit().expect("QUIT");
}

#[test]
fn patent_flow_through_suppaftp() {
    let (_d, srv) = server(&[]);
    let data = pattern(2 << 20, 2);
    let k = key_of(&data);
    let half = 777_777;

    // An upload that dies half way.
    let mut ftp = srv.suppaftp();
    let r = ftp
        .custom_command(format!("KEY {k}"), &[Status::LoggedIn])
        .expect("KEY");
    assert!(body(&r).starts_with("230 "));
    let mut s = ftp.put_with_stream("p.bin").expect("STOR");
    s.write_all(&data[..half]).expect("write half");
    s.finish().expect("226 even for a partial");
    drop(ftp);

    // Reconnect: KEY, STOR gets the same-name prompt.
    let mut ftp = srv.suppaftp();
    ftp.custom_command(format!("KEY {k}"), &[Status::LoggedIn])
        .expect("KEY");
    let prompt = match ftp.put_file("p.bin", &mut Cursor::new(&data)) {
        Err(FtpError::UnexpectedResponse(r)) => body(&r),
        other => panic!("expected the 350 prompt, got {other:?}"),
    };
    assert_eq!(key::parse_same_name_prompt(&prompt), Some(half as u64));
    let r = ftp
        .custom_command("KEY NULL", &[Status::LoggedIn])
        .expect("KEY NULL");
    assert_eq!(
        key::parse_key_null_reply(&body(&r)),
        Ok(Some(key::Key::of(&data)))
    );
    let r = raw(&mut ftp, &format!("XCRC p.bin 0 {half}"));
    assert_eq!(
        key::parse_xcrc_reply(&r),
        Ok(crc32fast::hash(&data[..half]))
    );
    // Same file: resume with REST + STOR.
    ftp.resume_transfer(half).expect("REST");
    ftp.put_file("p.bin", &mut Cursor::new(&data[half..]))
        .expect("resumed STOR");
    assert_eq!(
        ftp.retr_as_buffer("p.bin").expect("RETR").into_inner(),
        data
    );
    let mlst = ftp.mlst(Some("p.bin")).expect("MLST");
    assert!(mlst.contains("x.keystate=complete;"), "{mlst}");
    let r = raw(&mut ftp, "XCRC p.bin");
    assert_eq!(key::parse_xcrc_reply(&r), Ok(crc32fast::hash(&data)));

    // A keyless client's clean upload counts as complete, but has no key: a
    // KEY client is prompted for it (it may be a cut upload of its file),
    // KEY NULL answers 0x00, and a plain STOR then overwrites it.
    let mut s = ftp.put_with_stream("q.bin").expect("STOR");
    s.write_all(&data[..1000]).expect("write");
    s.finish().expect("finish");
    assert!(raw(&mut ftp, "MLST q.bin").contains("x.keystate=complete;"));
    let other = pattern(5000, 3);
    let ko = key_of(&other);
    ftp.custom_command(format!("KEY {ko}"), &[Status::LoggedIn])
        .expect("KEY");
    let r = raw(&mut ftp, "STOR q.bin");
    assert!(r.starts_with("350 ") && r.contains("size 1000"), "{r}");
    assert!(raw(&mut ftp, "KEY NULL").starts_with("230 0x00"));
    ftp.put_file("q.bin", &mut Cursor::new(&other))
        .expect("prompted once: the next STOR proceeds");
    assert!(raw(&mut ftp, "MLST q.bin").contains("x.keystate=complete;"));

    // A different file under the same name: DELE and upload again.
    let mut s = ftp.put_with_stream("d.bin").expect("STOR");
    s.write_all(&data[..1000]).expect("write");
    drop(s);
    drop(ftp);
    let mut ftp = srv.suppaftp();
    ftp.custom_command(format!("KEY {k}"), &[Status::LoggedIn])
        .expect("KEY");
    // The keyless d.bin gets the prompt; KEY NULL says it has no key.
    let r = raw(&mut ftp, "STOR d.bin");
    assert!(r.starts_with("350 "), "{r}");
    assert_eq!(raw(&mut ftp, "KEY NULL").trim(), "230 0x00");
    let mut s = ftp.put_with_stream("d.bin").expect("STOR");
    s.write_all(&data[..1000]).expect("write");
    s.finish().expect("finish");
    ftp.custom_command(format!("KEY {ko}"), &[Status::LoggedIn])
        .expect("KEY");
    assert!(matches!(
        ftp.put_file("d.bin", &mut Cursor::new(&other)),
        Err(FtpError::UnexpectedResponse(_))
    ));
    let r = raw(&mut ftp, "KEY NULL");
    assert_eq!(r.trim(), format!("230 {k}"));
    ftp.rm("d.bin").expect("DELE");
    ftp.put_file("d.bin", &mut Cursor::new(&other))
        .expect("fresh upload");
    assert!(raw(&mut ftp, "MLST d.bin").contains("x.keystate=complete;"));

    // Resume with APPE.
    let mut ftp = srv.suppaftp();
    ftp.custom_command(format!("KEY {ko}"), &[Status::LoggedIn])
        .expect("KEY");
    let mut s = ftp.put_with_stream("r.bin").expect("STOR");
    s.write_all(&other[..100]).expect("write");
    s.finish().expect("finish");
    ftp.custom_command(format!("KEY {ko}"), &[Status::LoggedIn])
        .expect("KEY");
    assert!(matches!(
        ftp.put_file("r.bin", &mut Cursor::new(&other)),
        Err(FtpError::UnexpectedResponse(_))
    ));
    let r = ftp
        .custom_command("KEY NULL", &[Status::LoggedIn])
        .expect("KEY NULL");
    assert_eq!(body(&r).trim(), format!("230 {ko}"));
    ftp.append_file("r.bin", &mut Cursor::new(&other[100..]))
        .expect("APPE");
    assert_eq!(
        ftp.retr_as_buffer("r.bin").expect("RETR").into_inner(),
        other
    );
    assert!(raw(&mut ftp, "MLST r.bin").contains("x.keystate=complete;"));
}

#[test]
fn abort_keeps_the_control_connection_in_step() {
    let (_d, srv) = server(&[]);
    let data = pattern(4 << 20, 4);
    let mut ftp = srv.suppaftp();
    ftp.custom_command(format!("KEY {}", key_of(&data)), &[Status::LoggedIn])
        .expect("KEY");
    let mut s = ftp.put_with_stream("ab.bin").expect("STOR");
    s.write_all(&data[..1 << 20]).expect("write");
    ftp.abort(s).expect("ABOR of an upload");
    ftp.noop().expect("NOOP right after ABOR");
    assert_eq!(ftp.size("ab.bin").expect("SIZE"), 1 << 20);
    assert!(raw(&mut ftp, "MLST ab.bin").contains("x.keystate=partial;"));

    ftp.put_file("big.bin", &mut Cursor::new(&data))
        .expect("STOR");
    let mut r = ftp.retr_as_stream("big.bin").expect("RETR");
    let mut buf = [0u8; 1000];
    std::io::Read::read_exact(&mut r, &mut buf).expect("read some");
    ftp.abort(r).expect("ABOR of a download");
    ftp.noop().expect("NOOP right after ABOR");
    assert_eq!(ftp.size("big.bin").expect("SIZE"), data.len());
}
