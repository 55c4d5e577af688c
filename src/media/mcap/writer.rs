//! Recording frames into an MCAP file, chunk by chunk.
//!
//! Uncompressed chunks (the default) are written by [`DirectWriter`]: a
//! frame's pixels go from the ring's slot to the file in one `writev`;
//! compressed chunks by the `mcap` crate's writer.
//!
//! The recorder closes a chunk itself (the `mcap` writer's automatic
//! chunking is off): after [`RecorderOptions::max_pending`] frames, after
//! [`CHUNK_BYTES`], or once its oldest frame has waited [`CHUNK_AGE`]. A
//! closed chunk is in the file (written to the OS; with `fsync`, on the
//! disk), so [`Recorder::durable`] counts the frames of closed chunks: the
//! consumer hands those back as consumed, and keeps the others until they
//! are. A recorder killed mid-chunk leaves a file whose closed chunks every
//! reader streams; the frames of the open one were never handed back, so
//! the ring redelivers them.

use super::direct::{self, DirectWriter};
use super::format::{
    self, Compression, FrameStamp, ImageCoding, ImageSchema, McapError, FRAME_RATE_KEY,
};
use super::schema::{self, FrameMetaMsg, ImageMsg};
use crate::media::{Dtype, FrameShape};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A chunk is closed once it holds this many bytes.
pub const CHUNK_BYTES: usize = 4 << 20;
/// A chunk is closed once its first frame has waited this long (a slow
/// stream's frames are not held back for long).
pub const CHUNK_AGE: Duration = Duration::from_millis(100);

/// How to record.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Chunk compression.
    pub compression: Compression,
    /// Image message schema.
    pub schema: ImageSchema,
    /// Raw pixels or compressed images.
    pub coding: ImageCoding,
    /// JPEG quality, 1–100.
    pub jpeg_quality: u8,
    /// Wait for the disk (fsync) before a chunk's frames count as written.
    pub fsync: bool,
    /// Replace an existing file.
    pub overwrite: bool,
    /// Start a new file once this many bytes are written (0: never).
    pub split_bytes: u64,
    /// Start a new file after this long (zero: never).
    pub split_after: Duration,
    /// Close a chunk once it holds this many frames (at least 1).
    pub max_pending: usize,
    /// Topic prefix (`/<ring>/image`) and the frame id of frames with no
    /// source name.
    pub ring: String,
    /// The source's frame rate `(num, den)`, if the ring knows it: kept in
    /// the `frame_meta` channel's metadata (`frame_rate`, `"num/den"`).
    pub frame_rate: Option<(u32, u32)>,
}

impl RecorderOptions {
    fn splits(&self) -> bool {
        self.split_bytes > 0 || !self.split_after.is_zero()
    }
}

type McapWriter = mcap::Writer<BufWriter<File>>;

/// What writes the file: uncompressed chunks are written by
/// [`DirectWriter`] (a frame's pixels go from the slot to the file in one
/// write), compressed ones by the `mcap` crate.
enum Sink {
    Crate(Box<McapWriter>),
    Direct(Box<DirectWriter>),
}

impl Sink {
    /// Adds a schema and a channel of it; returns the channel's id.
    fn add_channel(
        &mut self,
        (name, encoding, data): (&str, &str, &[u8]),
        topic: &str,
        message_encoding: &str,
        metadata: &BTreeMap<String, String>,
    ) -> mcap::McapResult<u16> {
        match self {
            Sink::Crate(w) => {
                let schema = w.add_schema(name, encoding, data)?;
                w.add_channel(schema, topic, message_encoding, metadata)
            }
            Sink::Direct(w) => {
                let schema = w.add_schema(name, encoding, data);
                Ok(w.add_channel(schema, topic, message_encoding, metadata))
            }
        }
    }
}

/// An MCAP recording being written.
pub struct Recorder {
    opts: RecorderOptions,
    /// The output as named (`rec.mcap`; split files are `rec-0001.mcap`…).
    base: PathBuf,
    shape: FrameShape,
    encoding: &'static str,
    /// The file being written, its path, and a second handle for fsync.
    writer: Option<Sink>,
    path: PathBuf,
    sync: Option<File>,
    /// Split files started so far.
    files: u32,
    file_started: Instant,
    image_channel: u16,
    meta_channel: u16,
    accepted: u64,
    in_file: u64,
    pending_bytes: usize,
    oldest_pending: Option<Instant>,
    /// Reused message buffers (no allocation per frame).
    msg: Vec<u8>,
    meta: Vec<u8>,
    coded: Vec<u8>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("accepted", &self.accepted)
            .field("in_file", &self.in_file)
            .finish()
    }
}

/// The `mcap` crate's header of a message.
fn mcap_header(h: direct::Header) -> mcap::records::MessageHeader {
    mcap::records::MessageHeader {
        channel_id: h.channel,
        sequence: h.sequence,
        log_time: h.log_time,
        publish_time: h.publish_time,
    }
}

/// `rec.mcap` → `rec-0007.mcap`.
fn split_name(base: &Path, n: u32) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = base
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mcap".into());
    base.with_file_name(format!("{stem}-{n:04}.{ext}"))
}

impl Recorder {
    /// The first file a recording into `path` writes.
    pub fn first_file(path: &Path, opts: &RecorderOptions) -> PathBuf {
        if opts.splits() {
            split_name(path, 1)
        } else {
            path.to_path_buf()
        }
    }

    /// Checks, before any frame is taken, that the recording would not
    /// overwrite a file (unless `opts.overwrite`).
    pub fn check(path: &Path, opts: &RecorderOptions) -> Result<(), McapError> {
        let first = Self::first_file(path, opts);
        if !opts.overwrite && std::fs::symlink_metadata(&first).is_ok() {
            return Err(McapError::Exists { path: first });
        }
        Ok(())
    }

    /// Checks that frames of `shape` can be recorded as `opts` says.
    pub fn check_shape(shape: FrameShape, opts: &RecorderOptions) -> Result<(), McapError> {
        format::encoding(shape.channels, shape.dtype)?;
        match (opts.coding, shape.dtype) {
            (ImageCoding::Jpeg, Dtype::U8) | (ImageCoding::Raw, _) => Ok(()),
            (ImageCoding::Png, Dtype::U8 | Dtype::U16) => Ok(()),
            (ImageCoding::Jpeg, dtype) => Err(McapError::Coding {
                format: "jpeg",
                dtype,
                hint: "record raw images (no --format) or use --format png for uint16",
            }),
            (ImageCoding::Png, dtype) => Err(McapError::Coding {
                format: "png",
                dtype,
                hint: "record raw images (no --format)",
            }),
        }
    }

    /// Creates the recording (its first file) for frames of `shape`.
    pub fn create(
        path: &Path,
        shape: FrameShape,
        opts: RecorderOptions,
    ) -> Result<Self, McapError> {
        Self::check_shape(shape, &opts)?;
        let encoding = format::encoding(shape.channels, shape.dtype)?;
        let mut r = Recorder {
            base: path.to_path_buf(),
            path: PathBuf::new(),
            shape,
            encoding,
            writer: None,
            sync: None,
            files: 0,
            file_started: Instant::now(),
            image_channel: 0,
            meta_channel: 0,
            accepted: 0,
            in_file: 0,
            pending_bytes: 0,
            oldest_pending: None,
            msg: Vec::new(),
            meta: Vec::new(),
            coded: Vec::new(),
            opts,
        };
        r.open_next()?;
        Ok(r)
    }

    fn io(&self, source: std::io::Error) -> McapError {
        McapError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn mcap(&self, source: mcap::McapError) -> McapError {
        McapError::Mcap {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the next file: creates it (refusing an existing one unless
    /// `overwrite`), writes the header, schemas and channels.
    fn open_next(&mut self) -> Result<(), McapError> {
        self.files += 1;
        self.path = if self.opts.splits() {
            split_name(&self.base, self.files)
        } else {
            self.base.clone()
        };
        let mut oo = std::fs::OpenOptions::new();
        oo.read(true).write(true);
        if self.opts.overwrite {
            oo.create(true).truncate(true);
        } else {
            oo.create_new(true);
        }
        let file = oo.open(&self.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                McapError::Exists {
                    path: self.path.clone(),
                }
            } else {
                self.io(e)
            }
        })?;
        self.sync = if self.opts.fsync {
            Some(file.try_clone().map_err(|e| self.io(e))?)
        } else {
            None
        };
        let compression = match self.opts.compression {
            Compression::None => None,
            Compression::Lz4 => Some(mcap::Compression::Lz4),
            Compression::Zstd => Some(mcap::Compression::Zstd),
        };
        let ros = self.opts.schema == ImageSchema::Ros2;
        let profile = if ros { "ros2" } else { "" };
        let library = concat!("framering ", env!("CARGO_PKG_VERSION"));
        let mut w = match compression {
            None => Sink::Direct(Box::new(DirectWriter::new(file, profile, library))),
            Some(_) => Sink::Crate(Box::new(
                mcap::WriteOptions::new()
                    .compression(compression)
                    .chunk_size(None)
                    .profile(profile)
                    .library(library)
                    .create(BufWriter::with_capacity(1 << 16, file))
                    .map_err(|e| self.mcap(e))?,
            )),
        };
        let raw = self.opts.coding == ImageCoding::Raw;
        let (name, encoding, data, message_encoding) = match (ros, raw) {
            (false, true) => (
                schema::RAW_IMAGE,
                "protobuf",
                schema::RAW_IMAGE_DESCRIPTOR.to_vec(),
                "protobuf",
            ),
            (false, false) => (
                schema::COMPRESSED_IMAGE,
                "protobuf",
                schema::COMPRESSED_IMAGE_DESCRIPTOR.to_vec(),
                "protobuf",
            ),
            (true, true) => (
                schema::ROS_IMAGE,
                "ros2msg",
                schema::ros_image_definition().into_bytes(),
                "cdr",
            ),
            (true, false) => (
                schema::ROS_COMPRESSED_IMAGE,
                "ros2msg",
                schema::ros_compressed_definition().into_bytes(),
                "cdr",
            ),
        };
        let ring = self.opts.ring.trim_start_matches('/');
        let image_topic = format!("/{ring}/image");
        let result = (|| {
            let image_channel = w.add_channel(
                (name, encoding, &data),
                &image_topic,
                message_encoding,
                &BTreeMap::new(),
            )?;
            let mut meta = BTreeMap::from([("image_topic".to_string(), image_topic.clone())]);
            if let Some((num, den)) = self.opts.frame_rate {
                meta.insert(FRAME_RATE_KEY.to_string(), format!("{num}/{den}"));
            }
            let meta_channel = w.add_channel(
                (
                    schema::FRAME_META,
                    "protobuf",
                    &schema::frame_meta_descriptor(),
                ),
                &format!("/{ring}/frame_meta"),
                "protobuf",
                &meta,
            )?;
            Ok((image_channel, meta_channel))
        })();
        let (image_channel, meta_channel) = result.map_err(|e| self.mcap(e))?;
        self.image_channel = image_channel;
        self.meta_channel = meta_channel;
        self.writer = Some(w);
        self.file_started = Instant::now();
        tracing::info!(file = %self.path.display(), topic = %image_topic, "recording into MCAP");
        Ok(())
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Writes one frame (its image and its `framering.FrameMeta`
    /// messages). On an error the frame is not accepted.
    pub fn write(&mut self, stamp: &FrameStamp<'_>, data: &[u8]) -> Result<(), McapError> {
        let format = match self.opts.coding {
            ImageCoding::Raw => None,
            ImageCoding::Jpeg => Some("jpeg"),
            ImageCoding::Png => Some("png"),
        };
        if format.is_some() {
            self.encode_image(data)?;
        }
        let frame_id: &[u8] = if stamp.source.is_empty() {
            self.opts.ring.as_bytes()
        } else {
            stamp.source
        };
        let row =
            self.shape.width as usize * self.shape.channels as usize * self.shape.dtype.size();
        let ros = self.opts.schema == ImageSchema::Ros2;
        let mut msg = ImageMsg {
            stamp_ns: Some(stamp.capture_ns),
            frame_id,
            width: self.shape.width,
            height: self.shape.height,
            encoding: self.encoding.as_bytes(),
            big_endian: false,
            step: row as u32,
            data,
        };
        if let Some(format) = format {
            msg.encoding = format.as_bytes();
            msg.data = &self.coded;
        }
        let data = msg.data;
        match (ros, format.is_some()) {
            (false, false) => schema::encode_raw_image(&mut self.msg, &msg),
            (false, true) => schema::encode_compressed_image(&mut self.msg, &msg),
            (true, false) => schema::encode_ros_image(&mut self.msg, &msg),
            (true, true) => schema::encode_ros_compressed(&mut self.msg, &msg),
        }
        schema::encode_frame_meta(
            &mut self.meta,
            &FrameMetaMsg {
                seq: stamp.seq,
                capture_ns: stamp.capture_ns,
                publish_ns: stamp.publish_ns,
                pts_ns: stamp.pts_ns,
                source: stamp.source,
                src_width: stamp.src_width,
                src_height: stamp.src_height,
                user_meta: stamp.user_meta,
            },
        );
        let header = |channel| direct::Header {
            channel,
            sequence: stamp.seq as u32,
            log_time: stamp.capture_ns,
            publish_time: stamp.publish_ns,
        };
        let (image_channel, meta_channel) = (self.image_channel, self.meta_channel);
        let size = self.msg.len() + data.len() + self.meta.len();
        // The meta message first: a reader has it when the image comes.
        match self.writer.as_mut() {
            None => return Err(self.io(std::io::Error::other("the recording is finished"))),
            Some(Sink::Direct(w)) => {
                let written = w
                    .message(header(meta_channel), &self.meta, &[])
                    .and_then(|()| w.message(header(image_channel), &self.msg, data));
                written.map_err(|e| self.io(e))?;
            }
            Some(Sink::Crate(w)) => {
                let header = |channel| mcap_header(header(channel));
                // The crate takes a message in one piece.
                self.msg.extend_from_slice(data);
                let written = w
                    .write_to_known_channel(&header(meta_channel), &self.meta)
                    .and_then(|()| w.write_to_known_channel(&header(image_channel), &self.msg));
                written.map_err(|e| self.mcap(e))?;
            }
        }
        self.accepted += 1;
        self.pending_bytes += size;
        self.oldest_pending.get_or_insert_with(Instant::now);
        if self.accepted - self.in_file >= self.opts.max_pending.max(1) as u64
            || self.pending_bytes >= CHUNK_BYTES
        {
            self.close_chunk()?;
        }
        Ok(())
    }

    /// Encodes a frame as a JPEG or PNG into `self.coded`.
    fn encode_image(&mut self, data: &[u8]) -> Result<(), McapError> {
        use image::ImageEncoder;
        let s = self.shape;
        let color = match (s.dtype, s.channels) {
            (Dtype::U16, 1) => image::ExtendedColorType::L16,
            (Dtype::U16, 4) => image::ExtendedColorType::Rgba16,
            (Dtype::U16, _) => image::ExtendedColorType::Rgb16,
            (_, 1) => image::ExtendedColorType::L8,
            (_, 4) => image::ExtendedColorType::Rgba8,
            _ => image::ExtendedColorType::Rgb8,
        };
        self.coded.clear();
        let res = match self.opts.coding {
            ImageCoding::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut self.coded,
                self.opts.jpeg_quality,
            )
            .write_image(data, s.width, s.height, color),
            _ => image::codecs::png::PngEncoder::new_with_quality(
                &mut self.coded,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(data, s.width, s.height, color),
        };
        res.map_err(|source| McapError::Image {
            path: self.path.clone(),
            sequence: self.accepted as u32,
            source,
        })
    }

    /// Closes the open chunk: its frames are then in the file (and on the
    /// disk with `fsync`). Starts the next file when the split size or
    /// time is reached.
    fn close_chunk(&mut self) -> Result<(), McapError> {
        if self.accepted == self.in_file {
            return Ok(());
        }
        match self.writer.as_mut() {
            None => return Ok(()),
            Some(Sink::Direct(w)) => w.close_chunk().map_err(|e| self.io(e))?,
            Some(Sink::Crate(w)) => w.flush().map_err(|e| self.mcap(e))?,
        }
        if let Some(f) = &self.sync {
            f.sync_data().map_err(|e| self.io(e))?;
        }
        self.in_file = self.accepted;
        self.pending_bytes = 0;
        self.oldest_pending = None;
        if self.opts.splits() {
            let size = match &self.writer {
                Some(Sink::Direct(w)) => w.len(),
                _ => self
                    .sync
                    .as_ref()
                    .map(|f| f.metadata())
                    .unwrap_or_else(|| std::fs::metadata(&self.path))
                    .map(|m| m.len())
                    .unwrap_or(0),
            };
            let full = self.opts.split_bytes > 0 && size >= self.opts.split_bytes;
            let old = !self.opts.split_after.is_zero()
                && self.file_started.elapsed() >= self.opts.split_after;
            if full || old {
                self.finish_file()?;
                self.open_next()?;
            }
        }
        Ok(())
    }

    /// Writes the summary and index of the current file and closes it.
    fn finish_file(&mut self) -> Result<(), McapError> {
        match self.writer.take() {
            None => return Ok(()),
            Some(Sink::Direct(w)) => {
                w.finish().map_err(|e| self.io(e))?;
            }
            Some(Sink::Crate(mut w)) => {
                w.finish().map_err(|e| self.mcap(e))?;
                let mut inner = w.into_inner();
                inner.flush().map_err(|e| self.io(e))?;
            }
        }
        if let Some(f) = &self.sync {
            f.sync_all().map_err(|e| self.io(e))?;
        }
        self.in_file = self.accepted;
        Ok(())
    }

    /// How many of the frames accepted (the first ones) are in the file:
    /// those of closed chunks. Closes the open chunk if its first frame
    /// has waited `CHUNK_AGE`.
    pub fn durable(&mut self) -> Result<u64, McapError> {
        if self
            .oldest_pending
            .is_some_and(|t| t.elapsed() >= CHUNK_AGE)
        {
            self.close_chunk()?;
        }
        Ok(self.in_file)
    }

    /// Finishes the recording: the open chunk, the summary and the index.
    /// Every accepted frame is then in the file.
    pub fn finish(&mut self) -> Result<(), McapError> {
        self.close_chunk()?;
        self.finish_file()
    }

    /// After a failure: how many of the frames accepted are in the file.
    /// The file is left as it is (its closed chunks readable).
    pub fn abandon(&mut self) -> u64 {
        if let Some(Sink::Crate(w)) = self.writer.take() {
            // Dropping the writer would try to finish the file; what was
            // not confirmed goes back to the ring anyway.
            drop(w.into_inner());
        }
        self.in_file
    }
}
