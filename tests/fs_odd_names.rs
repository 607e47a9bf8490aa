//! Names that URLs and FTP commands treat specially (spaces, `%`, `#`,
//! `?`, `&`, `+`, `;`, quotes, `<>`, a backslash, non-ASCII) go to the
//! server exactly, over ftp:// and http:// alike: made, uploaded, renamed,
//! listed and read back by a fresh mount, and deleted.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use keyfs::fs::inode::ROOT;

#[path = "support/core_rig.rs"]
#[macro_use]
mod core_rig;
use core_rig::{data, put_in, read_path, Rig, WAIT};

const DIR: &str = "dír #%20";
const NAMES: [&str; 11] = [
    "a b.txt",
    "100%.bin",
    "%41%2F",
    "hash#1",
    "q?x=1&y",
    "ünïcödé ✓.txt",
    "plus+sign",
    "semi;colon,comma",
    "quote'\"",
    "<tag>",
    "back\\slash",
];

fn body(i: usize) -> Vec<u8> {
    data(1000 + i, i as u32)
}

over_both! {
    fn fs_names_that_urls_escape_round_trip() {
        let rig = Rig::new();
        let core = rig.core();
        let dir = core.mkdir(ROOT, OsStr::new(DIR)).unwrap().ino;
        for (i, n) in NAMES.iter().enumerate() {
            put_in(&core, dir, n, &body(i));
        }
        for n in NAMES {
            core.uploader().wait(&format!("{DIR}/{n}"), WAIT).unwrap();
        }
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(rig.server_file(&format!("{DIR}/{n}")), Some(body(i)), "{n}");
        }
        core.rename(dir, OsStr::new(NAMES[0]), dir, OsStr::new("now #2 100%"), 0)
            .unwrap();
        assert_eq!(rig.server_file(&format!("{DIR}/now #2 100%")), Some(body(0)));
        core.shutdown();

        // A fresh core knows only what the server lists.
        let core = rig.core();
        let dir = core.lookup(ROOT, OsStr::new(DIR)).unwrap().ino;
        let d = core.opendir(dir).unwrap();
        let listed: BTreeSet<String> = core
            .readdir(d, 0)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect();
        core.releasedir(d);
        let mut want: BTreeSet<String> = NAMES[1..].iter().map(|n| n.to_string()).collect();
        want.insert("now #2 100%".into());
        assert_eq!(listed, want);
        for (i, n) in NAMES.iter().enumerate().skip(1) {
            assert_eq!(read_path(&core, &format!("{DIR}/{n}")), Some(body(i)), "{n}");
        }
        for n in &want {
            core.unlink(dir, OsStr::new(n)).unwrap();
        }
        assert_eq!(
            std::fs::read_dir(rig.root.path().join(DIR)).unwrap().count(),
            0
        );
        core.shutdown();
    }
}
