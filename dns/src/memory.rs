//! Hands the heap's free pages back to the kernel after a snapshot is built.
//!
//! Loading a snapshot frees far more than it keeps (the parsed input, the previous table, build
//! buffers), scattered between live nodes. Allocators keep freed pages for reuse: glibc returns
//! memory to the kernel only from the top of a heap, mimalloc (the `roster` binary's allocator) after
//! a delay. Without a release those pages stay resident for a while or for good: measured with glibc
//! on the benchmark's datasets, 0.6 MiB of 28 (10k pods) and 11.4 MiB of 142 (100k pods).

/// Releases the free pages of both allocators a process may use: mimalloc's (`mi_collect`, forced)
/// and glibc's (`malloc_trim(0)`); each is a no-op for an allocator that holds nothing. It walks free
/// lists, so it costs milliseconds on a large heap: call it after a snapshot, not per delta.
pub fn release_free_pages() {
    collect_mimalloc();
    trim_glibc();
}

#[allow(unsafe_code)]
fn collect_mimalloc() {
    // SAFETY: `mi_collect` takes no pointers; it frees and purges only the allocator's own free
    // memory, under its own synchronisation, so it is safe from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_glibc() {
    // SAFETY: `malloc_trim` takes no pointers; it only walks the allocator's own free lists under
    // the allocator's locks, so it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_glibc() {}
