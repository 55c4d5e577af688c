//! The decode limit framering's end-to-end figures are compared with
//! (`benches/peers/loaders.py`): the files of a folder decoded on THREADS
//! threads, each into its own preallocated buffer, with nothing else — no
//! ring, no consumer, no file reads (every file is read into memory first).
//!
//!     decode DECODER DIR THREADS SECONDS [SLOTS]
//!
//! With SLOTS (a multiple of THREADS), the images go into SLOTS buffers of
//! one allocation in turn (image i into buffer i % SLOTS, thread k writing
//! buffers k, k+THREADS, …) instead of one buffer per thread that stays in
//! the cache: what a ring of SLOTS slots costs a decoder that writes into it
//! (every buffer is written once before the clock starts). With
//! `DECODE_SHM=1` in the environment the buffers are a shared mapping of a
//! file in /dev/shm, as framering's slots are, instead of private memory.
//! With `DECODE_READER=1` (and SLOTS) a third thread reads every byte of
//! every decoded buffer (an XOR over it as u64 words, as the benchmarks'
//! consumers do) before its decoder may write it again: the decode limit of
//! a pipeline whose consumer reads each frame, with no ring, no process
//! boundary and no copy — buffer indices go through a mutex and a condvar.
//! Images/s then count the images the reader finished. With
//! `DECODE_AFFINE=same` (or `cross`) as well, decoder k is pinned to CPU k
//! and the reader moves itself, before each buffer, to the CPU that decoded
//! it (or to the other one): what reading a frame where it was made saves.
//!
//! DECODER: `turbojpeg` (libjpeg-turbo 3, as framering's `--features
//! turbojpeg`), `zune-jpeg` (what `image` uses for JPEG, framering's default
//! build), `png` (the `png` crate with fdeflate, what `image` uses), or
//! `zune-png`. Thread k decodes files k, k+THREADS, … in a loop. Prints one
//! JSON line: images per second over all threads, and the decoding threads'
//! CPU time per image (robust to other load on the machine).
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn decode_one(decoder: &str, bytes: &[u8], out: &mut [u8], tj: &mut Option<turbojpeg::Decompressor>) {
    match decoder {
        "turbojpeg" => {
            let d = tj.get_or_insert_with(|| turbojpeg::Decompressor::new().expect("libjpeg-turbo"));
            let h = d.read_header(bytes).expect("JPEG header");
            let image = turbojpeg::Image {
                pixels: out,
                width: h.width,
                pitch: h.width * 3,
                height: h.height,
                format: turbojpeg::PixelFormat::RGB,
            };
            d.decompress(bytes, image).expect("libjpeg-turbo decode");
        }
        "zune-jpeg" => {
            let opts = zune_core::options::DecoderOptions::default()
                .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
            let mut d = zune_jpeg::JpegDecoder::new_with_options(zune_core::bytestream::ZCursor::new(bytes), opts);
            d.decode_into(out).expect("zune-jpeg decode");
        }
        "png" => {
            let mut r = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("PNG header");
            r.next_frame(out).expect("png decode");
        }
        "zune-png" => {
            let mut d = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(bytes));
            d.decode_into(out).expect("zune-png decode");
        }
        other => panic!("unknown decoder {other}"),
    }
}

/// CPU time of the calling thread (the decode's own cost, whatever else the
/// machine runs at the time).
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (decoder, dir, threads, seconds, slots) = match &args[..] {
        [_, d, dir, t, s] => (d, dir, t, s, None),
        [_, d, dir, t, s, n] => (d, dir, t, s, Some(n.parse::<usize>().expect("SLOTS"))),
        _ => {
            eprintln!("usage: decode turbojpeg|zune-jpeg|png|zune-png DIR THREADS SECONDS [SLOTS]");
            std::process::exit(2);
        }
    };
    let threads: usize = threads.parse().expect("THREADS");
    let slots = slots.unwrap_or(threads);
    assert!(slots >= threads && slots % threads == 0, "SLOTS must be a multiple of THREADS");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("DIR")
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // Every image is 1080×720×3 (benches' inputs); without SLOTS one buffer
    // per thread.
    let frame = 1080 * 720 * 3;
    // DECODE_SHM=1: the buffers in a shared mapping of a /dev/shm file (as
    // framering's slots are) instead of private anonymous memory.
    let mut heap;
    let mut shm;
    let ring: &mut [u8] = if std::env::var_os("DECODE_SHM").is_some() {
        let path = format!("/dev/shm/decode-limit-{}", std::process::id());
        // SAFETY: the file is ours alone (named by our pid, unlinked right
        // after), so nothing else changes the mapping under the slice.
        shm = unsafe { limits_peer::map_shared(&path, (frame * slots) as u64, true) };
        std::fs::remove_file(&path).expect("unlink");
        shm.fill(1);
        &mut shm[..]
    } else {
        heap = vec![1u8; frame * slots];
        &mut heap[..]
    };
    if std::env::var_os("DECODE_READER").is_some() {
        return with_reader(decoder, &files, ring, frame, threads, seconds);
    }
    let mut mine: Vec<Vec<&mut [u8]>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, buf) in ring.chunks_mut(frame).enumerate() {
        mine[i % threads].push(buf);
    }
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu_ns = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for (k, mut bufs) in mine.into_iter().enumerate() {
            let (files, stop, done, cpu_ns) = (&files, &stop, &done, &cpu_ns);
            s.spawn(move || {
                let mut tj = None;
                // Warm up: one decode of this thread's first file.
                decode_one(decoder, &files[k % files.len()], bufs[0], &mut tj);
                let cpu0 = thread_cpu_ns();
                let (mut i, mut b) = (k, 0);
                while !stop.load(Ordering::Relaxed) {
                    let out = &mut bufs[b];
                    decode_one(decoder, &files[i % files.len()], out, &mut tj);
                    std::hint::black_box(&out);
                    b = (b + 1) % bufs.len();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += threads;
                }
                cpu_ns.fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        r#"{{"limit": "decode-{decoder}", "threads": {threads}, "slots": {slots}, "images": {n}, "images_per_s": {:.1}, "cpu_ms_per_image": {:.3}}}"#,
        n as f64 / secs,
        cpu_ns.load(Ordering::Relaxed) as f64 / 1e6 / n as f64
    );
}

/// Buffers between the decoders and the reader: which are free to write,
/// which are decoded and wait for the reader (in order).
struct Hand {
    free: Vec<bool>,
    ready: std::collections::VecDeque<usize>,
}

/// A buffer of the ring, shared by its decoder and the reader, who never
/// touch it at the same time (the `free` flag under the lock says whose it is).
#[derive(Clone, Copy)]
struct Buf(*mut u8, usize);
// SAFETY: a `Buf` is only dereferenced by the one thread that owns the
// buffer at the time (see `Hand::free`).
unsafe impl Send for Buf {}
// SAFETY: as above.
unsafe impl Sync for Buf {}

/// Pins the calling thread to CPU `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `DECODE_READER=1`: THREADS decoders and one reader over the SLOTS buffers.
fn with_reader(decoder: &str, files: &[Vec<u8>], ring: &mut [u8], frame: usize, threads: usize, seconds: f64) {
    let slots = ring.len() / frame;
    let bufs: Vec<Buf> = ring.chunks_mut(frame).map(|c| Buf(c.as_mut_ptr(), c.len())).collect();
    let hand = std::sync::Mutex::new(Hand { free: vec![true; slots], ready: Default::default() });
    let cv = std::sync::Condvar::new();
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let cpu_ns = AtomicU64::new(0);
    let mut start = Instant::now();
    let mut reader_cpu_ns = 0;
    // DECODE_AFFINE=same|cross: decoder k pinned to CPU k, the reader moved
    // to the CPU that decoded the buffer (same) or to the other (cross).
    let affine = std::env::var("DECODE_AFFINE").ok().map(|v| v == "same");
    std::thread::scope(|s| {
        for k in 0..threads {
            let (bufs, hand, cv, stop, cpu_ns) = (&bufs, &hand, &cv, &stop, &cpu_ns);
            s.spawn(move || {
                if affine.is_some() {
                    pin_to(k);
                }
                let mut tj = None;
                let cpu0 = thread_cpu_ns();
                let (mut i, mut b) = (k, k);
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut h = hand.lock().unwrap();
                        while !h.free[b] && !stop.load(Ordering::Relaxed) {
                            h = cv.wait_timeout(h, Duration::from_millis(50)).unwrap().0;
                        }
                        h.free[b] = false;
                    }
                    let Buf(p, len) = bufs[b];
                    // SAFETY: buffer b is this thread's until it is pushed
                    // onto `ready` (free[b] was true and is now false).
                    let out = unsafe { std::slice::from_raw_parts_mut(p, len) };
                    decode_one(decoder, &files[i % files.len()], out, &mut tj);
                    hand.lock().unwrap().ready.push_back(b);
                    cv.notify_all();
                    b = (b + threads) % slots;
                    i += threads;
                }
                cpu_ns.fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
            });
        }
        let reader = s.spawn(|| {
            let mut x = 0u64;
            let mut first = None;
            let cpu0 = thread_cpu_ns();
            while !stop.load(Ordering::Relaxed) {
                let b = {
                    let mut h = hand.lock().unwrap();
                    loop {
                        if let Some(b) = h.ready.pop_front() {
                            break Some(b);
                        }
                        if stop.load(Ordering::Relaxed) {
                            break None;
                        }
                        h = cv.wait_timeout(h, Duration::from_millis(50)).unwrap().0;
                    }
                };
                let Some(b) = b else { break };
                match affine {
                    Some(true) => pin_to(b % threads),
                    Some(false) => pin_to((b + 1) % threads),
                    None => {}
                }
                let Buf(p, len) = bufs[b];
                // SAFETY: buffer b is the reader's from its pop off `ready`
                // until free[b] is set again.
                let bytes = unsafe { std::slice::from_raw_parts(p, len) };
                for w in bytes.chunks_exact(8) {
                    x ^= u64::from_ne_bytes(w.try_into().unwrap());
                }
                std::hint::black_box(x);
                hand.lock().unwrap().free[b] = true;
                cv.notify_all();
                // The clock starts at the first image read (the warm-up).
                if first.is_none() {
                    first = Some(Instant::now());
                } else {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            (first, thread_cpu_ns() - cpu0)
        });
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        cv.notify_all();
        let (first, cpu) = reader.join().unwrap();
        start = first.unwrap_or(start);
        reader_cpu_ns = cpu;
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed).max(1);
    println!(
        r#"{{"limit": "decode-{decoder}-reader", "threads": {threads}, "slots": {slots}, "images": {n}, "images_per_s": {:.1}, "cpu_ms_per_image": {:.3}, "reader_cpu_ms_per_image": {:.3}}}"#,
        n as f64 / secs,
        cpu_ns.load(Ordering::Relaxed) as f64 / 1e6 / n as f64,
        reader_cpu_ns as f64 / 1e6 / n as f64
    );
}
