//! Replaying the image messages of an MCAP file as frames.
//!
//! A finished file (with a summary) is read through its chunk index: only
//! the chunks that hold the channels and the time range asked for are read
//! (`--start`/`--end` skip the others without reading them). A file with no
//! summary (its recorder was killed) is read from the start, up to its last
//! complete chunk, with a warning.

use super::format::{
    decode_encoding, parse_frame_rate, shape_of, McapError, FRAME_RATE_KEY, KNOWN_ENCODINGS,
};
use super::schema::{self, ImageMsg};
use crate::media::{Dtype, FrameShape};
use mcap::sans_io::indexed_reader::{IndexedReadEvent, IndexedReader, IndexedReaderOptions};
use mcap::sans_io::linear_reader::{LinearReadEvent, LinearReader, LinearReaderOptions};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The largest record read (a frame of the largest ring is far smaller): a
/// corrupt length is an error, not an allocation of its size.
const RECORD_LIMIT: usize = 4 << 30;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// The image channel's topic (needed when the file has several).
    pub topic: Option<String>,
    /// Seconds from the recording's first message: replay from here.
    pub start_secs: Option<f64>,
    /// Seconds from the recording's first message: replay what was logged
    /// before this.
    pub end_secs: Option<f64>,
}

/// How an image channel's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    FoxgloveRaw,
    FoxgloveCompressed,
    RosRaw,
    RosCompressed,
}

impl Kind {
    fn of(schema: &str, message_encoding: &str) -> Option<Kind> {
        Some(match (schema, message_encoding) {
            (schema::RAW_IMAGE, "protobuf") => Kind::FoxgloveRaw,
            (schema::COMPRESSED_IMAGE, "protobuf") => Kind::FoxgloveCompressed,
            (schema::ROS_IMAGE, "cdr") => Kind::RosRaw,
            (schema::ROS_COMPRESSED_IMAGE, "cdr") => Kind::RosCompressed,
            _ => return None,
        })
    }

    fn decode(self, b: &[u8]) -> Result<ImageMsg<'_>, schema::DecodeError> {
        match self {
            Kind::FoxgloveRaw => schema::decode_raw_image(b),
            Kind::FoxgloveCompressed => schema::decode_compressed_image(b),
            Kind::RosRaw => schema::decode_ros_image(b),
            Kind::RosCompressed => schema::decode_ros_compressed(b),
        }
    }

    /// Decodes the fields before a raw image's pixels (see
    /// [`schema::split_raw_image`]).
    fn decode_prefix(self, b: &[u8]) -> Result<ImageMsg<'_>, schema::DecodeError> {
        match self {
            Kind::RosRaw => schema::decode_ros_image_prefix(b),
            _ => self.decode(b),
        }
    }

    fn compressed(self) -> bool {
        matches!(self, Kind::FoxgloveCompressed | Kind::RosCompressed)
    }
}

/// A channel as the reader needs it.
#[derive(Debug, Clone)]
struct ChannelInfo {
    topic: String,
    /// The schema's name (empty: none).
    schema: String,
    message_encoding: String,
    /// `image_topic` of a `framering.FrameMeta` channel.
    image_topic: Option<String>,
    /// Its `frame_rate`.
    frame_rate: Option<(u32, u32)>,
}

/// The first bytes of a message read to find where its pixels start.
const HEAD: usize = 4096;

/// A message record's opcode, length and header fields.
const RECORD_HEAD: usize = 1 + 8 + 2 + 4 + 8 + 8;

/// Uncompressed chunks read with positioned reads: a raw image's pixels go
/// from the file into the caller's buffer in one read (no chunk buffer, no
/// CRC check: the `mcap` crate's reader copies a chunk twice).
struct Direct {
    /// The chunks to read, in file order (their times do not overlap).
    chunks: Vec<mcap::records::ChunkIndex>,
    next: usize,
    /// The channels read.
    channels: Vec<u16>,
    /// Log times read: `[start, end)`.
    range: (u64, u64),
    /// The open chunk's messages: (log time, file offset of the record,
    /// record length), in log-time order; `at` is the next.
    pending: Vec<(u64, u64, u64)>,
    at: usize,
    /// A record's first bytes (reused).
    head: Vec<u8>,
}

/// A message as [`Direct`] found it.
enum Body<'a> {
    /// All of it.
    Whole(&'a [u8]),
    /// A raw image whose pixels were not read: the fields before them
    /// (`prefix`), and the pixels' place in the file.
    Split {
        prefix: &'a [u8],
        at: u64,
        len: usize,
    },
}

impl Direct {
    /// Chunks of `summary` that [`Direct`] reads: all uncompressed, in
    /// time order without overlap (as recorders write them), else `None`.
    fn chunks(summary: &mcap::Summary) -> Option<Vec<mcap::records::ChunkIndex>> {
        let mut chunks = summary.chunk_indexes.clone();
        chunks.sort_by_key(|c| c.chunk_start_offset);
        let plain = chunks.iter().all(|c| c.compression.is_empty());
        let ordered = chunks
            .windows(2)
            .all(|w| w[0].message_end_time <= w[1].message_start_time);
        (plain && ordered).then_some(chunks)
    }

    /// Reads the next chunk's message headers; false at the end.
    fn load(&mut self, file: &File, path: &Path) -> Result<bool, McapError> {
        let bad = |what: &str| McapError::BadMessage {
            path: path.into(),
            topic: "chunk".into(),
            sequence: 0,
            what: what.into(),
        };
        let io = |source| McapError::Io {
            path: path.into(),
            source,
        };
        self.pending.clear();
        self.at = 0;
        while self.pending.is_empty() {
            let Some(c) = self.chunks.get(self.next) else {
                return Ok(false);
            };
            self.next += 1;
            if c.message_end_time < self.range.0 || c.message_start_time >= self.range.1 {
                continue;
            }
            let start = c
                .compressed_data_offset()
                .map_err(|_| bad("chunk offset out of range"))?;
            let end = start
                .checked_add(c.compressed_size)
                .ok_or_else(|| bad("chunk size out of range"))?;
            let mut pos = start;
            let mut h = [0u8; RECORD_HEAD];
            while pos < end {
                let n = (end - pos).min(RECORD_HEAD as u64) as usize;
                file.read_exact_at(&mut h[..n], pos).map_err(io)?;
                let len = h
                    .get(1..9)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .ok_or_else(|| bad("record cut short"))?;
                let next = pos
                    .checked_add(9)
                    .and_then(|p| p.checked_add(len))
                    .filter(|&p| p <= end)
                    .ok_or_else(|| bad("a record longer than its chunk"))?;
                if h[0] == 0x05 {
                    if n < RECORD_HEAD || len < (RECORD_HEAD - 9) as u64 {
                        return Err(bad("message record cut short"));
                    }
                    let channel = u16::from_le_bytes([h[9], h[10]]);
                    let log = u64::from_le_bytes(h[15..23].try_into().expect("8 bytes"));
                    if self.channels.contains(&channel) && log >= self.range.0 && log < self.range.1
                    {
                        self.pending.push((log, pos, len));
                    }
                }
                pos = next;
            }
            // Log-time order, file order among equal times (as the crate's
            // indexed reader).
            self.pending.sort_by_key(|&(log, _, _)| log);
        }
        Ok(true)
    }

    /// The next message: its header and its body (the whole of it, or
    /// for a raw image on `image`, its pixels' place in the file).
    fn next<'s>(
        &'s mut self,
        file: &File,
        path: &Path,
        image: Option<(u16, Kind)>,
    ) -> Result<Option<(Header, Body<'s>)>, McapError> {
        if self.at == self.pending.len() && !self.load(file, path)? {
            return Ok(None);
        }
        let io = |source| McapError::Io {
            path: path.into(),
            source,
        };
        let (_, pos, len) = self.pending[self.at];
        self.at += 1;
        // The record's header and its message's first bytes in one read
        // (all of a small message). load() checked that the record is
        // within its chunk and holds a message header.
        let first = len.min((RECORD_HEAD - 9 + HEAD) as u64) as usize;
        self.head.resize(9 + first, 0);
        file.read_exact_at(&mut self.head, pos).map_err(io)?;
        let h = &self.head;
        let header = Header {
            channel: u16::from_le_bytes([h[9], h[10]]),
            sequence: u32::from_le_bytes(h[11..15].try_into().expect("4 bytes")),
            log_time: u64::from_le_bytes(h[15..23].try_into().expect("8 bytes")),
        };
        let msg_len = usize::try_from(len - (RECORD_HEAD - 9) as u64)
            .ok()
            .filter(|&n| n <= RECORD_LIMIT)
            .ok_or_else(|| bad(path, &header, "message too large"))?;
        let data_at = pos + RECORD_HEAD as u64;
        let have = self.head.len() - RECORD_HEAD;
        if have < msg_len {
            let raw = image.filter(|&(id, k)| {
                id == header.channel && matches!(k, Kind::FoxgloveRaw | Kind::RosRaw)
            });
            if let Some((_, kind)) = raw {
                let ros = kind == Kind::RosRaw;
                let head = &self.head[RECORD_HEAD..];
                if let Some((prefix, at, n)) = schema::split_raw_image(ros, head, msg_len) {
                    return Ok(Some((
                        header,
                        Body::Split {
                            prefix: &self.head[RECORD_HEAD..RECORD_HEAD + prefix],
                            at: data_at + at as u64,
                            len: n,
                        },
                    )));
                }
            }
            // Not a raw image, or its pixels are not its last field: read
            // it whole.
            self.head.resize(RECORD_HEAD + msg_len, 0);
            file.read_exact_at(&mut self.head[RECORD_HEAD + have..], data_at + have as u64)
                .map_err(io)?;
        }
        Ok(Some((header, Body::Whole(&self.head[RECORD_HEAD..]))))
    }
}

/// Where the messages come from.
enum Messages {
    /// Uncompressed chunks through the summary's chunk index, read in
    /// place.
    Direct(Box<Direct>),
    /// Through the summary's chunk index.
    Indexed {
        reader: Box<IndexedReader>,
        buf: Vec<u8>,
    },
    /// From the start of a file with no summary.
    Linear {
        reader: Box<LinearReader>,
        /// Schemas seen: id → (name).
        schemas: HashMap<u16, String>,
        /// Channels seen.
        channels: HashMap<u16, ChannelInfo>,
        /// Messages outside the range asked for (log times, ns).
        range: (u64, u64),
        /// The first message's log time (the recording's start).
        start: Option<u64>,
        start_secs: f64,
        end_secs: Option<f64>,
    },
}

/// One message: its channel, MCAP sequence number, log and publish times.
struct Header {
    channel: u16,
    sequence: u32,
    log_time: u64,
}

/// What [`Messages::next`] found.
enum Event<R> {
    /// A message, passed to the caller's function, and what it returned.
    Message(R),
    /// A channel record (a linear read).
    Channel(u16, ChannelInfo),
}

impl Messages {
    /// Calls `f` with the next message, or returns the next channel of a
    /// linear read; `Ok(None)` at the end.
    fn next<R>(
        &mut self,
        file: &File,
        path: &Path,
        f: impl FnOnce(Header, &[u8]) -> R,
    ) -> Result<Option<Event<R>>, McapError> {
        let mcap_err = |source| McapError::Mcap {
            path: path.into(),
            source,
        };
        let io = |source| McapError::Io {
            path: path.into(),
            source,
        };
        match self {
            // read_frame() reads these itself.
            Messages::Direct(_) => Ok(None),
            Messages::Indexed { reader, buf } => loop {
                match reader.next_event() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(mcap_err(e)),
                    Some(Ok(IndexedReadEvent::ReadChunkRequest { offset, length })) => {
                        buf.resize(length, 0);
                        file.read_exact_at(buf, offset).map_err(io)?;
                        reader
                            .insert_chunk_record_data(offset, buf)
                            .map_err(mcap_err)?;
                    }
                    Some(Ok(IndexedReadEvent::Message { header, data })) => {
                        return Ok(Some(Event::Message(f(
                            Header {
                                channel: header.channel_id,
                                sequence: header.sequence,
                                log_time: header.log_time,
                            },
                            data,
                        ))))
                    }
                }
            },
            Messages::Linear {
                reader,
                schemas,
                channels,
                range,
                start,
                start_secs,
                end_secs,
            } => loop {
                let event = match reader.next_event() {
                    None => return Ok(None),
                    Some(Err(e)) => {
                        if matches!(
                            e,
                            mcap::McapError::UnexpectedEof | mcap::McapError::UnexpectedEoc
                        ) {
                            tracing::warn!(
                                file = %path.display(),
                                "the file is cut short (its recorder did not finish it): replayed up to its last complete chunk"
                            );
                            return Ok(None);
                        }
                        return Err(mcap_err(e));
                    }
                    Some(Ok(e)) => e,
                };
                match event {
                    LinearReadEvent::ReadRequest(n) => {
                        let got = loop {
                            match (&mut &*file).read(reader.insert(n)) {
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                r => break r.map_err(io)?,
                            }
                        };
                        reader.notify_read(got);
                    }
                    LinearReadEvent::Record { data, opcode } => {
                        let record = mcap::parse_record(opcode, data).map_err(mcap_err)?;
                        match record {
                            mcap::records::Record::Schema { header, .. } => {
                                schemas.insert(header.id, header.name);
                            }
                            mcap::records::Record::Channel(c) => {
                                let info = ChannelInfo {
                                    schema: schemas.get(&c.schema_id).cloned().unwrap_or_default(),
                                    image_topic: c.metadata.get("image_topic").cloned(),
                                    frame_rate: c
                                        .metadata
                                        .get(FRAME_RATE_KEY)
                                        .and_then(|r| parse_frame_rate(r)),
                                    topic: c.topic,
                                    message_encoding: c.message_encoding,
                                };
                                channels.insert(c.id, info.clone());
                                return Ok(Some(Event::Channel(c.id, info)));
                            }
                            mcap::records::Record::Message { header, data } => {
                                let t = header.log_time;
                                start.get_or_insert_with(|| {
                                    let from = |s: f64| t.saturating_add((s * 1e9) as u64);
                                    *range = (from(*start_secs), end_secs.map_or(u64::MAX, from));
                                    t
                                });
                                if t < range.0 || t >= range.1 {
                                    continue;
                                }
                                let h = Header {
                                    channel: header.channel_id,
                                    sequence: header.sequence,
                                    log_time: header.log_time,
                                };
                                return Ok(Some(Event::Message(f(h, &data))));
                            }
                            _ => {}
                        }
                    }
                }
            },
        }
    }
}

/// The metadata of a replayed frame (the pixels went into the caller's
/// buffer).
#[derive(Debug, Clone, Copy)]
pub struct ReplayFrame<'a> {
    /// Capture time (CLOCK_REALTIME ns): the recorded one, else the
    /// message's log time.
    pub capture_ns: u64,
    /// The message's log time.
    pub log_ns: u64,
    /// Presentation timestamp, if recorded.
    pub pts_ns: Option<i64>,
    /// The source name: the recorded one, else the image's frame id.
    pub source: &'a [u8],
    /// The source size before fitting (0×0: not recorded).
    pub src_width: u32,
    /// The source size before fitting.
    pub src_height: u32,
    /// The recorded user metadata.
    pub user_meta: &'a [u8],
}

/// The last `framering.FrameMeta` read, owned.
#[derive(Debug, Default)]
struct Stash {
    sequence: Option<u32>,
    capture_ns: u64,
    pts_ns: Option<i64>,
    src_width: u32,
    src_height: u32,
    source: Vec<u8>,
    user_meta: Vec<u8>,
}

/// An MCAP file being replayed.
pub struct Replay {
    path: PathBuf,
    file: File,
    messages: Messages,
    /// The image channel (found at open for an indexed read, at its first
    /// record for a linear one).
    image: Option<(u16, Kind)>,
    /// Its topic, when asked for.
    topic: Option<String>,
    image_topic: String,
    meta_channel: Option<u16>,
    /// The recorded source frame rate.
    frame_rate: Option<(u32, u32)>,
    shape: FrameShape,
    /// BGR: swap the first and third channels.
    swap: bool,
    stash: Stash,
    /// The frame id of the last image (when no meta is recorded).
    frame_id: Vec<u8>,
    /// The first frame, read at open to learn the shape.
    first: Option<Vec<u8>>,
    first_log: u64,
    /// A raw image's padded or swapped rows, read before they are copied
    /// (reused).
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("path", &self.path)
            .field("topic", &self.image_topic)
            .field("shape", &self.shape)
            .finish()
    }
}

/// Reads the summary of `file`, if it has one.
fn read_summary(file: &mut File, path: &Path) -> Result<Option<mcap::Summary>, McapError> {
    let io = |source| McapError::Io {
        path: path.into(),
        source,
    };
    let mut reader = SummaryReader::new();
    while let Some(event) = reader.next_event() {
        match event {
            Ok(SummaryReadEvent::ReadRequest(need)) => {
                let n = file.read(reader.insert(need)).map_err(io)?;
                reader.notify_read(n);
            }
            Ok(SummaryReadEvent::SeekRequest(to)) => {
                reader.notify_seeked(file.seek(to).map_err(io)?);
            }
            // No footer (a file cut short): read it linearly instead.
            Err(_) => return Ok(None),
        }
    }
    Ok(reader.finish())
}

fn describe(channels: &[(u16, &ChannelInfo)]) -> String {
    let list: Vec<String> = channels
        .iter()
        .map(|(_, c)| format!("{} ({})", c.topic, c.schema))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

impl Replay {
    /// Opens `path` and reads its first image to learn the frame shape.
    pub fn open(path: &Path, opts: &ReplayOptions) -> Result<Replay, McapError> {
        if let (Some(start), Some(end)) = (opts.start_secs, opts.end_secs) {
            if start > end {
                return Err(McapError::Range { start, end });
            }
        }
        let io = |source| McapError::Io {
            path: path.into(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let summary = read_summary(&mut file, path)?;
        let mut image = None;
        let mut meta_channel = None;
        let mut frame_rate = None;
        let mut image_topic = String::new();
        let messages = match summary.filter(|s| !s.chunk_indexes.is_empty()) {
            Some(summary) => {
                let channels: HashMap<u16, ChannelInfo> = summary
                    .channels
                    .iter()
                    .map(|(id, c)| {
                        (
                            *id,
                            ChannelInfo {
                                topic: c.topic.clone(),
                                schema: c
                                    .schema
                                    .as_ref()
                                    .map(|s| s.name.clone())
                                    .unwrap_or_default(),
                                message_encoding: c.message_encoding.clone(),
                                image_topic: c.metadata.get("image_topic").cloned(),
                                frame_rate: c
                                    .metadata
                                    .get(FRAME_RATE_KEY)
                                    .and_then(|r| parse_frame_rate(r)),
                            },
                        )
                    })
                    .collect();
                let (id, kind, topic) = Self::pick(path, &channels, opts.topic.as_deref())?;
                image = Some((id, kind));
                image_topic = topic.clone();
                meta_channel = channels.iter().find_map(|(id, c)| {
                    (c.schema == schema::FRAME_META && c.image_topic.as_deref() == Some(&topic))
                        .then_some(*id)
                });
                frame_rate = meta_channel
                    .and_then(|id| channels.get(&id))
                    .and_then(|c| c.frame_rate);
                let first = summary
                    .stats
                    .as_ref()
                    .map(|s| s.message_start_time)
                    .filter(|&t| t > 0)
                    .unwrap_or_else(|| {
                        summary
                            .chunk_indexes
                            .iter()
                            .map(|c| c.message_start_time)
                            .min()
                            .unwrap_or(0)
                    });
                let at = |s: f64| first.saturating_add((s * 1e9) as u64);
                if let Some(chunks) = Direct::chunks(&summary) {
                    let range = (
                        opts.start_secs.map_or(0, at),
                        opts.end_secs.map_or(u64::MAX, at),
                    );
                    Messages::Direct(Box::new(Direct {
                        chunks,
                        next: 0,
                        channels: [Some(id), meta_channel].into_iter().flatten().collect(),
                        range,
                        pending: Vec::new(),
                        at: 0,
                        head: Vec::new(),
                    }))
                } else {
                    let mut topics = vec![topic];
                    if let Some(m) = meta_channel.and_then(|id| channels.get(&id)) {
                        topics.push(m.topic.clone());
                    }
                    let mut o = IndexedReaderOptions::new()
                        .include_topics(topics)
                        .with_record_length_limit(RECORD_LIMIT);
                    if let Some(s) = opts.start_secs {
                        o = o.starting_at(at(s));
                    }
                    if let Some(e) = opts.end_secs {
                        o = o.ending_before(at(e));
                    }
                    let reader =
                        IndexedReader::new_with_options(&summary, o).map_err(|source| {
                            McapError::Mcap {
                                path: path.into(),
                                source,
                            }
                        })?;
                    Messages::Indexed {
                        reader: Box::new(reader),
                        buf: Vec::new(),
                    }
                }
            }
            None => {
                tracing::warn!(
                    file = %path.display(),
                    "the file has no summary or index (its recorder did not finish it): reading it from the start"
                );
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                let o = LinearReaderOptions::default()
                    .with_validate_chunk_crcs(true)
                    .with_record_length_limit(RECORD_LIMIT);
                Messages::Linear {
                    reader: Box::new(LinearReader::new_with_options(o)),
                    schemas: HashMap::new(),
                    channels: HashMap::new(),
                    range: (0, u64::MAX),
                    start: None,
                    start_secs: opts.start_secs.unwrap_or(0.0),
                    end_secs: opts.end_secs,
                }
            }
        };
        let mut r = Replay {
            path: path.into(),
            file,
            messages,
            image,
            topic: opts.topic.clone(),
            image_topic,
            meta_channel,
            frame_rate,
            shape: FrameShape::new(0, 0, 0),
            swap: false,
            stash: Stash::default(),
            frame_id: Vec::new(),
            first: None,
            first_log: 0,
            scratch: Vec::new(),
        };
        let mut first = Vec::new();
        match r.read_frame(Dst::Grow(&mut first), true)? {
            Some(_) => r.first = Some(first),
            None => {
                return Err(McapError::NoImageChannel {
                    path: path.into(),
                    topic: opts.topic.clone(),
                    found: "no image message in the range asked for".into(),
                })
            }
        }
        Ok(r)
    }

    /// The image channel to replay among `channels`: the one on `topic`,
    /// else the only one.
    fn pick(
        path: &Path,
        channels: &HashMap<u16, ChannelInfo>,
        topic: Option<&str>,
    ) -> Result<(u16, Kind, String), McapError> {
        let mut images: Vec<(u16, &ChannelInfo)> = channels
            .iter()
            .filter(|(_, c)| Kind::of(&c.schema, &c.message_encoding).is_some())
            .map(|(id, c)| (*id, c))
            .collect();
        images.sort_by(|a, b| a.1.topic.cmp(&b.1.topic));
        let chosen: Vec<&(u16, &ChannelInfo)> = images
            .iter()
            .filter(|(_, c)| topic.map_or(true, |t| t == c.topic))
            .collect();
        match chosen.as_slice() {
            [(id, c)] => Ok((
                *id,
                Kind::of(&c.schema, &c.message_encoding).expect("filtered"),
                c.topic.clone(),
            )),
            [] => {
                let all: Vec<(u16, &ChannelInfo)> = channels.iter().map(|(i, c)| (*i, c)).collect();
                Err(McapError::NoImageChannel {
                    path: path.into(),
                    topic: topic.map(str::to_string),
                    found: format!("{}; all channels: {}", describe(&images), describe(&all)),
                })
            }
            _ => Err(McapError::SeveralImageChannels {
                path: path.into(),
                found: describe(&images),
            }),
        }
    }

    /// The frames' shape (the first image's).
    pub fn shape(&self) -> FrameShape {
        self.shape
    }

    /// The image channel's topic.
    pub fn topic(&self) -> &str {
        &self.image_topic
    }

    /// The source's frame rate `(num, den)` the recording keeps, if any.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        self.frame_rate
    }

    /// The first frame's log time (ns).
    pub fn first_log_ns(&self) -> u64 {
        self.first_log
    }

    /// Reads the next frame's pixels into `dst` (of [`Self::shape`]'s
    /// size); `Ok(None)` at the end.
    pub fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<ReplayFrame<'_>>, McapError> {
        let log = if let Some(first) = self.first.take() {
            dst.copy_from_slice(&first);
            self.first_log
        } else {
            match self.read_frame(Dst::Fixed(dst), false)? {
                Some(log) => log,
                None => return Ok(None),
            }
        };
        let s = &self.stash;
        let recorded = s.sequence.is_some();
        Ok(Some(ReplayFrame {
            capture_ns: if recorded { s.capture_ns } else { log },
            log_ns: log,
            pts_ns: s.pts_ns.filter(|_| recorded),
            source: if recorded { &s.source } else { &self.frame_id },
            src_width: if recorded {
                s.src_width
            } else {
                self.shape.width
            },
            src_height: if recorded {
                s.src_height
            } else {
                self.shape.height
            },
            user_meta: if recorded { &s.user_meta } else { &[] },
        }))
    }

    /// Reads messages up to the next image and decodes it into `dst`
    /// (when `probe`, the first image: it sets the shape and `dst` is
    /// sized to it). Returns its log time; `Ok(None)` at the end.
    fn read_frame(&mut self, mut dst: Dst<'_>, probe: bool) -> Result<Option<u64>, McapError> {
        loop {
            let Replay {
                path,
                file,
                messages,
                image,
                meta_channel,
                shape,
                swap,
                stash,
                frame_id,
                scratch,
                ..
            } = self;
            let (image_now, meta_now) = (*image, *meta_channel);
            let file: &File = file;
            let mut handle = |h: Header, body: Body<'_>| -> Result<Option<u64>, McapError> {
                if Some(h.channel) == meta_now {
                    let Body::Whole(data) = body else {
                        return Ok(None);
                    };
                    let m = schema::decode_frame_meta(data).map_err(|e| bad(path, &h, e))?;
                    stash.sequence = Some(h.sequence);
                    stash.capture_ns = m.capture_ns;
                    stash.pts_ns = m.pts_ns;
                    stash.src_width = m.src_width;
                    stash.src_height = m.src_height;
                    stash.source.clear();
                    stash.source.extend_from_slice(m.source);
                    stash.user_meta.clear();
                    stash.user_meta.extend_from_slice(m.user_meta);
                    return Ok(None);
                }
                let Some((_, kind)) = image_now.filter(|(id, _)| *id == h.channel) else {
                    return Ok(None);
                };
                // The meta of another frame is not this one's.
                if stash.sequence != Some(h.sequence) {
                    stash.sequence = None;
                }
                let m = match body {
                    Body::Whole(data) => kind.decode(data),
                    Body::Split { prefix, .. } => kind.decode_prefix(prefix),
                }
                .map_err(|e| bad(path, &h, e))?;
                frame_id.clear();
                frame_id.extend_from_slice(m.frame_id);
                if kind.compressed() {
                    decode_compressed(&m, path, &h, shape, &mut dst, probe)?;
                } else {
                    let (s, sw) = raw_shape(&m, path)?;
                    if probe {
                        (*shape, *swap) = (s, sw);
                    } else if s != *shape {
                        return Err(bad(
                            path,
                            &h,
                            format!("a {s} image in a recording of {shape}"),
                        ));
                    }
                    let out = dst
                        .buf(shape.bytes())
                        .ok_or_else(|| bad(path, &h, "frame size"))?;
                    let short = || bad(path, &h, "its data is shorter than its size says");
                    let io = |source| McapError::Io {
                        path: path.clone(),
                        source,
                    };
                    match body {
                        Body::Whole(_) => copy_pixels(&m, *shape, *swap, out).ok_or_else(short)?,
                        // Rows as they are: from the file into the slot.
                        Body::Split { at, len, .. }
                            if !*swap && len >= out.len() && row_step(&m, *shape).0 =>
                        {
                            file.read_exact_at(out, at).map_err(io)?
                        }
                        Body::Split { at, len, .. } => {
                            scratch.resize(len, 0);
                            file.read_exact_at(scratch, at).map_err(io)?;
                            let m = ImageMsg { data: scratch, ..m };
                            copy_pixels(&m, *shape, *swap, out).ok_or_else(short)?
                        }
                    }
                }
                Ok(Some(h.log_time))
            };
            let event = match messages {
                Messages::Direct(d) => d
                    .next(file, path, image_now)?
                    .map(|(h, body)| Event::Message(handle(h, body))),
                _ => messages.next(file, path, |h, data| handle(h, Body::Whole(data)))?,
            };
            match event {
                None => return Ok(None),
                Some(Event::Message(r)) => {
                    if let Some(log) = r? {
                        if probe {
                            self.first_log = log;
                        }
                        return Ok(Some(log));
                    }
                }
                Some(Event::Channel(id, c)) => self.on_channel(id, c),
            }
        }
    }

    /// A channel of a linear read: the image channel is the first one
    /// that fits (on the topic asked for); its meta channel names it.
    fn on_channel(&mut self, id: u16, c: ChannelInfo) {
        if self.image.is_none() && self.topic.as_deref().map_or(true, |t| t == c.topic) {
            if let Some(kind) = Kind::of(&c.schema, &c.message_encoding) {
                self.image = Some((id, kind));
                self.image_topic = c.topic.clone();
            }
        }
        if c.schema == schema::FRAME_META && c.image_topic.as_deref() == Some(&self.image_topic) {
            self.meta_channel = Some(id);
            self.frame_rate = c.frame_rate;
        }
    }
}

fn bad(path: &Path, h: &Header, what: impl std::fmt::Display) -> McapError {
    McapError::BadMessage {
        path: path.into(),
        topic: format!("channel {}", h.channel),
        sequence: h.sequence,
        what: what.to_string(),
    }
}

/// Where a frame's pixels go.
enum Dst<'a> {
    /// The first frame's buffer, sized to it.
    Grow(&'a mut Vec<u8>),
    /// A slot of the ring's frame size.
    Fixed(&'a mut [u8]),
}

impl Dst<'_> {
    fn buf(&mut self, len: usize) -> Option<&mut [u8]> {
        match self {
            Dst::Grow(v) => {
                v.resize(len, 0);
                Some(v.as_mut_slice())
            }
            Dst::Fixed(s) => (s.len() == len).then_some(&mut **s),
        }
    }
}

/// The compressed formats replayed (decoded by `image`).
const KNOWN_FORMATS: &str = "jpeg, png, webp, bmp, tiff, gif";

/// Decodes a compressed image message into `dst`.
fn decode_compressed(
    m: &ImageMsg<'_>,
    path: &Path,
    h: &Header,
    shape: &mut FrameShape,
    dst: &mut Dst<'_>,
    probe: bool,
) -> Result<(), McapError> {
    let format = String::from_utf8_lossy(m.encoding).to_ascii_lowercase();
    // ROS formats read like "rgb8; jpeg compressed bgr8".
    let known = ["jpeg", "jpg", "png", "webp", "bmp", "tiff", "gif"]
        .iter()
        .any(|f| format.contains(f));
    if !known {
        return Err(McapError::Encoding {
            path: path.into(),
            what: "format",
            encoding: format,
            known: KNOWN_FORMATS,
        });
    }
    let img = image::load_from_memory(m.data).map_err(|source| McapError::Image {
        path: path.into(),
        sequence: h.sequence,
        source,
    })?;
    use image::DynamicImage as D;
    let (w, hgt) = (img.width(), img.height());
    let converted;
    let (channels, dtype, bytes): (u32, Dtype, &[u8]) = match &img {
        D::ImageLuma8(i) => (1, Dtype::U8, i.as_raw()),
        D::ImageRgb8(i) => (3, Dtype::U8, i.as_raw()),
        D::ImageRgba8(i) => (4, Dtype::U8, i.as_raw()),
        D::ImageLuma16(i) => (1, Dtype::U16, bytemuck::cast_slice(i.as_raw())),
        D::ImageRgb16(i) => (3, Dtype::U16, bytemuck::cast_slice(i.as_raw())),
        D::ImageRgba16(i) => (4, Dtype::U16, bytemuck::cast_slice(i.as_raw())),
        other => {
            converted = other.to_rgb8();
            (3, Dtype::U8, converted.as_raw())
        }
    };
    let s = shape_of(w, hgt, channels, dtype);
    if probe {
        *shape = s;
    } else if s != *shape {
        return Err(bad(
            path,
            h,
            format!("a {s} image in a recording of {shape}"),
        ));
    }
    let out = dst
        .buf(bytes.len())
        .ok_or_else(|| bad(path, h, "frame size"))?;
    out.copy_from_slice(bytes);
    Ok(())
}

/// Copies the pixels of `m` (rows of `step` bytes, maybe padded; BGR
/// swapped when `swap`) into `dst`.
fn copy_pixels(m: &ImageMsg<'_>, shape: FrameShape, swap: bool, dst: &mut [u8]) -> Option<()> {
    let (_, row, step) = row_step(m, shape);
    if step < row || dst.len() != row * shape.height as usize {
        return None;
    }
    let need = step
        .checked_mul(shape.height as usize - 1)?
        .checked_add(row)?;
    if m.data.len() < need {
        return None;
    }
    for (y, out) in dst.chunks_exact_mut(row).enumerate() {
        out.copy_from_slice(&m.data[y * step..y * step + row]);
    }
    if swap {
        let px = shape.channels as usize * shape.dtype.size();
        let e = shape.dtype.size();
        for p in dst.chunks_exact_mut(px) {
            for i in 0..e {
                p.swap(i, 2 * e + i);
            }
        }
    }
    Some(())
}

/// Whether the rows of `m` are unpadded, its row bytes and its step.
fn row_step(m: &ImageMsg<'_>, shape: FrameShape) -> (bool, usize, usize) {
    let row = shape.width as usize * shape.channels as usize * shape.dtype.size();
    let step = if m.step == 0 { row } else { m.step as usize };
    (step == row, row, step)
}

/// The shape and BGR-ness of a raw image message.
fn raw_shape(m: &ImageMsg<'_>, path: &Path) -> Result<(FrameShape, bool), McapError> {
    let enc = String::from_utf8_lossy(m.encoding);
    let Some((channels, dtype, swap)) = decode_encoding(&enc) else {
        return Err(McapError::Encoding {
            path: path.into(),
            what: "encoding",
            encoding: enc.into_owned(),
            known: KNOWN_ENCODINGS,
        });
    };
    if m.big_endian && dtype != Dtype::U8 {
        return Err(McapError::Encoding {
            path: path.into(),
            what: "encoding",
            encoding: format!("{enc} (big-endian)"),
            known: "little-endian samples only",
        });
    }
    Ok((shape_of(m.width, m.height, channels, dtype), swap))
}
