//! Where a consumer puts the frames it took.

use super::FrameShape;
use image::{ExtendedColorType, ImageEncoder};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Image file format written by a consumer with `--output DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Lossless PNG.
    Png,
    /// JPEG (`consumer.jpeg_quality`).
    Jpeg,
    /// Binary PNM: PPM for 3 channels, PGM for 1, PAM for 4.
    Ppm,
}

/// Writing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An output named like a file of a format this consumer does not write
    /// (an image, audio or other video extension), that is no existing
    /// directory.
    #[error("output {path:?}: .{ext} is not a video container this consumer writes ({known}), and {path} is not a directory; for image files in a directory of that name, create the directory first")]
    UnknownOutput {
        /// The output.
        path: String,
        /// Its extension.
        ext: String,
        /// The video extensions known.
        known: String,
    },
    /// A video output in a directory that does not exist.
    #[error("output {path:?}: directory {} does not exist", dir.display())]
    NoDirectory {
        /// The output.
        path: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// File or pipe error.
    #[error("writing {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The video encoder failed.
    #[error(transparent)]
    Video(#[from] super::video::VideoError),
    /// Encoder error.
    #[error("encoding {path}: {source}")]
    Encode {
        /// Where.
        path: String,
        /// Why.
        source: image::ImageError,
    },
}

/// A frame destination.
#[derive(Debug)]
pub enum Sink {
    /// One image file per frame in a directory, named by sequence number,
    /// written to a temporary name and renamed, so a file is never half
    /// written and a frame delivered twice overwrites its file whole.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// File format.
        format: OutputFormat,
        /// JPEG quality.
        quality: u8,
    },
    /// Raw frame bytes to standard output.
    Stdout(std::io::Stdout),
    /// Reads every byte into a checksum; writes nothing.
    Null {
        /// Running checksum of everything read.
        checksum: u64,
    },
    /// Raw frames into an ffmpeg encoding a video file.
    Video(super::video::FfmpegOutput),
}

/// Folds every byte of `data` into `acc` (8 bytes at a time).
pub fn fold_checksum(acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut a = acc;
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("chunk of 8"));
        a = a.rotate_left(5) ^ w;
    }
    for &b in chunks.remainder() {
        a = a.rotate_left(5) ^ b as u64;
    }
    a
}

fn color(channels: u32) -> ExtendedColorType {
    match channels {
        1 => ExtendedColorType::L8,
        4 => ExtendedColorType::Rgba8,
        _ => ExtendedColorType::Rgb8,
    }
}

/// The file extension for a format and channel count.
pub fn extension(format: OutputFormat, channels: u32) -> &'static str {
    match (format, channels) {
        (OutputFormat::Png, _) => "png",
        (OutputFormat::Jpeg, _) => "jpg",
        (OutputFormat::Ppm, 1) => "pgm",
        (OutputFormat::Ppm, 4) => "pam",
        (OutputFormat::Ppm, _) => "ppm",
    }
}

impl Sink {
    /// Checks an output before any frame is taken: a directory output is
    /// created; a video output needs `ffmpeg` to run and its directory to
    /// exist; an output with an extension that is no video container (and
    /// no existing directory) is refused rather than made a directory.
    pub fn check(spec: &str, ffmpeg: &str) -> Result<(), SinkError> {
        if spec == "-" || spec == "null" {
            return Ok(());
        }
        let path = Path::new(spec);
        if super::video::is_video_output(spec) {
            super::video::check_program(ffmpeg)?;
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(SinkError::NoDirectory {
                    path: spec.into(),
                    dir: dir.into(),
                });
            }
            return Ok(());
        }
        // A name that looks like a file of a format we do not write (out.gif,
        // clip.ts) is refused rather than made a directory; other dotted
        // names (run.v2, 2024.06.01) are directories as asked.
        const FILE_LIKE: &[&str] = &[
            "gif", "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "ppm", "pgm", "pnm", "avif",
            "heic", "mp3", "wav", "flac", "aac", "ogg", "opus", "m4a", "ts", "mts", "m2ts", "flv",
            "mpg", "mpeg", "wmv", "ogv", "3gp", "h264", "h265", "hevc", "ivf", "raw", "yuv", "txt",
            "json", "csv",
        ];
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| FILE_LIKE.contains(&e.to_ascii_lowercase().as_str()));
        if let Some(ext) = ext {
            if !path.is_dir() {
                return Err(SinkError::UnknownOutput {
                    path: spec.into(),
                    ext: ext.into(),
                    known: super::video::VIDEO_OUTPUT_EXTENSIONS.join(", "),
                });
            }
        }
        std::fs::create_dir_all(spec).map_err(|source| SinkError::Io {
            path: spec.into(),
            source,
        })
    }

    /// Opens `spec`: `-`, `null`, or a directory (created if missing).
    pub fn open(spec: &str, format: OutputFormat, quality: u8) -> Result<Sink, SinkError> {
        Ok(match spec {
            "-" => Sink::Stdout(std::io::stdout()),
            "null" => Sink::Null { checksum: 0 },
            dir => {
                std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
                    path: dir.into(),
                    source,
                })?;
                Sink::Dir {
                    dir: dir.into(),
                    format,
                    quality,
                }
            }
        })
    }

    /// Path of frame `seq` in a directory sink.
    pub fn frame_path(dir: &Path, format: OutputFormat, channels: u32, seq: u64) -> PathBuf {
        dir.join(format!("{seq:010}.{}", extension(format, channels)))
    }

    /// Writes one frame.
    pub fn write(&mut self, seq: u64, data: &[u8], shape: FrameShape) -> Result<(), SinkError> {
        match self {
            Sink::Null { checksum } => {
                *checksum = fold_checksum(*checksum, data);
                Ok(())
            }
            Sink::Video(v) => Ok(v.write(data)?),
            Sink::Stdout(out) => out.lock().write_all(data).map_err(|source| SinkError::Io {
                path: "stdout".into(),
                source,
            }),
            Sink::Dir {
                dir,
                format,
                quality,
            } => {
                let path = Self::frame_path(dir, *format, shape.channels, seq);
                let tmp = dir.join(format!(
                    ".{}.tmp{}",
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("frame"),
                    std::process::id()
                ));
                let shown = || path.display().to_string();
                let file = File::create(&tmp).map_err(|source| SinkError::Io {
                    path: tmp.display().to_string(),
                    source,
                })?;
                let mut w = BufWriter::new(file);
                let ct = color(shape.channels);
                let res =
                    match format {
                        OutputFormat::Png => image::codecs::png::PngEncoder::new_with_quality(
                            &mut w,
                            image::codecs::png::CompressionType::Fast,
                            image::codecs::png::FilterType::Adaptive,
                        )
                        .write_image(data, shape.width, shape.height, ct),
                        OutputFormat::Jpeg => {
                            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, *quality)
                                .write_image(data, shape.width, shape.height, ct)
                        }
                        OutputFormat::Ppm => image::codecs::pnm::PnmEncoder::new(&mut w)
                            .write_image(data, shape.width, shape.height, ct),
                    };
                res.map_err(|source| SinkError::Encode {
                    path: shown(),
                    source,
                })?;
                w.flush().map_err(|source| SinkError::Io {
                    path: shown(),
                    source,
                })?;
                drop(w);
                std::fs::rename(&tmp, &path).map_err(|source| SinkError::Io {
                    path: shown(),
                    source,
                })
            }
        }
    }

    /// Opens a video file output: frames of `shape` are encoded by
    /// `ffmpeg` at `fps`.
    pub fn open_video(
        ffmpeg: &str,
        path: &str,
        shape: FrameShape,
        fps: f64,
    ) -> Result<Sink, SinkError> {
        Ok(Sink::Video(super::video::FfmpegOutput::spawn(
            ffmpeg, path, shape, fps,
        )?))
    }

    /// Flushes and closes: waits for a video encoder to finish the file.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::Video(v) => Ok(v.finish()?),
            Sink::Stdout(out) => out.lock().flush().map_err(|source| SinkError::Io {
                path: "stdout".into(),
                source,
            }),
            _ => Ok(()),
        }
    }

    /// The checksum of a null sink.
    pub fn checksum(&self) -> Option<u64> {
        match self {
            Sink::Null { checksum } => Some(*checksum),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_before_any_frame() {
        let d = tempfile::tempdir().unwrap();
        let at = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        for ok in ["-", "null"] {
            Sink::check(ok, "ffmpeg").unwrap();
        }
        // Dotted directory names are directories, created as asked.
        for dir in ["run.v2", "2024.06.01", "plain"] {
            Sink::check(&at(dir), "ffmpeg").unwrap();
            assert!(d.path().join(dir).is_dir(), "{dir}");
        }
        // A file-like name of a format not written is refused, not created.
        let e = Sink::check(&at("out.gif"), "ffmpeg").unwrap_err();
        assert!(matches!(e, SinkError::UnknownOutput { .. }), "{e}");
        assert!(!d.path().join("out.gif").exists());
        // ...unless it is an existing directory.
        std::fs::create_dir(d.path().join("frames.png")).unwrap();
        Sink::check(&at("frames.png"), "ffmpeg").unwrap();
        let e = Sink::check(&at("nosuch/x.mp4"), "ffmpeg").unwrap_err();
        assert!(matches!(e, SinkError::NoDirectory { .. }), "{e}");
    }

    #[test]
    fn dir_sink_round_trips_every_format() {
        let d = tempfile::tempdir().unwrap();
        let shape = FrameShape {
            height: 6,
            width: 5,
            channels: 3,
        };
        let data: Vec<u8> = (0..shape.bytes() as u32).map(|i| (i * 7) as u8).collect();
        for format in [OutputFormat::Png, OutputFormat::Ppm] {
            let mut s = Sink::open(d.path().to_str().unwrap(), format, 90).unwrap();
            s.write(42, &data, shape).unwrap();
            let p = Sink::frame_path(d.path(), format, 3, 42);
            let back = image::open(&p).unwrap().to_rgb8();
            assert_eq!(back.into_raw(), data, "{format:?}");
        }
        let mut s = Sink::open(d.path().to_str().unwrap(), OutputFormat::Jpeg, 90).unwrap();
        s.write(1, &data, shape).unwrap();
        let back = image::open(Sink::frame_path(d.path(), OutputFormat::Jpeg, 3, 1)).unwrap();
        assert_eq!((back.width(), back.height()), (5, 6));
        // No temporary files are left behind.
        assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
    }

    #[test]
    fn checksum_reads_every_byte() {
        let a = vec![1u8; 1001];
        let mut b = a.clone();
        b[1000] = 2;
        assert_ne!(fold_checksum(0, &a), fold_checksum(0, &b));
        b[1000] = 1;
        b[3] = 9;
        assert_ne!(fold_checksum(0, &a), fold_checksum(0, &b));
    }
}
