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
