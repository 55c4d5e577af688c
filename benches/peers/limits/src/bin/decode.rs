//! The decode limit framering's end-to-end figures are compared with
//! (`benches/peers/loaders.py`): the files of a folder decoded on THREADS
//! threads, each into its own preallocated buffer, with nothing else — no
//! ring, no consumer, no file reads (every file is read into memory first).
//!
//!     decode DECODER DIR THREADS SECONDS
//!
//! DECODER: `turbojpeg` (libjpeg-turbo 3, as framering's `--features
//! turbojpeg`), `zune-jpeg` (what `image` uses for JPEG, framering's default
//! build), `png` (the `png` crate with fdeflate, what `image` uses), or
//! `zune-png`. Thread k decodes files k, k+THREADS, … in a loop. Prints one
//! JSON line: images per second over all threads.
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, decoder, dir, threads, seconds] = &args[..] else {
        eprintln!("usage: decode turbojpeg|zune-jpeg|png|zune-png DIR THREADS SECONDS");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("DIR")
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // Every image is 1080×720×3 (benches' inputs); one buffer per thread.
    let frame = 1080 * 720 * 3;
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (files, stop, done) = (&files, &stop, &done);
            s.spawn(move || {
                let mut out = vec![0u8; frame];
                let mut tj = None;
                // Warm up: one decode of this thread's first file.
                decode_one(decoder, &files[k % files.len()], &mut out, &mut tj);
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    decode_one(decoder, &files[i % files.len()], &mut out, &mut tj);
                    std::hint::black_box(&out);
                    done.fetch_add(1, Ordering::Relaxed);
                    i += threads;
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        r#"{{"limit": "decode-{decoder}", "threads": {threads}, "images": {n}, "images_per_s": {:.1}}}"#,
        n as f64 / secs
    );
}
