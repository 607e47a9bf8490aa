//! Memory stays bounded while uploading a large spooled file: the worker
//! streams with one fixed buffer. Size via `KEYFS_MEM_TEST_MB` (default 64).

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use keyfs::spool::journal::{JobRecord, JobState};
use keyfs::upload::resume::Policy;
use support::jobs::{start, Spool};
use support::pureftpd::PureFtpd;

/// Peak resident set size of this process, in KiB (VmHWM).
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn large_upload_in_bounded_memory() {
    let mb: u64 = std::env::var("KEYFS_MEM_TEST_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let srv = PureFtpd::start().expect("pure-ftpd");
    let spool = Spool::new();
    let id = spool.journal.next_id().unwrap();
    // Write the spool file in 1 MiB pieces, so the test itself stays small.
    let mut f = std::fs::File::create(spool.journal.data_path(id)).unwrap();
    let mut h = crc32fast::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mb {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (j as u64 ^ (i * 2_654_435_761)).wrapping_mul(31) as u8;
        }
        h.update(&block);
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    drop(block);
    let rec = JobRecord {
        id,
        remote_path: "huge.bin".into(),
        size: mb << 20,
        crc: h.finalize(),
        state: JobState::Queued,
        wanted: Default::default(),
    };
    let before = vm_hwm_kib();
    let s = start(srv.endpoint(), &spool, 1, None, Policy::Safe);
    let t = Instant::now();
    s.up.submit(rec).unwrap();
    s.up.wait("huge.bin", Duration::from_secs(600))
        .expect("uploaded");
    let el = t.elapsed().as_secs_f64();
    let after = vm_hwm_kib();
    eprintln!(
        "uploaded {mb} MiB in {el:.1} s ({:.0} MiB/s); peak RSS {} KiB before, {} KiB after",
        mb as f64 / el,
        before,
        after
    );
    assert_eq!(
        std::fs::metadata(srv.path("huge.bin")).unwrap().len(),
        mb << 20
    );
    // The test process peaked at `before` while generating (1 MiB block);
    // the upload itself adds at most a few MiB whatever the file size.
    assert!(
        after < before + 8 * 1024,
        "peak RSS grew from {before} to {after} KiB"
    );
    s.up.shutdown();
}
