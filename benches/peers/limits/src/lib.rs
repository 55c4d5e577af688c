//! What the limit programs (`src/main.rs`, `src/bin/*.rs`) share: a file in
//! /dev/shm mapped shared, as framering's segment is.
use memmap2::MmapMut;

/// Opens the file at `path` (with `create`: creates it, or empties it if it
/// exists), sizes it to `len` bytes and maps it shared.
///
/// # Safety
///
/// Only processes following the caller's protocol map the file, and none
/// truncates it while it is mapped: the mapping stays `len` bytes of memory
/// that others change only as that protocol says (through atomics, or in
/// parts the caller does not read meanwhile).
pub unsafe fn map_shared(path: &str, len: u64, create: bool) -> MmapMut {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .expect("scratch file in /dev/shm");
    f.set_len(len).expect("size the scratch file");
    // SAFETY: what the caller guarantees (above).
    unsafe { MmapMut::map_mut(&f) }.expect("mmap")
}
