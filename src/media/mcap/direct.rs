//! An MCAP writer for uncompressed chunks that writes a message's large
//! part (a frame's pixels) from the caller's buffer straight to the file:
//! one `writev` per frame (record headers, the message's encoded fields,
//! then the pixels), no copy into a message or chunk buffer, no CRC pass.
//!
//! The records are those of the MCAP spec (little-endian; CRC fields are 0,
//! which the spec defines as "not computed"): header, schemas and channels,
//! then chunks each followed by its message indexes; [`DirectWriter::finish`]
//! adds the data end, a summary (schemas, channels, statistics, chunk
//! indexes), summary offsets and the footer, so readers can seek. A chunk
//! is started with a placeholder header (length `u64::MAX`) that
//! [`DirectWriter::close_chunk`] overwrites in place once its size is
//! known: a writer killed mid-chunk leaves a file whose earlier chunks every
//! reader streams, as the `mcap` crate's writer does. Compressed chunks are
//! the `mcap` crate's.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;

/// The file's first and last bytes.
const MAGIC: &[u8] = &[0x89, b'M', b'C', b'A', b'P', 0x30, b'\r', b'\n'];

const OP_HEADER: u8 = 0x01;
const OP_FOOTER: u8 = 0x02;
const OP_SCHEMA: u8 = 0x03;
const OP_CHANNEL: u8 = 0x04;
const OP_MESSAGE: u8 = 0x05;
const OP_CHUNK: u8 = 0x06;
const OP_MESSAGE_INDEX: u8 = 0x07;
const OP_CHUNK_INDEX: u8 = 0x08;
const OP_STATISTICS: u8 = 0x0B;
const OP_SUMMARY_OFFSET: u8 = 0x0E;
const OP_DATA_END: u8 = 0x0F;

/// A chunk record's opcode, length and fields before its records: start
/// and end times, uncompressed size, CRC, compression (empty), records'
/// length.
const CHUNK_HEAD: usize = 1 + 8 + 8 + 8 + 8 + 4 + 4 + 8;
/// A message record's opcode, length and header fields.
const MESSAGE_HEAD: u64 = 2 + 4 + 8 + 8;

/// A message's MCAP header fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub channel: u16,
    pub sequence: u32,
    pub log_time: u64,
    pub publish_time: u64,
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s);
}
/// Appends a record: opcode, length, then what `body` writes.
fn record(b: &mut Vec<u8>, op: u8, body: impl FnOnce(&mut Vec<u8>)) {
    b.push(op);
    let at = b.len();
    put_u64(b, 0);
    body(b);
    let len = (b.len() - at - 8) as u64;
    b[at..at + 8].copy_from_slice(&len.to_le_bytes());
}

/// The chunk being written.
#[derive(Debug)]
struct OpenChunk {
    /// File offset of the chunk record.
    start: u64,
    /// File offset of its first message record.
    records: u64,
    /// Earliest and latest log time.
    times: (u64, u64),
}

/// A channel's messages: for the statistics and the chunk's index.
#[derive(Debug)]
struct ChannelState {
    id: u16,
    count: u64,
    /// (log time, offset in the chunk's records) of the open chunk.
    index: Vec<(u64, u64)>,
}

/// An MCAP file being written with uncompressed chunks.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    file: File,
    /// Bytes in the file, plus those in `head` not written yet.
    pos: u64,
    /// Records waiting for the next write (reused).
    head: Vec<u8>,
    /// The schema and channel records, repeated in the summary.
    schemas: Vec<u8>,
    channels: Vec<u8>,
    schema_count: u16,
    states: Vec<ChannelState>,
    chunk: Option<OpenChunk>,
    /// The chunk index records of the closed chunks.
    chunk_indexes: Vec<u8>,
    chunk_count: u32,
    /// Earliest and latest log time of the file.
    times: Option<(u64, u64)>,
    /// Reused: a chunk's message indexes.
    index_buf: Vec<u8>,
}

impl DirectWriter {
    /// Starts a file: magic and header record.
    pub(crate) fn new(file: File, profile: &str, library: &str) -> DirectWriter {
        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(MAGIC);
        record(&mut head, OP_HEADER, |b| {
            put_str(b, profile.as_bytes());
            put_str(b, library.as_bytes());
        });
        DirectWriter {
            file,
            pos: head.len() as u64,
            head,
            schemas: Vec::new(),
            channels: Vec::new(),
            schema_count: 0,
            states: Vec::new(),
            chunk: None,
            chunk_indexes: Vec::new(),
            chunk_count: 0,
            times: None,
            index_buf: Vec::new(),
        }
    }

    /// Adds a schema (ids from 1); returns its id.
    pub(crate) fn add_schema(&mut self, name: &str, encoding: &str, data: &[u8]) -> u16 {
        self.schema_count += 1;
        let id = self.schema_count;
        let at = self.schemas.len();
        record(&mut self.schemas, OP_SCHEMA, |b| {
            put_u16(b, id);
            put_str(b, name.as_bytes());
            put_str(b, encoding.as_bytes());
            put_str(b, data);
        });
        let rec = &self.schemas[at..];
        self.head.extend_from_slice(rec);
        self.pos += rec.len() as u64;
        id
    }

    /// Adds a channel (ids from 0) with its metadata (sorted by key);
    /// returns its id.
    pub(crate) fn add_channel(
        &mut self,
        schema: u16,
        topic: &str,
        message_encoding: &str,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> u16 {
        let id = self.states.len() as u16;
        let at = self.channels.len();
        record(&mut self.channels, OP_CHANNEL, |b| {
            put_u16(b, id);
            put_u16(b, schema);
            put_str(b, topic.as_bytes());
            put_str(b, message_encoding.as_bytes());
            let len: usize = metadata.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
            put_u32(b, len as u32);
            for (k, v) in metadata {
                put_str(b, k.as_bytes());
                put_str(b, v.as_bytes());
            }
        });
        let rec = &self.channels[at..];
        self.head.extend_from_slice(rec);
        self.pos += rec.len() as u64;
        self.states.push(ChannelState {
            id,
            count: 0,
            index: Vec::new(),
        });
        id
    }

    /// Adds a message whose data is `prefix` followed by `data` to the
    /// open chunk (opening one). `prefix` is copied; `data` is written
    /// from where it is, together with everything not written yet. An
    /// empty `data` only queues the message for the next write.
    pub(crate) fn message(&mut self, h: Header, prefix: &[u8], data: &[u8]) -> io::Result<()> {
        let Some(state) = self.states.get_mut(usize::from(h.channel)) else {
            return Err(io::Error::other(format!("no channel {}", h.channel)));
        };
        let chunk = match &mut self.chunk {
            Some(c) => c,
            None => {
                // A placeholder header, overwritten by close_chunk().
                self.head.push(OP_CHUNK);
                self.head.extend_from_slice(&[0xff; 8]);
                self.head.extend_from_slice(&[0; CHUNK_HEAD - 9]);
                let start = self.pos;
                self.pos += CHUNK_HEAD as u64;
                self.chunk.insert(OpenChunk {
                    start,
                    records: self.pos,
                    times: (h.log_time, h.log_time),
                })
            }
        };
        chunk.times = (chunk.times.0.min(h.log_time), chunk.times.1.max(h.log_time));
        state.index.push((h.log_time, self.pos - chunk.records));
        state.count += 1;
        self.times = Some(match self.times {
            None => (h.log_time, h.log_time),
            Some((a, b)) => (a.min(h.log_time), b.max(h.log_time)),
        });
        let len = MESSAGE_HEAD + (prefix.len() + data.len()) as u64;
        self.head.push(OP_MESSAGE);
        put_u64(&mut self.head, len);
        put_u16(&mut self.head, h.channel);
        put_u32(&mut self.head, h.sequence);
        put_u64(&mut self.head, h.log_time);
        put_u64(&mut self.head, h.publish_time);
        self.head.extend_from_slice(prefix);
        self.pos += 9 + len;
        if !data.is_empty() {
            write_all_vectored(
                &mut self.file,
                &mut [IoSlice::new(&self.head), IoSlice::new(data)],
            )?;
            self.head.clear();
        }
        Ok(())
    }

    /// Writes what is queued.
    fn flush_head(&mut self) -> io::Result<()> {
        if !self.head.is_empty() {
            self.file.write_all(&self.head)?;
            self.head.clear();
        }
        Ok(())
    }

    /// Closes the open chunk: writes its header in place and its message
    /// indexes after it. Its messages are then in the file (written to the
    /// OS). Without an open chunk, writes what is queued.
    pub(crate) fn close_chunk(&mut self) -> io::Result<()> {
        self.flush_head()?;
        let Some(chunk) = self.chunk.take() else {
            return Ok(());
        };
        let records_len = self.pos - chunk.records;
        let mut h = Vec::with_capacity(CHUNK_HEAD);
        h.push(OP_CHUNK);
        put_u64(&mut h, (CHUNK_HEAD as u64 - 9) + records_len);
        put_u64(&mut h, chunk.times.0);
        put_u64(&mut h, chunk.times.1);
        put_u64(&mut h, records_len); // uncompressed size
        put_u32(&mut h, 0); // CRC: not computed
        put_str(&mut h, b""); // compression: none
        put_u64(&mut h, records_len);
        self.file.write_all_at(&h, chunk.start)?;

        let index_start = self.pos;
        self.index_buf.clear();
        let mut offsets = Vec::with_capacity(self.states.len());
        for s in &mut self.states {
            if s.index.is_empty() {
                continue;
            }
            offsets.push((s.id, index_start + self.index_buf.len() as u64));
            record(&mut self.index_buf, OP_MESSAGE_INDEX, |b| {
                put_u16(b, s.id);
                put_u32(b, (s.index.len() * 16) as u32);
                for &(t, o) in &s.index {
                    put_u64(b, t);
                    put_u64(b, o);
                }
            });
            s.index.clear();
        }
        self.file.write_all(&self.index_buf)?;
        let index_len = self.index_buf.len() as u64;
        self.pos += index_len;
        record(&mut self.chunk_indexes, OP_CHUNK_INDEX, |b| {
            put_u64(b, chunk.times.0);
            put_u64(b, chunk.times.1);
            put_u64(b, chunk.start);
            put_u64(b, index_start - chunk.start);
            put_u32(b, (offsets.len() * 10) as u32);
            for (id, at) in &offsets {
                put_u16(b, *id);
                put_u64(b, *at);
            }
            put_u64(b, index_len);
            put_str(b, b"");
            put_u64(b, records_len);
            put_u64(b, records_len);
        });
        self.chunk_count += 1;
        Ok(())
    }

    /// Bytes in the file (once written).
    pub(crate) fn len(&self) -> u64 {
        self.pos
    }

    /// Closes the open chunk, writes the data end, the summary and the
    /// footer; returns the file.
    pub(crate) fn finish(mut self) -> io::Result<File> {
        self.close_chunk()?;
        let mut b = std::mem::take(&mut self.head);
        record(&mut b, OP_DATA_END, |b| put_u32(b, 0));
        let summary_start = self.pos + b.len() as u64;
        let mut groups: Vec<(u8, u64, u64)> = Vec::new();
        let mut group = |b: &mut Vec<u8>, op: u8, bytes: &[u8]| {
            if !bytes.is_empty() {
                groups.push((op, self.pos + b.len() as u64, bytes.len() as u64));
                b.extend_from_slice(bytes);
            }
        };
        group(&mut b, OP_SCHEMA, &self.schemas);
        group(&mut b, OP_CHANNEL, &self.channels);
        let mut stats = Vec::new();
        record(&mut stats, OP_STATISTICS, |s| {
            let (first, last) = self.times.unwrap_or((0, 0));
            put_u64(s, self.states.iter().map(|c| c.count).sum());
            put_u16(s, self.schema_count);
            put_u32(s, self.states.len() as u32);
            put_u32(s, 0); // attachments
            put_u32(s, 0); // metadata
            put_u32(s, self.chunk_count);
            put_u64(s, first);
            put_u64(s, last);
            put_u32(s, (self.states.len() * 10) as u32);
            for c in &self.states {
                put_u16(s, c.id);
                put_u64(s, c.count);
            }
        });
        group(&mut b, OP_STATISTICS, &stats);
        group(&mut b, OP_CHUNK_INDEX, &self.chunk_indexes);
        let offsets_start = self.pos + b.len() as u64;
        for (op, start, len) in groups {
            record(&mut b, OP_SUMMARY_OFFSET, |b| {
                b.push(op);
                put_u64(b, start);
                put_u64(b, len);
            });
        }
        record(&mut b, OP_FOOTER, |b| {
            put_u64(b, summary_start);
            put_u64(b, offsets_start);
            put_u32(b, 0); // CRC: not computed
        });
        b.extend_from_slice(MAGIC);
        self.file.write_all(&b)?;
        self.pos += b.len() as u64;
        Ok(self.file)
    }
}

/// Writes all of `bufs` (retrying short writes).
fn write_all_vectored(file: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A file the `mcap` crate reads back: messages, summary, indexes.
    #[test]
    fn the_mcap_crate_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("framering-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.mcap");
        let file = File::create(&path).unwrap();
        let mut w = DirectWriter::new(file, "", "test");
        let s = w.add_schema("s", "protobuf", b"desc");
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let a = w.add_channel(s, "/a", "protobuf", &meta);
        let b = w.add_channel(s, "/b", "protobuf", &BTreeMap::new());
        let mut sent = Vec::new();
        for i in 0..7u32 {
            let h = |channel| Header {
                channel,
                sequence: i,
                log_time: 1000 + u64::from(i),
                publish_time: 2000 + u64::from(i),
            };
            w.message(h(a), &[i as u8; 3], &[]).unwrap();
            let data = vec![i as u8 + 100; 50 + i as usize];
            w.message(h(b), b"pre", &data).unwrap();
            sent.push((a, [i as u8; 3].to_vec()));
            sent.push((b, [b"pre".as_slice(), &data].concat()));
            if i % 3 == 2 {
                w.close_chunk().unwrap();
            }
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
        assert_eq!(summary.chunk_indexes.len(), 3);
        let stats = summary.stats.clone().unwrap();
        assert_eq!(stats.message_count, 14);
        assert_eq!(
            (stats.message_start_time, stats.message_end_time),
            (1000, 1006)
        );
        assert_eq!(summary.channels[&a].metadata, meta);
        let got: Vec<(u16, Vec<u8>)> = mcap::MessageStream::new(&bytes)
            .unwrap()
            .map(|m| {
                let m = m.unwrap();
                (m.channel.id, m.data.into_owned())
            })
            .collect();
        assert_eq!(got, sent);
        // Through the chunk and message indexes too.
        for ci in &summary.chunk_indexes {
            let idx = summary.read_message_indexes(&bytes, ci).unwrap();
            assert_eq!(idx.len(), 2);
            for (_, entries) in idx {
                for e in entries {
                    summary.seek_message(&bytes, ci, &e).unwrap();
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
