//! Writes benchmark inputs: `cargo run --release --example bench_inputs -- DIR [N]`.
//!
//! N (default 10) distinct 1080×720 RGB photos-like images as JPEG (quality
//! 90) and as PNG, into DIR/jpeg and DIR/png. Not committed: generated on
//! demand so the repository stays small.

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, RgbImage};

fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
    // Smooth gradients plus fine texture, so that the codecs have real work.
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed.wrapping_mul(97)) >> 28;
        image::Rgb([
            ((x * 255 / w) as u8).wrapping_add(n as u8),
            ((y * 255 / h) as u8).wrapping_add((seed * 31) as u8),
            (((x + y + seed * 7) / 3) as u8) ^ (n as u8 * 3),
        ])
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: bench_inputs DIR [N]"));
    let n: u32 = args.next().map_or(10, |s| s.parse().expect("N"));
    std::fs::create_dir_all(dir.join("jpeg")).unwrap();
    std::fs::create_dir_all(dir.join("png")).unwrap();
    for i in 0..n {
        let img = picture(1080, 720, i);
        let f = std::fs::File::create(dir.join(format!("jpeg/{i:03}.jpg"))).unwrap();
        JpegEncoder::new_with_quality(std::io::BufWriter::new(f), 90)
            .encode_image(&img)
            .unwrap();
        DynamicImage::ImageRgb8(img)
            .save_with_format(dir.join(format!("png/{i:03}.png")), ImageFormat::Png)
            .unwrap();
    }
    println!(
        "wrote {n} JPEG and {n} PNG 1080x720 images under {}",
        dir.display()
    );
}
