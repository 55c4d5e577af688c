//! Regenerates the sample images in `assets/`: `cargo run --example make_assets`.
//!
//! Synthetic pictures of different sizes and pixel formats, so that the demo
//! exercises the direct-decode path (same size and format as the slot), the
//! resize path, and the gray/RGBA/16-bit conversions; plus deliberately broken
//! files in `assets/corrupt/` for the tests.

use image::{DynamicImage, ImageFormat, Luma, Rgb, Rgba};
use std::path::Path;

fn scene(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let cx = (x as i64 - w as i64 / 2).pow(2) + (y as i64 - h as i64 / 2).pow(2);
        let ring = ((cx as f64).sqrt() as u32 / 12 + seed) % 2;
        Rgb([
            ((x * 255) / w.max(1)) as u8,
            ((y * 255) / h.max(1)) as u8,
            if ring == 0 {
                40
            } else {
                200 + (seed * 13 % 55) as u8
            },
        ])
    })
}

fn save(img: &DynamicImage, name: &str, fmt: ImageFormat) {
    let path = Path::new("assets").join(name);
    img.save_with_format(&path, fmt).unwrap();
    println!("{} {}x{}", path.display(), img.width(), img.height());
}

fn main() {
    std::fs::create_dir_all("assets/corrupt").unwrap();
    save(
        &DynamicImage::ImageRgb8(scene(480, 360, 0)),
        "01-exact-480x360.jpg",
        ImageFormat::Jpeg,
    );
    save(
        &DynamicImage::ImageRgb8(scene(480, 360, 1)),
        "02-exact-480x360.png",
        ImageFormat::Png,
    );
    save(
        &DynamicImage::ImageRgb8(scene(640, 480, 2)),
        "03-larger-640x480.jpg",
        ImageFormat::Jpeg,
    );
    save(
        &DynamicImage::ImageRgb8(scene(800, 200, 3)),
        "04-wide-800x200.jpg",
        ImageFormat::Jpeg,
    );
    let gray = image::GrayImage::from_fn(300, 400, |x, y| Luma([((x + y) % 256) as u8]));
    save(
        &DynamicImage::ImageLuma8(gray),
        "05-gray-300x400.png",
        ImageFormat::Png,
    );
    let rgba = image::RgbaImage::from_fn(256, 256, |x, y| {
        Rgba([x as u8, y as u8, 128, ((x + y) / 2) as u8])
    });
    save(
        &DynamicImage::ImageRgba8(rgba),
        "06-rgba-256x256.png",
        ImageFormat::Png,
    );
    let deep = DynamicImage::ImageRgb8(scene(240, 180, 4)).to_rgb16();
    save(
        &DynamicImage::ImageRgb16(deep),
        "07-16bit-240x180.png",
        ImageFormat::Png,
    );
    save(
        &DynamicImage::ImageRgb8(scene(120, 90, 5)),
        "08-small-120x90.bmp",
        ImageFormat::Bmp,
    );

    let mut jpg = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(scene(480, 360, 6))
        .write_to(&mut jpg, ImageFormat::Jpeg)
        .unwrap();
    let jpg = jpg.into_inner();
    std::fs::write("assets/corrupt/truncated.jpg", &jpg[..jpg.len() / 3]).unwrap();
    std::fs::write(
        "assets/corrupt/not-an-image.png",
        b"this is text, not a PNG\n",
    )
    .unwrap();
    std::fs::write("assets/corrupt/empty.jpg", b"").unwrap();
    println!("assets/corrupt/: truncated.jpg, not-an-image.png, empty.jpg");
}
