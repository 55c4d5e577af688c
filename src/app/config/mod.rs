//! The TOML configuration (`config.toml`), with defaults for every key and
//! validation that names the offending key: the `[ring]`, `[producer]` and
//! `[consumer]` sections here, `[bridge]` in [`bridge`], the error in
//! [`ConfigError`].

pub mod bridge;
mod error;

pub use bridge::BridgeConfig;
pub use error::ConfigError;

use crate::media::decode::{JpegDecoder, ShapePolicy};
use crate::media::sink::OutputFormat;
use crate::media::{Dtype, FrameShape};
use error::invalid;
use framering_ring::limits::{MAX_CONSUMERS, MAX_DIM, MAX_GROUPS, MAX_SLOTS, MAX_USER_META};
use framering_ring::{validate_group_name, Backpressure, WaitStrategy};
use serde::Deserialize;
use std::path::Path;

/// How processes wait for frames and free slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WaitKind {
    /// Busy-wait: lowest latency, one core per waiting process.
    Spin,
    /// Spin briefly, then sleep on a futex.
    SpinThenFutex,
    /// Sleep on a futex at once.
    Futex,
}

impl WaitKind {
    /// The ring-core strategy.
    pub fn strategy(self) -> WaitStrategy {
        match self {
            WaitKind::Spin => WaitStrategy::SPIN,
            WaitKind::SpinThenFutex => WaitStrategy::SPIN_THEN_FUTEX,
            WaitKind::Futex => WaitStrategy::FUTEX,
        }
    }
}

/// What the producer does when every slot is taken (`ring.backpressure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackpressureKind {
    /// Wait for a consumer to hand a slot back: lossless (files).
    Block,
    /// Drop the oldest frame no consumer has taken yet (live sources).
    #[value(name = "drop_oldest", alias = "drop-oldest")]
    DropOldest,
}

impl BackpressureKind {
    /// The ring-core policy.
    pub fn policy(self) -> Backpressure {
        match self {
            BackpressureKind::Block => Backpressure::Block,
            BackpressureKind::DropOldest => Backpressure::DropOldest,
        }
    }
}

/// `[ring]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    /// Name of the shared-memory object (/dev/shm/NAME).
    pub name: String,
    /// Number of frame slots.
    pub slots: u32,
    /// Frame height; `None` (with `width`): the producer's first input's.
    pub height: Option<u32>,
    /// Frame width; `None` (with `height`): the producer's first input's.
    pub width: Option<u32>,
    /// Channels: 1 (gray), 3 (RGB) or 4 (RGBA).
    pub channels: u32,
    /// Element type of the frames: `uint8`, `uint16` or `float32`.
    #[serde(deserialize_with = "dtype_key")]
    pub dtype: Dtype,
    /// Bytes of user metadata each frame carries beside its pixels.
    pub user_meta_bytes: u32,
    /// Octal permission of the segment, e.g. "0600".
    pub mode: String,
    /// Most consumers attached at once.
    pub max_consumers: u32,
    /// Most consumer groups at once.
    pub max_groups: u32,
    /// Groups that receive every frame from the start, with or without
    /// consumers (others join and leave at run time): `NAME`, or
    /// `NAME:live` / `NAME:block` for a policy of its own.
    pub groups: Vec<String>,
    /// Seconds an ad-hoc group whose last consumer died keeps its frames
    /// for a consumer that restarts.
    pub group_linger_secs: f64,
    /// `block` or `drop_oldest`.
    pub backpressure: BackpressureKind,
    /// With `block`: the most frames a group may have queued and not yet
    /// taken before the producer waits (0: 2 to 8 frames, as many as fit in 8 MiB).
    pub max_queued: u32,
    /// Wait strategy.
    pub wait: WaitKind,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            name: "framering-demo".into(),
            slots: 8,
            height: None,
            width: None,
            channels: 3,
            dtype: Dtype::U8,
            user_meta_bytes: 256,
            mode: "0600".into(),
            max_consumers: 16,
            max_groups: 8,
            groups: Vec::new(),
            group_linger_secs: 30.0,
            backpressure: BackpressureKind::Block,
            max_queued: 0,
            wait: WaitKind::SpinThenFutex,
        }
    }
}

/// `ring.dtype`: a numpy name; an unknown one is an error naming the key.
fn dtype_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Dtype, D::Error> {
    let name = String::deserialize(d)?;
    name.parse()
        .map_err(|e| serde::de::Error::custom(format!("ring.dtype: {e}")))
}

/// `[producer]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// A file, a directory or a glob pattern.
    pub input: String,
    /// Walk sub-directories of a directory input.
    pub recursive: bool,
    /// Fitting of differently sized images.
    pub shape_policy: ShapePolicy,
    /// Decoder threads; 0 = one per core.
    pub decode_threads: u32,
    /// JPEG decoding library: `auto`, `image` or `turbojpeg`.
    pub jpeg_decoder: JpegDecoder,
    /// MiB that all decoder threads together may use for decoded images at
    /// once; an image needing more is skipped as `too_large`.
    pub decode_memory_mb: u64,
    /// Times to replay the inputs.
    #[serde(rename = "loop")]
    pub loops: u32,
    /// Keep decoded frames of the first pass in memory and replay them on
    /// later loops, up to this many MiB (0: decode every time).
    pub loop_cache_mb: u64,
    /// Seconds to wait at the end for consumers to finish; 0 = no limit.
    pub drain_timeout_secs: f64,
    /// After SIGINT/SIGTERM, seconds to wait for consumers before exiting
    /// with the frames left unconsumed.
    pub stop_timeout_secs: f64,
    /// Leave the segment in /dev/shm at exit.
    pub keep: bool,
    /// Publish nothing until this many consumer groups have joined (0: no
    /// such wait; a lossless ring still waits for its first group).
    pub wait_groups: u32,
    /// Publish at most this many frames per second; 0 = as fast as possible.
    pub fps_limit: f64,
    /// Publish video at the source's own frame rate (live-like playback).
    pub realtime: bool,
    /// What `input` is: `auto`, `images`, `video` (through ffmpeg) or `raw`
    /// (frames of the ring's shape, back to back).
    pub source: SourceKind,
    /// The ffmpeg program used for video input and output.
    pub ffmpeg: String,
}

/// What the producer's input is (`producer.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `-` is raw frames on stdin; a URL, a device or a video file
    /// extension is video; anything else is images.
    Auto,
    /// Image files: a file, a directory or a glob.
    Images,
    /// Anything ffmpeg can read.
    Video,
    /// Raw frames of the ring's shape (a file, a FIFO or `-` for stdin).
    Raw,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            input: "assets".into(),
            recursive: false,
            shape_policy: ShapePolicy::Fit,
            decode_threads: 0,
            jpeg_decoder: JpegDecoder::Auto,
            decode_memory_mb: 1024,
            loops: 1,
            loop_cache_mb: 0,
            drain_timeout_secs: 0.0,
            stop_timeout_secs: 5.0,
            keep: false,
            wait_groups: 0,
            fps_limit: 0.0,
            realtime: false,
            source: SourceKind::Auto,
            ffmpeg: "ffmpeg".into(),
        }
    }
}

/// `[consumer]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// A directory, `-` (raw frames to stdout) or `null` (checksum only).
    pub output: String,
    /// File format for a directory output.
    pub format: OutputFormat,
    /// JPEG quality 1–100.
    pub jpeg_quality: u8,
    /// Seconds to wait for the ring to appear.
    pub wait_timeout_secs: f64,
    /// Consumer group to join: every group gets every frame; the consumers
    /// of a group share them.
    pub group: String,
    /// Skip to the newest frame on every take (previews).
    pub latest: bool,
    /// Create the group live (drop-oldest) if this consumer creates it.
    pub live: bool,
    /// Frame rate written into a video output; `None`: the source's, as
    /// the producer recorded it in the ring, else 25.
    pub video_fps: Option<f64>,
    /// The ffmpeg program that encodes a video output.
    pub ffmpeg: String,
    /// Hold each frame this many milliseconds before handing it back
    /// (simulates per-frame work; for tests and benchmarks).
    pub hold_ms: f64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            output: "out".into(),
            format: OutputFormat::Png,
            jpeg_quality: 90,
            wait_timeout_secs: 30.0,
            group: framering_ring::DEFAULT_GROUP.to_string(),
            latest: false,
            live: false,
            video_fps: None,
            ffmpeg: "ffmpeg".into(),
            hold_ms: 0.0,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[ring]`
    pub ring: RingConfig,
    /// `[producer]`
    pub producer: ProducerConfig,
    /// `[consumer]`
    pub consumer: ConsumerConfig,
    /// `[bridge]` (`framering bridge send|recv`, feature `bridge`)
    pub bridge: BridgeConfig,
}

/// Bytes as MiB, with the exact count beside (two sizes in a "too small"
/// message must never read as equal, as "4 MiB but 4 MiB free" did).
fn mib(bytes: u64) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / (1u64 << 20) as f64
    )
}

/// The largest `producer.decode_memory_mb` (1 TiB).
const MAX_DECODE_MEMORY_MB: u64 = 1 << 20;

fn range(key: &'static str, v: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(
            key,
            format!("must be between {lo} and {hi}, got {v}"),
        ));
    }
    Ok(())
}

fn seconds(key: &'static str, v: f64) -> Result<(), ConfigError> {
    if !(v.is_finite() && (0.0..=1e9).contains(&v)) {
        return Err(invalid(
            key,
            format!("must be a number of seconds >= 0, got {v}"),
        ));
    }
    Ok(())
}

impl Config {
    /// Parses TOML text (`path` is only for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file (not yet validated: apply overrides first).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The configured frame shape (with its dtype); `None` while
    /// `ring.height` and `ring.width` are unset (the producer then takes
    /// its input's size: [`Config::with_size`]).
    pub fn frame_shape(&self) -> Option<FrameShape> {
        Some(
            FrameShape::new(self.ring.height?, self.ring.width?, self.ring.channels)
                .with_dtype(self.ring.dtype),
        )
    }

    /// This configuration with frames of `width`×`height` (an input's
    /// size), validated again: the size must be one a ring can hold.
    pub fn with_size(&self, width: u32, height: u32) -> Result<Config, ConfigError> {
        let mut c = self.clone();
        c.ring.width = Some(width);
        c.ring.height = Some(height);
        c.validate()?;
        Ok(c)
    }

    /// Bytes of the ring's shared-memory segment (0 while its size is not
    /// known).
    fn segment_size(&self) -> Result<u64, ConfigError> {
        let Some(shape) = self.frame_shape() else {
            return Ok(0);
        };
        framering_ring::segment_size(
            shape,
            self.ring.slots,
            self.ring.max_consumers,
            self.ring.max_groups,
            self.ring.user_meta_bytes,
        )
        .map_err(|e| invalid("ring.slots", e.to_string()))
    }

    /// The segment mode, parsed.
    pub fn mode(&self) -> Result<u32, ConfigError> {
        let m = self.ring.mode.trim_start_matches("0o");
        let mode = u32::from_str_radix(m, 8).map_err(|_| {
            invalid(
                "ring.mode",
                format!("must be octal like \"0600\", got {:?}", self.ring.mode),
            )
        })?;
        if mode > 0o777 || mode & 0o600 != 0o600 {
            return Err(invalid(
                "ring.mode",
                format!(
                    "must be at most 0777 and give the owner read and write (0600), got {mode:04o}"
                ),
            ));
        }
        Ok(mode)
    }

    /// `ring.groups` parsed: each name with the policy it asks for (`None`:
    /// the ring's `backpressure`).
    pub fn declared_groups(&self) -> Result<Vec<(String, Option<Backpressure>)>, ConfigError> {
        self.ring
            .groups
            .iter()
            .map(|entry| {
                let (name, policy) = match entry.split_once(':') {
                    None => (entry.as_str(), None),
                    Some((name, "live" | "drop_oldest" | "drop-oldest")) => {
                        (name, Some(Backpressure::DropOldest))
                    }
                    Some((name, "block")) => (name, Some(Backpressure::Block)),
                    Some((_, other)) => {
                        return Err(invalid(
                            "ring.groups",
                            format!(
                                "{entry:?}: unknown policy {other:?} (write NAME, NAME:live or NAME:block)"
                            ),
                        ))
                    }
                };
                validate_group_name(name).map_err(|e| invalid("ring.groups", e.to_string()))?;
                Ok((name.to_string(), policy))
            })
            .collect()
    }

    /// Checks every value before anything is created; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        framering_ring::validate_ring_name(&self.ring.name)
            .map_err(|e| invalid("ring.name", e.to_string()))?;
        range("ring.slots", self.ring.slots, 1, MAX_SLOTS)?;
        match (self.ring.height, self.ring.width) {
            (Some(h), Some(w)) => {
                range("ring.height", h, 1, MAX_DIM)?;
                range("ring.width", w, 1, MAX_DIM)?;
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    if self.ring.height.is_none() {
                        "ring.height"
                    } else {
                        "ring.width"
                    },
                    "give ring.height and ring.width together, or neither (the producer then takes its first input's size)",
                ))
            }
        }
        if !matches!(self.ring.channels, 1 | 3 | 4) {
            return Err(invalid(
                "ring.channels",
                format!(
                    "must be 1 (gray), 3 (RGB) or 4 (RGBA), got {}",
                    self.ring.channels
                ),
            ));
        }
        range(
            "ring.max_consumers",
            self.ring.max_consumers,
            1,
            MAX_CONSUMERS,
        )?;
        range("ring.max_groups", self.ring.max_groups, 1, MAX_GROUPS)?;
        range(
            "ring.user_meta_bytes",
            self.ring.user_meta_bytes,
            0,
            MAX_USER_META,
        )?;
        if self.producer.jpeg_decoder == JpegDecoder::Turbojpeg && !JpegDecoder::TURBOJPEG_BUILT {
            return Err(invalid(
                "producer.jpeg_decoder",
                "\"turbojpeg\" needs framering built with libjpeg-turbo: cargo build --release --features turbojpeg (needs cmake and nasm); or use \"auto\" or \"image\"",
            ));
        }
        range("ring.max_queued", self.ring.max_queued, 0, MAX_SLOTS)?;
        if self.ring.groups.len() > self.ring.max_groups as usize {
            return Err(invalid(
                "ring.groups",
                format!(
                    "names {} groups but ring.max_groups is {}",
                    self.ring.groups.len(),
                    self.ring.max_groups
                ),
            ));
        }
        self.declared_groups()?;
        seconds("ring.group_linger_secs", self.ring.group_linger_secs)?;
        range(
            "producer.wait_groups",
            self.producer.wait_groups,
            0,
            self.ring.max_groups,
        )?;
        validate_group_name(&self.consumer.group)
            .map_err(|e| invalid("consumer.group", e.to_string()))?;
        if !(self.producer.fps_limit.is_finite() && (0.0..=1e7).contains(&self.producer.fps_limit))
        {
            return Err(invalid(
                "producer.fps_limit",
                format!(
                    "must be frames per second >= 0, got {}",
                    self.producer.fps_limit
                ),
            ));
        }
        if let Some(fps) = self.consumer.video_fps {
            if !(fps.is_finite() && (0.01..=1000.0).contains(&fps)) {
                return Err(invalid(
                    "consumer.video_fps",
                    format!("must be between 0.01 and 1000, got {fps}"),
                ));
            }
        }
        seconds("consumer.hold_ms", self.consumer.hold_ms)?;
        if self.producer.ffmpeg.is_empty() {
            return Err(invalid("producer.ffmpeg", "must name the ffmpeg program"));
        }
        if self.consumer.ffmpeg.is_empty() {
            return Err(invalid("consumer.ffmpeg", "must name the ffmpeg program"));
        }
        self.mode()?;
        self.segment_size()?;
        range(
            "producer.decode_threads",
            self.producer.decode_threads,
            0,
            256,
        )?;
        if !(1..=MAX_DECODE_MEMORY_MB).contains(&self.producer.decode_memory_mb) {
            return Err(invalid(
                "producer.decode_memory_mb",
                format!(
                    "must be between 1 and {MAX_DECODE_MEMORY_MB} (MiB), got {}",
                    self.producer.decode_memory_mb
                ),
            ));
        }
        range("producer.loop", self.producer.loops, 1, u32::MAX)?;
        seconds(
            "producer.drain_timeout_secs",
            self.producer.drain_timeout_secs,
        )?;
        seconds(
            "producer.stop_timeout_secs",
            self.producer.stop_timeout_secs,
        )?;
        seconds(
            "consumer.wait_timeout_secs",
            self.consumer.wait_timeout_secs,
        )?;
        if !(1..=100).contains(&self.consumer.jpeg_quality) {
            return Err(invalid(
                "consumer.jpeg_quality",
                format!(
                    "must be between 1 and 100, got {}",
                    self.consumer.jpeg_quality
                ),
            ));
        }
        if self.producer.input.is_empty() {
            return Err(invalid(
                "producer.input",
                "must name a file, directory or glob",
            ));
        }
        if self.consumer.output.is_empty() {
            return Err(invalid(
                "consumer.output",
                "must be a directory, \"-\" or \"null\"",
            ));
        }
        Ok(())
    }

    /// Checks that /dev/shm can hold the ring (producer side). The sizes are
    /// printed precisely enough never to read as equal.
    pub fn validate_space(&self) -> Result<(), ConfigError> {
        let size = self.segment_size()?;
        if let Some(free) = framering_ring::shm_free_bytes() {
            if size > free {
                return Err(invalid(
                    "ring.slots",
                    format!(
                        "the ring needs {} but /dev/shm has {} free: lower ring.slots or the frame size, or enlarge /dev/shm (Docker: --shm-size)",
                        mib(size),
                        mib(free)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The wait strategy.
    pub fn wait(&self) -> WaitStrategy {
        self.ring.wait.strategy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config.toml` documents the defaults; the built-in ones (used when
    /// no config file is found) must be exactly those.
    #[test]
    fn built_in_defaults_are_the_documented_config_toml() {
        let documented = Config::parse(
            include_str!("../../../config.toml"),
            Path::new("config.toml"),
        )
        .unwrap();
        assert_eq!(documented, Config::default());
        // And every key of it is given (a key left out would be read from
        // the built-in defaults, hiding a difference).
        let table: toml::Table = include_str!("../../../config.toml").parse().unwrap();
        let keys: usize = table
            .values()
            .map(|v| v.as_table().map_or(0, |t| t.len()))
            .sum();
        // ring.height, ring.width and consumer.video_fps are unset (commented).
        assert_eq!(keys, 13 + 16 + 9 + 25, "config.toml should set every key");
    }

    fn parse(s: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(s, Path::new("t.toml"))?;
        c.validate()?;
        Ok(c)
    }

    fn key_of(r: Result<Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key.to_string(),
            Err(e) => e.to_string(),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn shipped_config_is_valid_and_documented() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        let c = parse(&text).unwrap();
        assert_eq!(c.ring.channels, 3);
        // Every key of the schema appears, commented, in the shipped file.
        for key in [
            "name",
            "slots",
            "height",
            "width",
            "channels",
            "dtype",
            "user_meta_bytes",
            "mode",
            "max_consumers",
            "max_groups",
            "groups",
            "group_linger_secs",
            "backpressure",
            "max_queued",
            "wait",
            "fps_limit",
            "realtime",
            "source",
            "ffmpeg",
            "group",
            "latest",
            "live",
            "wait_groups",
            "video_fps",
            "hold_ms",
            "input",
            "recursive",
            "shape_policy",
            "decode_threads",
            "jpeg_decoder",
            "decode_memory_mb",
            "loop",
            "loop_cache_mb",
            "drain_timeout_secs",
            "stop_timeout_secs",
            "keep",
            "output",
            "format",
            "jpeg_quality",
            "wait_timeout_secs",
        ] {
            assert!(
                text.contains(&format!("\n{key} =")) || text.contains(&format!("\n# {key} =")),
                "config.toml lacks {key}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of(parse("[ring]\nslots = 0")), "ring.slots");
        assert_eq!(
            key_of(parse("[producer]\ndecode_memory_mb = 0")),
            "producer.decode_memory_mb"
        );
        assert_eq!(key_of(parse("[ring]\nchannels = 2")), "ring.channels");
        let e = key_of(parse("[ring]\ndtype = \"int8\""));
        assert!(e.contains("ring.dtype: unknown dtype \"int8\""), "{e}");
        assert_eq!(
            key_of(parse("[ring]\nuser_meta_bytes = 65537")),
            "ring.user_meta_bytes"
        );
        let c = parse("[ring]\ndtype = \"float32\"\nuser_meta_bytes = 0\nheight = 2\nwidth = 2")
            .unwrap();
        assert_eq!(c.frame_shape().unwrap().dtype, Dtype::F32);
        assert_eq!(key_of(parse("[ring]\nname = \"../etc\"")), "ring.name");
        assert_eq!(key_of(parse("[ring]\nmode = \"0400\"")), "ring.mode");
        assert_eq!(key_of(parse("[ring]\nmode = \"rw\"")), "ring.mode");
        assert_eq!(
            key_of(parse("[ring]\nheight = 100000\nwidth = 10")),
            "ring.height"
        );
        assert_eq!(key_of(parse("[ring]\nheight = 100")), "ring.width");
        assert_eq!(
            key_of(parse("[consumer]\njpeg_quality = 0")),
            "consumer.jpeg_quality"
        );
        assert_eq!(
            key_of(parse("[producer]\ndrain_timeout_secs = -1.0")),
            "producer.drain_timeout_secs"
        );
        assert_eq!(key_of(parse("[ring]\ngroups = [\"a b\"]")), "ring.groups");
        let e = key_of(parse("[producer]\njpeg_decoder = \"libjpeg\""));
        assert!(e.contains("jpeg_decoder"), "{e}");
        if !JpegDecoder::TURBOJPEG_BUILT {
            assert_eq!(
                key_of(parse("[producer]\njpeg_decoder = \"turbojpeg\"")),
                "producer.jpeg_decoder"
            );
        }
        assert_eq!(
            key_of(parse("[ring]\nmax_groups = 1\ngroups = [\"a\", \"b\"]")),
            "ring.groups"
        );
        assert_eq!(key_of(parse("[ring]\nmax_groups = 65")), "ring.max_groups");
        assert_eq!(key_of(parse("[consumer]\ngroup = \"\"")), "consumer.group");
        assert_eq!(
            key_of(parse("[producer]\nfps_limit = -3.0")),
            "producer.fps_limit"
        );
        let e = key_of(parse("[ring]\nbackpressure = \"drop_newest\""));
        assert!(e.contains("backpressure"), "{e}");
        let e = key_of(parse("[ring]\nslotz = 3"));
        assert!(e.contains("slotz"), "{e}");
        let e = key_of(parse("[producer]\nshape_policy = \"squash\""));
        assert!(e.contains("shape_policy") || e.contains("squash"), "{e}");
    }

    #[test]
    fn a_pool_larger_than_shm_is_refused() {
        let c = parse("[ring]\nslots = 4096\nheight = 32768\nwidth = 32768\nchannels = 4").unwrap();
        match c.validate_space() {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "ring.slots");
                assert!(message.contains("/dev/shm"));
                assert!(message.contains(" bytes) but /dev/shm has "), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Sizes within a MiB of each other still read as different.
        assert_eq!(mib(4 << 20), "4.0 MiB (4194304 bytes)");
        assert_ne!(mib((4 << 20) + 4096), mib(4 << 20));
    }

    #[test]
    fn bridge_section_parses_and_unknown_keys_are_refused() {
        let c = Config::parse(
            "[bridge]\nkey = \"framering/cam0\"\nlive = true\nconnect = [\"tcp/127.0.0.1:7447\"]\ncongestion = \"block\"\npriority = \"data-high\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.bridge.key, "framering/cam0");
        assert!(c.bridge.live);
        assert_eq!(c.bridge.priority, bridge::ZPriority::DataHigh);
        let e = Config::parse("[bridge]\nlease = 3\n", std::path::Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("lease"), "{e}");
    }
}
