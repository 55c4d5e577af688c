//! What travels beside the pixels: the attachment of every frame (and of the
//! end-of-stream marker), the geometry the sender serves and the receivers'
//! acknowledgements.
//!
//! All are little-endian, start with a magic and a version, and are checked
//! field by field on decode: they come from the network, so a bad one is a
//! [`WireError`], never a panic or an out-of-range shape.

use framering_ring::{Dtype, FrameShape};

/// Magic of a frame attachment.
const FRAME_MAGIC: [u8; 4] = *b"FRBF";
/// Magic of a geometry reply.
const GEOMETRY_MAGIC: [u8; 4] = *b"FRBG";
/// Magic of an acknowledgement.
const ACK_MAGIC: [u8; 4] = *b"FRBA";
/// Version of the encodings; a receiver refuses any other (2: the stream
/// id in each attachment, acknowledgements with the receiver's id; 3: the
/// `kept` flag of a frame).
pub const VERSION: u8 = 3;
/// Longest source name kept (as the ring keeps it).
pub const MAX_SOURCE: usize = 96;

/// A message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the fields need.
    #[error("truncated {what}: {len} bytes")]
    Truncated {
        /// Which message.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Not one of ours.
    #[error("not a framering {what} (bad magic)")]
    Magic {
        /// Which message.
        what: &'static str,
    },
    /// Another version of the bridge.
    #[error("{what} version {got}, this bridge speaks {VERSION}: run the same framering version on both hosts")]
    Version {
        /// Which message.
        what: &'static str,
        /// The version found.
        got: u8,
    },
    /// A field out of range.
    #[error("invalid {field}: {value}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Bytes after the last field.
    #[error("{what}: {extra} trailing bytes")]
    Trailing {
        /// Which message.
        what: &'static str,
        /// How many.
        extra: usize,
    },
}

/// What a message on the stream's key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A frame: the payload is its pixels.
    Frame,
    /// The sender's ring ended its stream (empty payload).
    End,
    /// The sender answered a hello of position `seq` (`u64::MAX`: none):
    /// the frames it still had after it were sent again just before
    /// (empty payload).
    Resume,
}

/// The attachment of each message: the frame's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame or end of stream.
    pub kind: Kind,
    /// The sender's stream: its ring (name and producer) hashed, the same
    /// for a sender restarted on that ring, whose seqs continue.
    pub stream: u64,
    /// The frame's seq in the sender's ring.
    pub seq: u64,
    /// The sender keeps the frame until the receivers acknowledge it
    /// (lossless): a receiver that finds frames missing before it asks for
    /// them again instead of counting them lost.
    pub kept: bool,
    /// Capture time, CLOCK_REALTIME ns.
    pub capture_ns: u64,
    /// Presentation timestamp, if any.
    pub pts_ns: Option<i64>,
    /// The frame's shape and dtype.
    pub shape: FrameShape,
    /// Source size before fitting.
    pub src_size: (u32, u32),
    /// Source name (at most [`MAX_SOURCE`] bytes).
    pub source: Vec<u8>,
    /// The frame's user metadata.
    pub user_meta: Vec<u8>,
}

/// A receiver's word to the sender on `<key>/@ack`: every frame of
/// `stream` up to `seq` is in its ring. A `hello` (sent when it starts
/// following a sender, repeated until a frame arrives) asks the sender to
/// send again what it keeps after `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The receiver's id, kept across its restarts (with its position).
    pub receiver: u64,
    /// A hello rather than a plain acknowledgement.
    pub hello: bool,
    /// The stream its position belongs to (0 with `seq` `None`).
    pub stream: u64,
    /// The last seq of `stream` in its ring; `None`: it has none.
    pub seq: Option<u64>,
}

/// The sender's ring geometry, served on `<key>/@geometry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Frame shape and dtype.
    pub shape: FrameShape,
    /// Slots of the sender's ring.
    pub slots: u32,
    /// User metadata capacity per frame.
    pub user_meta_bytes: u32,
}

fn dtype_code(d: Dtype) -> u8 {
    match d {
        Dtype::U8 => 0,
        Dtype::U16 => 1,
        Dtype::F32 => 2,
    }
}

fn dtype_of(code: u8) -> Result<Dtype, WireError> {
    match code {
        0 => Ok(Dtype::U8),
        1 => Ok(Dtype::U16),
        2 => Ok(Dtype::F32),
        c => Err(WireError::Field {
            field: "dtype",
            value: c.into(),
        }),
    }
}

/// A checked little-endian reader over untrusted bytes.
struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8], magic: [u8; 4]) -> Result<Self, WireError> {
        let mut r = Reader {
            what,
            bytes,
            len: bytes.len(),
        };
        if r.take(4)? != magic {
            return Err(WireError::Magic { what });
        }
        let v = r.u8()?;
        if v != VERSION {
            return Err(WireError::Version { what, got: v });
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated {
                what: self.what,
                len: self.len,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WireError::Field {
                field,
                value: v.into(),
            }),
        }
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(WireError::Field {
                field,
                value: n as u64,
            });
        }
        self.take(n)
    }

    fn shape(&mut self) -> Result<FrameShape, WireError> {
        let height = self.u32()?;
        let width = self.u32()?;
        let channels = self.u32()?;
        let dtype = dtype_of(self.u8()?)?;
        let max = framering_ring::limits::MAX_DIM;
        for (field, v) in [("height", height), ("width", width)] {
            if v == 0 || v > max {
                return Err(WireError::Field {
                    field,
                    value: v.into(),
                });
            }
        }
        if !(1..=4).contains(&channels) {
            return Err(WireError::Field {
                field: "channels",
                value: channels.into(),
            });
        }
        Ok(FrameShape::new(height, width, channels).with_dtype(dtype))
    }

    fn end(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                what: self.what,
                extra: self.bytes.len(),
            })
        }
    }
}

fn put_shape(out: &mut Vec<u8>, s: FrameShape) {
    out.extend_from_slice(&s.height.to_le_bytes());
    out.extend_from_slice(&s.width.to_le_bytes());
    out.extend_from_slice(&s.channels.to_le_bytes());
    out.push(dtype_code(s.dtype));
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8], max: usize) {
    let b = &b[..b.len().min(max).min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

impl FrameHeader {
    /// Encodes it (a source longer than [`MAX_SOURCE`] is truncated).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.source.len() + self.user_meta.len());
        out.extend_from_slice(&FRAME_MAGIC);
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Frame => 0,
            Kind::End => 1,
            Kind::Resume => 2,
        });
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.kept as u8);
        out.extend_from_slice(&self.capture_ns.to_le_bytes());
        out.push(self.pts_ns.is_some() as u8);
        out.extend_from_slice(&self.pts_ns.unwrap_or(0).to_le_bytes());
        put_shape(&mut out, self.shape);
        out.extend_from_slice(&self.src_size.0.to_le_bytes());
        out.extend_from_slice(&self.src_size.1.to_le_bytes());
        put_bytes(&mut out, &self.source, MAX_SOURCE);
        put_bytes(&mut out, &self.user_meta, u16::MAX as usize);
        out
    }

    /// Decodes and checks an attachment.
    pub fn decode(bytes: &[u8]) -> Result<FrameHeader, WireError> {
        let mut r = Reader::new("frame attachment", bytes, FRAME_MAGIC)?;
        let kind = match r.u8()? {
            0 => Kind::Frame,
            1 => Kind::End,
            2 => Kind::Resume,
            k => {
                return Err(WireError::Field {
                    field: "kind",
                    value: k.into(),
                })
            }
        };
        let stream = r.u64()?;
        let seq = r.u64()?;
        let kept = r.flag("kept flag")?;
        let capture_ns = r.u64()?;
        let has_pts = r.flag("pts flag")?;
        let pts = r.u64()? as i64;
        let pts_ns = has_pts.then_some(pts);
        let shape = r.shape()?;
        let src_size = (r.u32()?, r.u32()?);
        let source = r.bytes("source length", MAX_SOURCE)?.to_vec();
        let user_meta = r
            .bytes(
                "user metadata length",
                framering_ring::limits::MAX_USER_META as usize,
            )?
            .to_vec();
        r.end()?;
        Ok(FrameHeader {
            kind,
            stream,
            seq,
            kept,
            capture_ns,
            pts_ns,
            shape,
            src_size,
            source,
            user_meta,
        })
    }
}

impl Ack {
    /// Encodes it (31 bytes).
    pub fn encode(&self) -> [u8; 31] {
        let mut out = [0u8; 31];
        out[..4].copy_from_slice(&ACK_MAGIC);
        out[4] = VERSION;
        out[5] = self.hello as u8;
        out[6..14].copy_from_slice(&self.receiver.to_le_bytes());
        out[14..22].copy_from_slice(&self.stream.to_le_bytes());
        out[22] = self.seq.is_some() as u8;
        out[23..31].copy_from_slice(&self.seq.unwrap_or(0).to_le_bytes());
        out
    }

    /// Decodes and checks an acknowledgement.
    pub fn decode(bytes: &[u8]) -> Result<Ack, WireError> {
        let mut r = Reader::new("acknowledgement", bytes, ACK_MAGIC)?;
        let hello = r.flag("hello flag")?;
        let receiver = r.u64()?;
        let stream = r.u64()?;
        let has_seq = r.flag("seq flag")?;
        let seq = r.u64()?;
        r.end()?;
        Ok(Ack {
            receiver,
            hello,
            stream,
            seq: has_seq.then_some(seq),
        })
    }
}

impl Geometry {
    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&GEOMETRY_MAGIC);
        out.push(VERSION);
        put_shape(&mut out, self.shape);
        out.extend_from_slice(&self.slots.to_le_bytes());
        out.extend_from_slice(&self.user_meta_bytes.to_le_bytes());
        out
    }

    /// Decodes and checks a geometry reply.
    pub fn decode(bytes: &[u8]) -> Result<Geometry, WireError> {
        let mut r = Reader::new("geometry", bytes, GEOMETRY_MAGIC)?;
        let shape = r.shape()?;
        let slots = r.u32()?;
        let user_meta_bytes = r.u32()?;
        if slots == 0 || slots > framering_ring::limits::MAX_SLOTS {
            return Err(WireError::Field {
                field: "slots",
                value: slots.into(),
            });
        }
        if user_meta_bytes > framering_ring::limits::MAX_USER_META {
            return Err(WireError::Field {
                field: "user_meta_bytes",
                value: user_meta_bytes.into(),
            });
        }
        r.end()?;
        Ok(Geometry {
            shape,
            slots,
            user_meta_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            kind: Kind::Frame,
            stream: 0x5eed_cafe,
            seq: 41,
            kept: true,
            capture_ns: 1_700_000_000_123_456_789,
            pts_ns: Some(-40_000),
            shape: FrameShape::new(720, 1080, 3).with_dtype(Dtype::U16),
            src_size: (1920, 1080),
            source: b"cam0/000041.jpg".to_vec(),
            user_meta: br#"{"exposure_us": 8000}"#.to_vec(),
        }
    }

    #[test]
    fn bridge_wire_round_trips() {
        let h = header();
        assert_eq!(FrameHeader::decode(&h.encode()).unwrap(), h);
        let end = FrameHeader {
            kind: Kind::End,
            pts_ns: None,
            ..header()
        };
        assert_eq!(FrameHeader::decode(&end.encode()).unwrap(), end);
        let g = Geometry {
            shape: FrameShape::new(2, 3, 4).with_dtype(Dtype::F32),
            slots: 8,
            user_meta_bytes: 256,
        };
        assert_eq!(Geometry::decode(&g.encode()).unwrap(), g);
        for a in [
            Ack {
                receiver: 7,
                hello: true,
                stream: 9,
                seq: None,
            },
            Ack {
                receiver: u64::MAX,
                hello: false,
                stream: 1,
                seq: Some(41),
            },
        ] {
            assert_eq!(Ack::decode(&a.encode()).unwrap(), a);
        }
    }

    #[test]
    fn bridge_wire_refuses_garbage_without_panicking() {
        let good = header().encode();
        // Every truncation is an error.
        for n in 0..good.len() {
            assert!(FrameHeader::decode(&good[..n]).is_err(), "prefix {n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(
            FrameHeader::decode(&extra),
            Err(WireError::Trailing { extra: 1, .. })
        ));
        let mut next = good.clone();
        next[4] = VERSION + 1;
        assert!(matches!(
            FrameHeader::decode(&next),
            Err(WireError::Version { got, .. }) if got == VERSION + 1
        ));
        // Every truncated acknowledgement is an error too.
        let ack = Ack {
            receiver: 1,
            hello: false,
            stream: 2,
            seq: Some(3),
        }
        .encode();
        for n in 0..ack.len() {
            assert!(Ack::decode(&ack[..n]).is_err(), "ack prefix {n}");
        }
        let mut bad_flag = ack;
        bad_flag[5] = 2;
        assert!(matches!(
            Ack::decode(&bad_flag),
            Err(WireError::Field {
                field: "hello flag",
                ..
            })
        ));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&magic),
            Err(WireError::Magic { .. })
        ));
        // Shapes out of range are refused.
        for shape in [
            FrameShape::new(0, 1, 1),
            FrameShape::new(1, 1, 5),
            FrameShape::new(framering_ring::limits::MAX_DIM + 1, 1, 1),
        ] {
            let h = FrameHeader { shape, ..header() };
            assert!(FrameHeader::decode(&h.encode()).is_err(), "{shape:?}");
        }
        // A bad dtype code.
        let mut dt = good.clone();
        // magic, version, kind, stream, seq, kept, capture, pts flag, pts, h w c.
        let dtype_at = 4 + 1 + 1 + 8 + 8 + 1 + 8 + 1 + 8 + 12;
        dt[dtype_at] = 9;
        assert!(matches!(
            FrameHeader::decode(&dt),
            Err(WireError::Field { field: "dtype", .. })
        ));
        // Random bytes never panic.
        let mut x = 0x1234_5678_u64;
        for len in 0..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 56) as u8
                })
                .collect();
            let _ = FrameHeader::decode(&junk);
            let _ = Geometry::decode(&junk);
            let _ = Ack::decode(&junk);
        }
        let mut g = Geometry {
            shape: FrameShape::new(2, 2, 1),
            slots: 8,
            user_meta_bytes: 0,
        }
        .encode();
        let n = g.len();
        g[n - 8..n - 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            Geometry::decode(&g),
            Err(WireError::Field { field: "slots", .. })
        ));
    }
}
