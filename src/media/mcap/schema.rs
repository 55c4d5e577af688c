//! The message schemas framering writes and reads in MCAP, and their wire
//! codecs: `foxglove.RawImage` / `foxglove.CompressedImage` (protobuf, the
//! file descriptor sets Foxglove publishes), `sensor_msgs/msg/Image` /
//! `CompressedImage` (ROS 2 message definitions, CDR), and framering's own
//! `framering.FrameMeta` (protobuf) carrying what an image message has no
//! field for.
//!
//! The codecs are written by hand over a few fields: encoding goes straight
//! into a reused buffer (no allocation per frame), decoding borrows the
//! pixels from the record, and both wire forms older and newer Foxglove
//! schemas used for `width`/`height`/`step` (varint, fixed32) are read.

/// `foxglove.RawImage`'s `FileDescriptorSet`, as published by Foxglove
/// (copied from the `foxglove` crate 0.30.3, `src/messages/data`, MIT).
pub(crate) const RAW_IMAGE_DESCRIPTOR: &[u8] = include_bytes!("RawImage.bin");
/// `foxglove.CompressedImage`'s `FileDescriptorSet` (same source).
pub(crate) const COMPRESSED_IMAGE_DESCRIPTOR: &[u8] = include_bytes!("CompressedImage.bin");

pub(crate) const RAW_IMAGE: &str = "foxglove.RawImage";
pub(crate) const COMPRESSED_IMAGE: &str = "foxglove.CompressedImage";
pub(crate) const ROS_IMAGE: &str = "sensor_msgs/msg/Image";
pub(crate) const ROS_COMPRESSED_IMAGE: &str = "sensor_msgs/msg/CompressedImage";
pub(crate) const FRAME_META: &str = "framering.FrameMeta";

const ROS_HEADER_DEFS: &str =
    "================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
";

/// The `ros2msg` schema text of `sensor_msgs/msg/Image` (with its
/// dependencies, as rosbag2 writes it).
pub(crate) fn ros_image_definition() -> String {
    format!(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n{ROS_HEADER_DEFS}"
    )
}

/// The `ros2msg` schema text of `sensor_msgs/msg/CompressedImage`.
pub(crate) fn ros_compressed_definition() -> String {
    format!("std_msgs/Header header\nstring format\nuint8[] data\n{ROS_HEADER_DEFS}")
}

/// A message that does not decode as its schema says.
#[derive(Debug, thiserror::Error)]
#[error("{schema} message does not decode: {what}")]
pub struct DecodeError {
    /// The schema.
    pub schema: &'static str,
    /// What is wrong.
    pub what: &'static str,
}

// ---------------------------------------------------------------- protobuf

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// The key and length of a bytes field of `len` bytes (its bytes follow).
fn put_len(out: &mut Vec<u8>, field: u32, len: usize) {
    put_key(out, field, LEN);
    put_varint(out, len as u64);
}

fn put_u64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    put_key(out, field, FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `google.protobuf.Timestamp` of `ns` (nanoseconds since the epoch) as
/// field `field`.
fn put_timestamp(out: &mut Vec<u8>, field: u32, ns: u64) {
    let (secs, nanos) = (ns / 1_000_000_000, ns % 1_000_000_000);
    let len = 1 + varint_len(secs) + 1 + varint_len(nanos);
    put_key(out, field, LEN);
    put_varint(out, len as u64);
    put_u64(out, 1, secs);
    put_u64(out, 2, nanos);
}

/// One field of a protobuf message: its number and value.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

impl Field<'_> {
    fn int(self) -> Option<u64> {
        match self {
            Field::Varint(v) | Field::Fixed(v) => Some(v),
            Field::Bytes(_) => None,
        }
    }
}

fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Walks the fields of a protobuf message; `None` on malformed input.
fn fields<'a>(mut buf: &'a [u8], mut each: impl FnMut(u32, Field<'a>)) -> Option<()> {
    while !buf.is_empty() {
        let key = get_varint(&mut buf)?;
        let field = u32::try_from(key >> 3).ok()?;
        let value = match (key & 7) as u8 {
            VARINT => Field::Varint(get_varint(&mut buf)?),
            FIXED64 => {
                let (b, rest) = buf.split_first_chunk::<8>()?;
                buf = rest;
                Field::Fixed(u64::from_le_bytes(*b))
            }
            FIXED32 => {
                let (b, rest) = buf.split_first_chunk::<4>()?;
                buf = rest;
                Field::Fixed(u64::from(u32::from_le_bytes(*b)))
            }
            LEN => {
                let n = usize::try_from(get_varint(&mut buf)?).ok()?;
                if n > buf.len() {
                    return None;
                }
                let (b, rest) = buf.split_at(n);
                buf = rest;
                Field::Bytes(b)
            }
            _ => return None,
        };
        each(field, value);
    }
    Some(())
}

fn timestamp_ns(b: &[u8]) -> Option<u64> {
    let (mut secs, mut nanos) = (0u64, 0u64);
    fields(b, |f, v| match f {
        1 => secs = v.int().unwrap_or(0),
        2 => nanos = v.int().unwrap_or(0),
        _ => {}
    })?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// An image message, decoded (borrowing from the record).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ImageMsg<'a> {
    /// The header's timestamp (ns since the epoch), if any.
    pub stamp_ns: Option<u64>,
    pub frame_id: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Raw: the pixel encoding (`rgb8`…); compressed: the format (`jpeg`…).
    pub encoding: &'a [u8],
    pub big_endian: bool,
    pub step: u32,
    pub data: &'a [u8],
}

fn u32_field(v: Field<'_>) -> u32 {
    v.int().and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// Encodes a `foxglove.RawImage` into `out` (cleared first), all but the
/// bytes of `m.data`: the message is `out` followed by `m.data` (its last
/// field), which a writer can then write from where it is.
pub(crate) fn encode_raw_image(out: &mut Vec<u8>, m: &ImageMsg<'_>) {
    out.clear();
    if let Some(ns) = m.stamp_ns {
        put_timestamp(out, 1, ns);
    }
    put_bytes(out, 7, m.frame_id);
    put_fixed32(out, 2, m.width);
    put_fixed32(out, 3, m.height);
    put_bytes(out, 4, m.encoding);
    put_fixed32(out, 5, m.step);
    put_len(out, 6, m.data.len());
}

/// Decodes a `foxglove.RawImage`.
pub(crate) fn decode_raw_image(b: &[u8]) -> Result<ImageMsg<'_>, DecodeError> {
    let mut m = ImageMsg::default();
    let mut bad = false;
    fields(b, |f, v| match (f, v) {
        (1, Field::Bytes(t)) => {
            m.stamp_ns = timestamp_ns(t);
            bad |= m.stamp_ns.is_none();
        }
        (7, Field::Bytes(s)) => m.frame_id = s,
        (2, v) => m.width = u32_field(v),
        (3, v) => m.height = u32_field(v),
        (4, Field::Bytes(s)) => m.encoding = s,
        (5, v) => m.step = u32_field(v),
        (6, Field::Bytes(d)) => m.data = d,
        _ => {}
    })
    .filter(|()| !bad)
    .ok_or(DecodeError {
        schema: RAW_IMAGE,
        what: "malformed protobuf",
    })?;
    Ok(m)
}

/// Encodes a `foxglove.CompressedImage` (`m.encoding` is the format), all
/// but the bytes of `m.data` (as [`encode_raw_image`]).
pub(crate) fn encode_compressed_image(out: &mut Vec<u8>, m: &ImageMsg<'_>) {
    out.clear();
    if let Some(ns) = m.stamp_ns {
        put_timestamp(out, 1, ns);
    }
    put_bytes(out, 4, m.frame_id);
    put_bytes(out, 3, m.encoding);
    put_len(out, 2, m.data.len());
}

/// Decodes a `foxglove.CompressedImage`.
pub(crate) fn decode_compressed_image(b: &[u8]) -> Result<ImageMsg<'_>, DecodeError> {
    let mut m = ImageMsg::default();
    fields(b, |f, v| match (f, v) {
        (1, Field::Bytes(t)) => m.stamp_ns = timestamp_ns(t),
        (4, Field::Bytes(s)) => m.frame_id = s,
        (3, Field::Bytes(s)) => m.encoding = s,
        (2, Field::Bytes(d)) => m.data = d,
        _ => {}
    })
    .ok_or(DecodeError {
        schema: COMPRESSED_IMAGE,
        what: "malformed protobuf",
    })?;
    Ok(m)
}

/// What `framering.FrameMeta` carries: the frame's ring metadata that the
/// image schemas have no field for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FrameMetaMsg<'a> {
    pub seq: u64,
    pub capture_ns: u64,
    pub publish_ns: u64,
    pub pts_ns: Option<i64>,
    pub source: &'a [u8],
    pub src_width: u32,
    pub src_height: u32,
    pub user_meta: &'a [u8],
}

/// Encodes a `framering.FrameMeta` into `out` (cleared first).
pub(crate) fn encode_frame_meta(out: &mut Vec<u8>, m: &FrameMetaMsg<'_>) {
    out.clear();
    put_u64(out, 1, m.seq);
    put_u64(out, 2, m.capture_ns);
    put_u64(out, 3, m.publish_ns);
    if let Some(pts) = m.pts_ns {
        // int64: two's complement as a varint.
        put_u64(out, 4, pts as u64);
    }
    put_bytes(out, 5, m.source);
    put_u64(out, 6, u64::from(m.src_width));
    put_u64(out, 7, u64::from(m.src_height));
    put_bytes(out, 8, m.user_meta);
}

/// Decodes a `framering.FrameMeta`.
pub(crate) fn decode_frame_meta(b: &[u8]) -> Result<FrameMetaMsg<'_>, DecodeError> {
    let mut m = FrameMetaMsg::default();
    fields(b, |f, v| match (f, v) {
        (1, v) => m.seq = v.int().unwrap_or(0),
        (2, v) => m.capture_ns = v.int().unwrap_or(0),
        (3, v) => m.publish_ns = v.int().unwrap_or(0),
        (4, v) => m.pts_ns = v.int().map(|v| v as i64),
        (5, Field::Bytes(s)) => m.source = s,
        (6, v) => m.src_width = u32_field(v),
        (7, v) => m.src_height = u32_field(v),
        (8, Field::Bytes(s)) => m.user_meta = s,
        _ => {}
    })
    .ok_or(DecodeError {
        schema: FRAME_META,
        what: "malformed protobuf",
    })?;
    Ok(m)
}

/// The `FileDescriptorSet` of `framering.FrameMeta` (proto3; `pts_ns` is
/// `optional`), built from `descriptor.proto`'s field numbers.
pub(crate) fn frame_meta_descriptor() -> Vec<u8> {
    // FieldDescriptorProto.Type values.
    const UINT64: u64 = 4;
    const INT64: u64 = 3;
    const BYTES: u64 = 12;
    const UINT32: u64 = 13;
    let fields: [(&str, u64, u64, &str); 8] = [
        ("seq", 1, UINT64, "seq"),
        ("capture_ns", 2, UINT64, "captureNs"),
        ("publish_ns", 3, UINT64, "publishNs"),
        ("pts_ns", 4, INT64, "ptsNs"),
        ("source", 5, BYTES, "source"),
        ("src_width", 6, UINT32, "srcWidth"),
        ("src_height", 7, UINT32, "srcHeight"),
        ("user_meta", 8, BYTES, "userMeta"),
    ];
    let mut message = Vec::new();
    put_bytes(&mut message, 1, b"FrameMeta");
    for (name, number, kind, json) in fields {
        let mut f = Vec::new();
        put_bytes(&mut f, 1, name.as_bytes());
        put_u64(&mut f, 3, number);
        put_u64(&mut f, 4, 1); // LABEL_OPTIONAL
        put_u64(&mut f, 5, kind);
        if name == "pts_ns" {
            put_u64(&mut f, 9, 0); // oneof_index: the synthetic "_pts_ns"
        }
        put_bytes(&mut f, 10, json.as_bytes());
        if name == "pts_ns" {
            put_u64(&mut f, 17, 1); // proto3_optional
        }
        put_bytes(&mut message, 2, &f);
    }
    let mut oneof = Vec::new();
    put_bytes(&mut oneof, 1, b"_pts_ns");
    put_bytes(&mut message, 8, &oneof);
    let mut file = Vec::new();
    put_bytes(&mut file, 1, b"framering/FrameMeta.proto");
    put_bytes(&mut file, 2, b"framering");
    put_bytes(&mut file, 4, &message);
    put_bytes(&mut file, 12, b"proto3");
    let mut set = Vec::new();
    put_bytes(&mut set, 1, &file);
    set
}

// --------------------------------------------------------------------- CDR

/// Little-endian CDR, as ROS 2 writes it: a 4-byte encapsulation header,
/// then fields aligned to their size relative to the end of that header.
struct Cdr<'o> {
    out: &'o mut Vec<u8>,
}

impl Cdr<'_> {
    fn align(&mut self, n: usize) {
        while (self.out.len() - 4) % n != 0 {
            self.out.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &[u8]) {
        self.u32(s.len() as u32 + 1);
        self.out.extend_from_slice(s);
        self.out.push(0);
    }
    /// A byte sequence's length (its bytes follow).
    fn bytes_len(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
    }
    fn header(&mut self, stamp_ns: u64, frame_id: &[u8]) {
        self.u32((stamp_ns / 1_000_000_000) as u32);
        self.u32((stamp_ns % 1_000_000_000) as u32);
        self.string(frame_id);
    }
}

/// CDR_LE encapsulation.
const CDR_LE: [u8; 4] = [0, 1, 0, 0];

/// Encodes a `sensor_msgs/msg/Image` (CDR) into `out`, all but the bytes
/// of `m.data` (as [`encode_raw_image`]).
pub(crate) fn encode_ros_image(out: &mut Vec<u8>, m: &ImageMsg<'_>) {
    out.clear();
    out.extend_from_slice(&CDR_LE);
    let mut c = Cdr { out };
    c.header(m.stamp_ns.unwrap_or(0), m.frame_id);
    c.u32(m.height);
    c.u32(m.width);
    c.string(m.encoding);
    c.out.push(0); // is_bigendian
    c.u32(m.step);
    c.bytes_len(m.data);
}

/// Encodes a `sensor_msgs/msg/CompressedImage` (CDR) into `out`, all but
/// the bytes of `m.data` (as [`encode_raw_image`]).
pub(crate) fn encode_ros_compressed(out: &mut Vec<u8>, m: &ImageMsg<'_>) {
    out.clear();
    out.extend_from_slice(&CDR_LE);
    let mut c = Cdr { out };
    c.header(m.stamp_ns.unwrap_or(0), m.frame_id);
    c.string(m.encoding);
    c.bytes_len(m.data);
}

/// Reads CDR fields (either byte order).
struct CdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
}

impl<'a> CdrReader<'a> {
    fn new(buf: &'a [u8]) -> Option<Self> {
        let little = match buf.get(..2)? {
            [0, 1] | [0, 3] => true,
            [0, 0] | [0, 2] => false,
            _ => return None,
        };
        Some(CdrReader {
            buf,
            pos: 4,
            little,
        })
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        self.pos += (4 - (self.pos - 4) % 4) % 4;
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        Some(s.strip_suffix(&[0]).unwrap_or(s))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn header(&mut self, m: &mut ImageMsg<'a>) -> Option<()> {
        let sec = self.u32()?;
        let nsec = self.u32()?;
        m.stamp_ns = Some(u64::from(sec) * 1_000_000_000 + u64::from(nsec));
        m.frame_id = self.string()?;
        Some(())
    }
}

/// Decodes a `sensor_msgs/msg/Image` (CDR).
pub(crate) fn decode_ros_image(b: &[u8]) -> Result<ImageMsg<'_>, DecodeError> {
    decode_ros_image_with(b, false)
}

/// Decodes a `sensor_msgs/msg/Image`, or (`prefix_only`) its fields before
/// the data's length.
fn decode_ros_image_with(b: &[u8], prefix_only: bool) -> Result<ImageMsg<'_>, DecodeError> {
    (|| {
        let mut r = CdrReader::new(b)?;
        let mut m = ImageMsg::default();
        r.header(&mut m)?;
        m.height = r.u32()?;
        m.width = r.u32()?;
        m.encoding = r.string()?;
        m.big_endian = r.u8()? != 0;
        m.step = r.u32()?;
        if !prefix_only {
            m.data = r.bytes()?;
        }
        Some(m)
    })()
    .ok_or(DecodeError {
        schema: ROS_IMAGE,
        what: "malformed CDR",
    })
}

/// Where the pixels of a raw image message of `len` bytes start, given
/// its first bytes `head`: `(prefix, at, n)`: the fields before the pixels
/// are `head[..prefix]` (a message of their own: [`decode_raw_image`] /
/// [`decode_ros_image`] decode it, with empty data), the pixels are the `n`
/// bytes from `at`, and nothing but padding follows them. `None` when the
/// pixels are not the message's last field or start beyond `head` (then
/// decode the whole message).
pub(crate) fn split_raw_image(ros: bool, head: &[u8], len: usize) -> Option<(usize, usize, usize)> {
    if ros {
        let mut r = CdrReader::new(head)?;
        let mut m = ImageMsg::default();
        r.header(&mut m)?;
        r.u32()?;
        r.u32()?;
        r.string()?;
        r.u8()?;
        r.u32()?;
        let prefix = r.pos;
        let n = r.u32()? as usize;
        let at = r.pos;
        return (at.checked_add(n)? <= len).then_some((prefix, at, n));
    }
    let mut buf = head;
    loop {
        let key_at = head.len() - buf.len();
        let key = get_varint(&mut buf)?;
        let field = key >> 3;
        match (key & 7) as u8 {
            VARINT => {
                get_varint(&mut buf)?;
            }
            FIXED64 => buf = buf.get(8..)?,
            FIXED32 => buf = buf.get(4..)?,
            LEN => {
                let n = usize::try_from(get_varint(&mut buf)?).ok()?;
                let at = head.len() - buf.len();
                if field == 6 && at.checked_add(n)? == len {
                    return Some((key_at, at, n));
                }
                buf = buf.get(n..)?;
            }
            _ => return None,
        }
    }
}

/// Decodes the fields of a `sensor_msgs/msg/Image` before its pixels
/// (`split_raw_image`'s prefix): the message with empty data.
pub(crate) fn decode_ros_image_prefix(b: &[u8]) -> Result<ImageMsg<'_>, DecodeError> {
    decode_ros_image_with(b, true)
}

/// Decodes a `sensor_msgs/msg/CompressedImage` (CDR).
pub(crate) fn decode_ros_compressed(b: &[u8]) -> Result<ImageMsg<'_>, DecodeError> {
    (|| {
        let mut r = CdrReader::new(b)?;
        let mut m = ImageMsg::default();
        r.header(&mut m)?;
        m.encoding = r.string()?;
        m.data = r.bytes()?;
        Some(m)
    })()
    .ok_or(DecodeError {
        schema: ROS_COMPRESSED_IMAGE,
        what: "malformed CDR",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(data: &'a [u8]) -> ImageMsg<'a> {
        ImageMsg {
            stamp_ns: Some(1_700_000_000_123_456_789),
            frame_id: b"cam0",
            width: 3,
            height: 2,
            encoding: b"rgb8",
            big_endian: false,
            step: 9,
            data,
        }
    }

    fn same(a: &ImageMsg<'_>, b: &ImageMsg<'_>) {
        assert_eq!(
            (a.stamp_ns, a.frame_id, a.encoding, a.data),
            (b.stamp_ns, b.frame_id, b.encoding, b.data)
        );
    }

    #[test]
    fn image_messages_round_trip_in_every_schema() {
        let data: Vec<u8> = (0..18).collect();
        let m = sample(&data);
        let mut buf = Vec::new();
        encode_raw_image(&mut buf, &m);
        buf.extend_from_slice(m.data);
        let back = decode_raw_image(&buf).unwrap();
        same(&m, &back);
        assert_eq!((back.width, back.height, back.step), (3, 2, 9));
        encode_ros_image(&mut buf, &m);
        buf.extend_from_slice(m.data);
        let back = decode_ros_image(&buf).unwrap();
        same(&m, &back);
        assert_eq!((back.width, back.height, back.step), (3, 2, 9));
        encode_compressed_image(&mut buf, &m);
        buf.extend_from_slice(m.data);
        same(&m, &decode_compressed_image(&buf).unwrap());
        encode_ros_compressed(&mut buf, &m);
        buf.extend_from_slice(m.data);
        same(&m, &decode_ros_compressed(&buf).unwrap());
    }

    #[test]
    fn the_pixels_are_found_where_they_start_when_they_come_last() {
        let data: Vec<u8> = (0..18).collect();
        let m = sample(&data);
        for ros in [false, true] {
            let mut buf = Vec::new();
            if ros {
                encode_ros_image(&mut buf, &m);
            } else {
                encode_raw_image(&mut buf, &m);
            }
            let head_len = buf.len();
            buf.extend_from_slice(&data);
            // Only the first bytes are needed.
            let (prefix, at, n) = split_raw_image(ros, &buf[..head_len + 2], buf.len()).unwrap();
            assert_eq!((at, n), (head_len, data.len()), "ros: {ros}");
            let back = if ros {
                decode_ros_image_prefix(&buf[..prefix]).unwrap()
            } else {
                decode_raw_image(&buf[..prefix]).unwrap()
            };
            assert_eq!((back.width, back.height, back.step), (3, 2, 9));
            assert_eq!(back.encoding, m.encoding);
            assert!(back.data.is_empty());
        }
        // A field after the pixels (as protobuf libraries order
        // foxglove.RawImage: frame_id is field 7): read it whole instead.
        let mut buf = Vec::new();
        put_fixed32(&mut buf, 2, 3);
        put_bytes(&mut buf, 6, &data);
        put_bytes(&mut buf, 7, b"cam");
        assert_eq!(split_raw_image(false, &buf, buf.len()), None);
        // Cut before the pixels start: read it whole.
        assert_eq!(split_raw_image(false, &buf[..3], buf.len()), None);
    }

    #[test]
    fn frame_meta_round_trips_with_and_without_pts() {
        for pts in [None, Some(-40_000_000), Some(0)] {
            let m = FrameMetaMsg {
                seq: 77,
                capture_ns: 5,
                publish_ns: 6,
                pts_ns: pts,
                source: b"in.mp4",
                src_width: 640,
                src_height: 480,
                user_meta: b"{\"k\":1}",
            };
            let mut buf = Vec::new();
            encode_frame_meta(&mut buf, &m);
            let b = decode_frame_meta(&buf).unwrap();
            assert_eq!(b.pts_ns, pts);
            assert_eq!(
                (b.seq, b.source, b.user_meta),
                (77, &b"in.mp4"[..], m.user_meta)
            );
        }
    }

    #[test]
    fn truncated_or_garbage_messages_are_errors_not_panics() {
        let data = [7u8; 12];
        let mut buf = Vec::new();
        encode_raw_image(&mut buf, &sample(&data));
        buf.extend_from_slice(&data);
        for n in [1, 5, buf.len() - 1] {
            // A cut inside a length-delimited field is malformed.
            let _ = decode_raw_image(&buf[..n]);
        }
        assert!(decode_raw_image(&buf[..buf.len() - 1]).is_err());
        encode_ros_image(&mut buf, &sample(&data));
        buf.extend_from_slice(&data);
        assert!(decode_ros_image(&buf[..buf.len() - 1]).is_err());
        assert!(decode_ros_image(&[0xff; 3]).is_err());
        assert!(decode_frame_meta(&[0xff; 11]).is_err());
    }
}
