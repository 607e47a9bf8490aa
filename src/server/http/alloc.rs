//! Keeps glibc's allocator from mapping and unmapping every body chunk.
//!
//! Body chunks (hyper's read buffer, file reads for GET) are a few
//! hundred KiB each, and a GET's are allocated on one thread and freed on
//! another. Past glibc's mmap threshold each one was an mmap, a page fault
//! per 4 KiB as it filled, and a munmap: a multipart upload spent about
//! half its CPU there (2.4 s per GiB, against 1.2 s with the chunks kept
//! in the heap). Raising the mmap and trim thresholds keeps freed chunks
//! for the next ones. Memory stays bounded: what is cached is what the
//! connections' buffers and bounded channels held at most.

/// Allocations above this come from mmap (glibc's default starts at
/// 128 KiB and adapts only up to what it has seen freed).
const MMAP_THRESHOLD: i32 = 8 << 20;
/// Free memory at the top of a heap beyond this goes back to the system.
const TRIM_THRESHOLD: i32 = 32 << 20;

/// Sets the thresholds once (glibc only; elsewhere nothing to do).
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets allocator parameters; it is safe
            // to call at any time from any thread.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
        });
    }
}
