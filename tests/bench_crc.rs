//! CRC throughput of keyfs's checksumming path next to a plain memory copy
//! (issue 5, the "CRC" row of docs/BENCHMARKS.md). Not a test: it asserts
//! only that the figures are sane and is `#[ignore]`d; `scripts/bench` runs
//! it in release mode with `--ignored --nocapture` and reads the
//! `bench_crc NAME MiB/s` lines it prints.
//!
//! Three figures, each the best of several passes over a 64 MiB buffer in
//! 1 MiB pieces (the kernel's largest FUSE write; `BENCH_CRC_MIB` sets the size):
//! - `memcpy`: `copy_from_slice` of each piece (the floor any write path pays);
//! - `crc32fast`: `Hasher::update` of each piece;
//! - `spool`: `SpoolFile::write_at` of each piece into a file on /dev/shm,
//!   i.e. pwrite + CRC + extent merge (`Hasher::combine`), the path every
//!   FUSE write into keyfs takes; next to `pwrite` alone on the same file.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use keyfs::spool::file::SpoolFile;

/// Buffer size in MiB: `BENCH_CRC_MIB` (scripts/bench --smoke uses 8), else 64.
fn total() -> usize {
    let mib = std::env::var("BENCH_CRC_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&m| m > 0)
        .unwrap_or(64);
    mib << 20
}
const PIECE: usize = 1 << 20;
const PASSES: usize = 5;

fn data(total: usize) -> Vec<u8> {
    // Cheap, incompressible-looking bytes (xorshift), no rand dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = vec![0u8; total];
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

/// Best (shortest) time of PASSES runs of `f`, as MiB/s over the whole buffer.
fn best(total: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..PASSES {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    (total as f64 / (1 << 20) as f64) / best.as_secs_f64()
}

fn report(name: &str, mibs: f64) {
    println!("bench_crc {name} {mibs:.0} MiB/s");
    assert!(mibs.is_finite() && mibs > 1.0, "{name}: implausible {mibs}");
}

#[test]
#[ignore = "benchmark: run by scripts/bench with --ignored --nocapture"]
fn crc_throughput_vs_memcpy() {
    let total = total();
    let src = data(total);
    let mut dst = vec![0u8; total];

    report(
        "memcpy",
        best(total, || {
            for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
                d.copy_from_slice(s);
            }
            std::hint::black_box(&dst);
        }),
    );

    let mut sum = 0u32;
    report(
        "crc32fast",
        best(total, || {
            let mut h = crc32fast::Hasher::new();
            for s in src.chunks(PIECE) {
                h.update(s);
            }
            sum = h.finalize();
        }),
    );
    assert_eq!(sum, crc32fast::hash(&src));

    let dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir().expect("a temp dir"),
    };
    let path = dir.path().join("spool");
    report(
        "pwrite",
        best(total, || {
            let f = std::fs::File::create(&path).expect("create");
            for (i, s) in src.chunks(PIECE).enumerate() {
                f.write_all_at(s, (i * PIECE) as u64).expect("pwrite");
            }
        }),
    );
    let mut last = None;
    report(
        "spool",
        best(total, || {
            let f = SpoolFile::create(&path).expect("create spool file");
            for (i, s) in src.chunks(PIECE).enumerate() {
                let n = f.write_at((i * PIECE) as u64, s).expect("spool write");
                assert_eq!(n, s.len());
            }
            last = Some(f);
        }),
    );
    let f = last.expect("a spool file");
    let (size, crc) = f.finish().expect("finish");
    assert_eq!(size, total as u64);
    assert_eq!(crc, crc32fast::hash(&src), "spool CRC matches the data");
}
