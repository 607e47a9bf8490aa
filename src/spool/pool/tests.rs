//! Tests of the pool alone and of the journal using it.
use super::*;
use std::io::Write;

fn ino(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

fn names(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn take_from_empty_pool_creates() {
    let d = tempfile::tempdir().unwrap();
    let pool = FilePool::open(&d.path().join("free")).unwrap();
    assert!(pool.is_empty());
    let dest = d.path().join("a");
    let mut f = pool.take(&dest).unwrap();
    f.write_all(b"hello").unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"hello");
    assert!(pool.is_empty());
}

#[test]
fn recycle_then_take_reuses_the_inode_emptied() {
    let d = tempfile::tempdir().unwrap();
    let free = d.path().join("free");
    let pool = FilePool::open(&free).unwrap();
    let a = d.path().join("a");
    fs::write(&a, vec![7u8; 4096]).unwrap();
    let old = ino(&a);
    pool.recycle(&a).unwrap();
    assert!(!a.exists(), "recycling removes the name");
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.dirty_len(), 0);
    let pooled = fs::read_dir(&free).unwrap().next().unwrap().unwrap().path();
    assert_eq!(fs::metadata(&pooled).unwrap().len(), 0, "emptied");
    let b = d.path().join("b");
    let mut f = pool.take(&b).unwrap();
    assert_eq!(ino(&b), old, "the same inode came back");
    assert_eq!(fs::metadata(&b).unwrap().len(), 0);
    f.write_all(b"new").unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"new");
    assert!(pool.is_empty());
    assert_eq!(names(&free), 0);
    // Recycling a missing file reports it, like an unlink.
    let e = pool.recycle(&d.path().join("nope")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[test]
fn cap_respected_and_big_or_linked_files_unlinked() {
    let d = tempfile::tempdir().unwrap();
    let free = d.path().join("free");
    let pool = FilePool::open_with_cap(&free, 3).unwrap();
    for i in 0..5 {
        let p = d.path().join(format!("f{i}"));
        fs::write(&p, b"x").unwrap();
        pool.recycle(&p).unwrap();
        assert!(!p.exists());
    }
    assert_eq!(pool.len(), 3);
    assert_eq!(names(&free), 3);
    drop(pool);
    let pool = FilePool::open_with_cap(&free, 3).unwrap();
    let big = d.path().join("big");
    fs::write(&big, vec![1u8; MAX_POOLED as usize + 1]).unwrap();
    let f = pool.take(&d.path().join("t")).unwrap();
    drop(f);
    assert_eq!(pool.len(), 2);
    pool.recycle(&big).unwrap();
    assert!(!big.exists());
    assert_eq!(pool.len(), 2, "a big file is unlinked, not pooled");
    // A file with another link keeps its content under that link.
    let l1 = d.path().join("l1");
    let l2 = d.path().join("l2");
    fs::write(&l1, b"shared").unwrap();
    fs::hard_link(&l1, &l2).unwrap();
    pool.recycle(&l1).unwrap();
    assert!(!l1.exists());
    assert_eq!(fs::read(&l2).unwrap(), b"shared");
    assert_eq!(pool.len(), 2);
    assert_eq!(names(&free), 2);
}

#[test]
fn a_file_still_open_elsewhere_keeps_its_content() {
    let d = tempfile::tempdir().unwrap();
    let free = d.path().join("free");
    let pool = FilePool::open(&free).unwrap();
    let a = d.path().join("a");
    fs::write(&a, b"being read").unwrap();
    let reader = File::open(&a).unwrap();
    let old = ino(&a);
    pool.recycle(&a).unwrap();
    assert!(!a.exists());
    assert_eq!(pool.dirty_len(), 1, "not emptied under a reader");
    pool.settle();
    assert_eq!(pool.dirty_len(), 1);
    assert_eq!(
        std::io::read_to_string(&reader).unwrap(),
        "being read",
        "the reader still sees its bytes"
    );
    // Never handed out while dirty: a fresh file instead.
    let b = d.path().join("b");
    pool.take(&b).unwrap();
    assert_ne!(ino(&b), old);
    assert_eq!(pool.dirty_len(), 1);
    // Retired (rename only), closed before settle: emptied then, reusable.
    let c = d.path().join("c");
    fs::write(&c, b"data").unwrap();
    let r = File::open(&c).unwrap();
    let c_ino = ino(&c);
    pool.retire(&c).unwrap();
    assert!(!c.exists());
    assert_eq!(pool.dirty_len(), 2);
    drop(r);
    pool.settle();
    assert_eq!(pool.dirty_len(), 1, "the one still read stays dirty");
    assert_eq!(pool.len(), 2);
    let e = d.path().join("e");
    pool.take(&e).unwrap();
    assert_eq!(ino(&e), c_ino);
    assert_eq!(fs::metadata(&e).unwrap().len(), 0);
    drop(reader);
    pool.settle();
    assert_eq!(pool.dirty_len(), 0);
    let f = d.path().join("f");
    pool.take(&f).unwrap();
    assert_eq!(ino(&f), old, "emptied once its reader closed it");
    assert_eq!(fs::metadata(&f).unwrap().len(), 0);
    assert_eq!(names(&free), 0);
}

#[test]
fn start_up_cleans_non_empty_and_foreign_pool_files() {
    let d = tempfile::tempdir().unwrap();
    let free = d.path().join("free");
    fs::create_dir_all(&free).unwrap();
    // A crash between the rename into the pool and the truncate.
    fs::write(free.join("3"), b"old record").unwrap();
    fs::write(free.join("4"), b"").unwrap();
    fs::write(free.join("junk"), b"").unwrap();
    // Another link (a crash right after a rename out of the pool,
    // repaired by fsck): the other name keeps its content.
    fs::write(free.join("5"), b"").unwrap();
    fs::hard_link(free.join("5"), d.path().join("kept")).unwrap();
    let pool = FilePool::open(&free).unwrap();
    assert_eq!(pool.len(), 1);
    let left: Vec<String> = fs::read_dir(&free)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["4".to_string()]);
    assert!(d.path().join("kept").exists());
    // A pool name sharing the inode of live data (both names of a rename
    // kept by a power cut) is left alone, whatever its size.
    fs::write(d.path().join("live"), b"live data").unwrap();
    fs::hard_link(d.path().join("live"), free.join("9")).unwrap();
    let live: HashSet<u64> = [ino(&d.path().join("live"))].into();
    let again = FilePool::open_with(&free, 16, &live).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(fs::read(free.join("9")).unwrap(), b"live data");
    assert_eq!(fs::read(d.path().join("live")).unwrap(), b"live data");
    fs::remove_file(free.join("9")).unwrap();
    // New names never collide with the ones found.
    let p = d.path().join("x");
    fs::write(&p, b"1").unwrap();
    pool.recycle(&p).unwrap();
    assert_eq!(names(&free), 2);
}

#[test]
fn cap_follows_free_inodes_within_bounds() {
    // A 512 MiB flash ext4 (~32 K inodes, most free): 1/64 of the free.
    assert_eq!(cap_from(32_000, 32_768), 500);
    assert_eq!(cap_from(1_000, 32_768), MIN_CAP, "never below the floor");
    assert_eq!(cap_from(1 << 30, 1 << 31), POOL_CAP, "nor above the cap");
    assert_eq!(cap_from(0, 0), POOL_CAP, "no inode limit (btrfs)");
    let d = tempfile::tempdir().unwrap();
    assert!((MIN_CAP..=POOL_CAP).contains(&cap_for(d.path())));
    assert_eq!(cap_for(&d.path().join("missing")), POOL_CAP);
}

#[test]
fn dirty_files_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let pool = FilePool::open_with_cap(&d.path().join("free"), 1000).unwrap();
    let mut held = Vec::new();
    for i in 0..MAX_DIRTY + 5 {
        let p = d.path().join(format!("f{i}"));
        fs::write(&p, b"still read").unwrap();
        held.push(File::open(&p).unwrap());
        pool.recycle(&p).unwrap();
        assert!(!p.exists());
    }
    assert_eq!(pool.dirty_len(), MAX_DIRTY);
    assert_eq!(pool.len(), MAX_DIRTY);
    assert_eq!(names(&d.path().join("free")), MAX_DIRTY);
    for f in &held {
        assert_eq!(std::io::read_to_string(f).unwrap(), "still read");
    }
    drop(held);
    pool.settle();
    assert_eq!(pool.dirty_len(), 0);
    assert_eq!(pool.len(), MAX_DIRTY);
}

#[test]
fn disabled_pool_creates_and_unlinks() {
    let d = tempfile::tempdir().unwrap();
    let free = d.path().join("free");
    let pool = FilePool::disabled(&free);
    let a = d.path().join("a");
    pool.take(&a).unwrap();
    pool.recycle(&a).unwrap();
    assert!(!a.exists());
    assert!(!free.exists(), "a disabled pool touches nothing");
}

#[test]
fn concurrent_take_and_recycle() {
    let d = tempfile::tempdir().unwrap();
    let pool = std::sync::Arc::new(FilePool::open_with_cap(&d.path().join("free"), 16).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            let dir = d.path().to_path_buf();
            std::thread::spawn(move || {
                let mut seen = std::collections::HashSet::new();
                for i in 0..200 {
                    let p = dir.join(format!("{t}-{i}"));
                    let mut f = pool.take(&p).unwrap();
                    seen.insert(ino(&p));
                    f.write_all(format!("{t}-{i}").as_bytes()).unwrap();
                    drop(f);
                    assert_eq!(fs::read_to_string(&p).unwrap(), format!("{t}-{i}"));
                    pool.recycle(&p).unwrap();
                }
                seen
            })
        })
        .collect();
    let mut inodes = std::collections::HashSet::new();
    for t in threads {
        inodes.extend(t.join().unwrap());
    }
    // 800 files through a pool of 16: inodes were reused, not created anew.
    assert!(inodes.len() < 100, "{} distinct inodes", inodes.len());
    assert!(pool.len() <= 16);
    assert_eq!(names(&d.path().join("free")), pool.len());
}

mod journal {
    use super::*;
    use crate::spool::journal::{JobRecord, JobState, Journal};

    fn rec(id: u64) -> JobRecord {
        JobRecord {
            id,
            remote_path: format!("f{id}"),
            size: 4,
            crc: 1,
            state: JobState::Queued,
            wanted: Default::default(),
        }
    }

    fn job_files(j: &Journal) -> usize {
        fs::read_dir(j.spool_dir().join("journal"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "next-id")
            .count()
    }

    #[test]
    fn uploaded_jobs_feed_new_data_and_records() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.next_id().unwrap(); // next-id written: not part of the churn
        let mut f = j.create_data(1).unwrap();
        f.write_all(b"data").unwrap();
        drop(f);
        j.record_volatile(&rec(1)).unwrap();
        let data_ino = ino(&j.data_path(1));
        let rec_ino = ino(&j.spool_dir().join("journal/1.job"));
        assert_eq!(j.pool().len(), 0);
        j.remove_uploaded(1).unwrap();
        assert!(!j.data_path(1).exists());
        assert_eq!(j.load(1).unwrap(), None);
        assert_eq!(j.pool().len(), 2, "data and record recycled");
        assert_eq!(
            j.pool().dirty_len(),
            2,
            "renamed only (under the queue's lock)"
        );
        j.settle_recycled();
        assert_eq!(j.pool().dirty_len(), 0);
        // The next job takes both back: no new inode.
        let mut inos = vec![data_ino, rec_ino];
        let f = j.create_data(2).unwrap();
        drop(f);
        j.record_volatile(&rec(2)).unwrap();
        let mut got = vec![
            ino(&j.data_path(2)),
            ino(&j.spool_dir().join("journal/2.job")),
        ];
        inos.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, inos);
        assert_eq!(fs::metadata(j.data_path(2)).unwrap().len(), 0);
        assert_eq!(
            j.load(2).unwrap(),
            Some(rec(2)),
            "no bytes of the old record left"
        );
        assert_eq!(j.pool().len(), 0);
        // Durable writes use it too; a cancel (durable remove) unlinks.
        j.remove_uploaded(2).unwrap();
        j.settle_recycled();
        j.record(&rec(3)).unwrap();
        assert_eq!(j.pool().len(), 1);
        fs::write(j.data_path(3), b"x").unwrap();
        j.remove(3).unwrap();
        assert_eq!(j.pool().len(), 1);
        assert_eq!(job_files(&j), 0);
    }

    #[test]
    fn status_and_replay_ignore_the_pool() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap();
        j.record_volatile(&rec(1)).unwrap();
        fs::write(j.data_path(1), b"data").unwrap();
        j.record_volatile(&rec(2)).unwrap();
        fs::write(j.data_path(2), b"data").unwrap();
        j.remove_uploaded(2).unwrap();
        j.settle_recycled();
        let free = d.path().join("free");
        assert_eq!(names(&free), 2);
        // A pool file left non-empty by a crash, named like a data id.
        fs::write(free.join("99"), b"torn").unwrap();
        let reader = Journal::open_for_reading(d.path()).unwrap();
        assert_eq!(reader.load_all().unwrap(), vec![rec(1)]);
        let recs = reader.load_all().unwrap();
        assert!(reader.orphan_data(&recs).unwrap().is_empty());
        assert_eq!(
            fs::read(free.join("99")).unwrap(),
            b"torn",
            "a reader touches nothing"
        );
        assert_eq!(names(&free), 3);
        drop(j);
        // The owner's start-up: the torn pool file goes, the rest stays.
        let j = Journal::open(d.path()).unwrap();
        assert_eq!(j.load_all().unwrap(), vec![rec(1)]);
        assert!(j.orphan_data(&j.load_all().unwrap()).unwrap().is_empty());
        assert!(!free.join("99").exists());
        assert_eq!(j.pool().len(), 2);
    }
}

/// Another process opening a file while we hold its lease must not kill
/// us (SIGIO's default action); it just waits for the lease to go.
#[test]
fn another_process_opening_a_leased_file_does_not_kill_the_daemon() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("leased");
    std::fs::write(&p, b"x").unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    match lease(&f, libc::F_WRLCK) {
        Lease::Granted => {}
        // No leases on this filesystem: the pool turns itself off there.
        Lease::Unsupported | Lease::Busy => return,
    }
    let t = std::time::Instant::now();
    let mut child = std::process::Command::new("cat")
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child's open breaks the lease: we get SIGIO (ignored) and it waits.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "open did not wait for the lease"
    );
    lease(&f, libc::F_UNLCK);
    let st = child.wait().unwrap();
    assert!(st.success());
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
}
