//! Writes benchmark inputs: `cargo run --release --example bench_inputs -- DIR [N]`.
//!
//! N (default 10) distinct 1080×720 RGB photo-like images, written the way
//! cameras and the usual tools write them, so that decoders are measured on
//! what users feed them:
//! - DIR/jpeg: JPEG quality 90, 4:2:0 chroma subsampling (libjpeg's, PIL's
//!   and OpenCV's default);
//! - DIR/png: PNG with zlib level 6 and adaptive filtering (libpng's and
//!   PIL's default).
//!
//! The pictures: a smooth scene (sky gradient, shaded discs and boxes),
//! multi-scale value-noise texture, and ±4 levels of per-pixel sensor noise
//! from a seeded PRNG. (Purely periodic synthetic pictures compress far
//! better than photos and flatter every PNG decoder.) Not committed:
//! generated on demand so the repository stays small.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};

/// xorshift64*: small, seeded, good enough for texture and noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Bilinear value noise on a `cell`-pixel random grid, in [0, 1).
struct ValueNoise {
    grid: Vec<f32>,
    gw: usize,
    cell: f32,
}

impl ValueNoise {
    fn new(rng: &mut Rng, w: u32, h: u32, cell: u32) -> Self {
        let gw = (w / cell + 2) as usize;
        let gh = (h / cell + 2) as usize;
        let grid = (0..gw * gh).map(|_| rng.unit()).collect();
        Self {
            grid,
            gw,
            cell: cell as f32,
        }
    }
    fn at(&self, x: u32, y: u32) -> f32 {
        let (fx, fy) = (x as f32 / self.cell, y as f32 / self.cell);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let g = |i: usize, j: usize| self.grid[j * self.gw + i];
        let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
        let bot = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
        top * (1.0 - ty) + bot * ty
    }
}

fn picture(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let coarse = ValueNoise::new(&mut rng, w, h, 96);
    let fine = ValueNoise::new(&mut rng, w, h, 7);
    // A few shapes: (cx, cy, r, colour) discs and (x0, y0, x1, y1, colour) boxes.
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..5)
        .map(|_| {
            let c = [rng.unit() * 255.0, rng.unit() * 255.0, rng.unit() * 255.0];
            (
                rng.unit() * w as f32,
                rng.unit() * h as f32,
                30.0 + rng.unit() * 160.0,
                c,
            )
        })
        .collect();
    let boxes: Vec<(f32, f32, f32, f32, [f32; 3])> = (0..4)
        .map(|_| {
            let (x0, y0) = (rng.unit() * w as f32, h as f32 * (0.4 + rng.unit() * 0.5));
            let c = [rng.unit() * 200.0, rng.unit() * 200.0, rng.unit() * 200.0];
            (x0, y0, x0 + 60.0 + rng.unit() * 300.0, h as f32, c)
        })
        .collect();
    let sky = [
        90.0 + rng.unit() * 60.0,
        140.0 + rng.unit() * 60.0,
        200.0 + rng.unit() * 55.0,
    ];
    let mut img = RgbImage::new(w, h);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let t = yf / h as f32;
        let mut c = [
            sky[0] * (1.0 - 0.5 * t),
            sky[1] * (1.0 - 0.4 * t),
            sky[2] * (1.0 - 0.3 * t),
        ];
        for &(x0, y0, x1, y1, col) in &boxes {
            if xf >= x0 && xf < x1 && yf >= y0 && yf < y1 {
                let shade = 0.7 + 0.3 * (xf - x0) / (x1 - x0);
                c = [col[0] * shade, col[1] * shade, col[2] * shade];
            }
        }
        for &(cx, cy, r, col) in &discs {
            let d2 = (xf - cx).powi(2) + (yf - cy).powi(2);
            if d2 < r * r {
                let shade = 1.0 - 0.5 * (d2 / (r * r));
                c = [col[0] * shade, col[1] * shade, col[2] * shade];
            }
        }
        let tex = (coarse.at(x, y) - 0.5) * 50.0 + (fine.at(x, y) - 0.5) * 18.0;
        for (k, v) in c.iter().enumerate() {
            let noise = (rng.next() % 9) as f32 - 4.0;
            px.0[k] = (v + tex * (0.8 + 0.1 * k as f32) + noise).clamp(0.0, 255.0) as u8;
        }
    }
    img
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: bench_inputs DIR [N]"));
    let n: u64 = args.next().map_or(10, |s| s.parse().expect("N"));
    // These two directories are ours: start them empty, so that nothing
    // left over from elsewhere is measured along with the inputs.
    for sub in ["jpeg", "png"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for i in 0..n {
        let img = picture(1080, 720, i);
        let mut jpeg =
            jpeg_encoder::Encoder::new_file(dir.join(format!("jpeg/{i:03}.jpg")), 90).unwrap();
        jpeg.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        jpeg.encode(img.as_raw(), 1080, 720, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let f = std::fs::File::create(dir.join(format!("png/{i:03}.png"))).unwrap();
        PngEncoder::new_with_quality(
            std::io::BufWriter::new(f),
            CompressionType::Default,
            FilterType::Adaptive,
        )
        .write_image(img.as_raw(), 1080, 720, image::ExtendedColorType::Rgb8)
        .unwrap();
    }
    println!(
        "wrote {n} JPEG (q90, 4:2:0) and {n} PNG (zlib 6, adaptive) 1080x720 images under {}",
        dir.display()
    );
}
