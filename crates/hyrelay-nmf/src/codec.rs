//! Incremental decoder and encoder for framing records.

use crate::{Error, Limits, Record};

/// Largest value of a record size integer (2³¹ − 1).
pub const MB31_MAX: u32 = 0x7FFF_FFFF;

enum Mb31 {
    Value(u32, usize),
    Incomplete,
}

fn decode_mb31(data: &[u8], offset: u64) -> Result<Mb31, Error> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some(&b) = data.get(i) else {
            return Ok(Mb31::Incomplete);
        };
        if i == 4 {
            if b & 0xF8 != 0 {
                return Err(Error::InvalidSize { offset });
            }
            return Ok(Mb31::Value(value | (u32::from(b) << 28), 5));
        }
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Mb31::Value(value, i + 1));
        }
    }
    Err(Error::InvalidSize { offset })
}

/// Append the minimal record-size encoding of `value` (masked to 31 bits).
pub fn encode_size(value: u32, out: &mut Vec<u8>) {
    let mut v = value & MB31_MAX;
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Incremental framing decoder: feed bytes as they arrive (any split), take records.
///
/// Sizes are checked against [`Limits`] on the size prefix, before any body byte is
/// buffered for the record. After an UpgradeRequest or UpgradeResponse the stream carries
/// the upgrade protocol (TLS / NegotiateStream), so the decoder turns *opaque*: it yields
/// no more records and hands buffered bytes out through [`Decoder::take_opaque`] until
/// [`Decoder::resume`] is called for the (decrypted) inner stream.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    base: u64,
    limits: Limits,
    in_unsized: bool,
    unsized_total: usize,
    opaque: bool,
    failed: bool,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            limits,
            in_unsized: false,
            unsized_total: 0,
            opaque: false,
            failed: false,
        }
    }

    /// Append received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Stream offset of the next undecoded byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Number of buffered, not yet decoded bytes.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True after an upgrade record (see the type docs).
    pub fn is_opaque(&self) -> bool {
        self.opaque
    }

    /// True while inside an UnsizedEnvelope.
    pub fn in_unsized_envelope(&self) -> bool {
        self.in_unsized
    }

    /// Take the buffered bytes that follow an upgrade record (opaque mode only).
    pub fn take_opaque(&mut self) -> Vec<u8> {
        if !self.opaque {
            return Vec::new();
        }
        let out = self.buf[self.pos..].to_vec();
        self.base += self.buf.len() as u64 - self.pos as u64;
        self.buf.clear();
        self.pos = 0;
        out
    }

    /// Enter opaque mode: everything from the next byte on belongs to another protocol
    /// (after an upgrade, or the raw message of singleton-sized mode).
    pub fn enter_opaque(&mut self) {
        self.opaque = true;
    }

    /// Leave opaque mode: the next bytes fed are framing records again (the inner stream
    /// of the completed upgrade). Any opaque bytes still buffered are discarded.
    pub fn resume(&mut self) {
        self.take_opaque();
        self.opaque = false;
    }

    /// At end of stream: an error if a record was cut off.
    pub fn finish(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed {
                offset: self.offset(),
            });
        }
        if self.buffered() > 0 && !self.opaque || self.in_unsized {
            return Err(Error::PrematureEof {
                offset: self.base + self.buf.len() as u64,
            });
        }
        Ok(())
    }

    /// The next complete record, `Ok(None)` if more bytes are needed (or the decoder is
    /// opaque). After an error the decoder stays failed.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.failed {
            return Err(Error::Failed {
                offset: self.offset(),
            });
        }
        if self.opaque {
            return Ok(None);
        }
        match self.parse() {
            Ok(Some((rec, used))) => {
                self.pos += used;
                match rec {
                    Record::UpgradeRequest(_) | Record::UpgradeResponse => self.opaque = true,
                    _ => {}
                }
                Ok(Some(rec))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn parse(&mut self) -> Result<Option<(Record, usize)>, Error> {
        let data = &self.buf[self.pos..];
        let off = self.offset();
        if self.in_unsized {
            let (size, n) = match decode_mb31(data, off)? {
                Mb31::Value(v, n) => (v as usize, n),
                Mb31::Incomplete => return Ok(None),
            };
            if size == 0 {
                self.in_unsized = false;
                return Ok(Some((Record::UnsizedEnvelopeEnd, n)));
            }
            let total = self.unsized_total.saturating_add(size);
            if total > self.limits.max_message_size {
                return Err(Error::TooLarge {
                    offset: off,
                    what: "unsized envelope",
                    size: total as u64,
                    max: self.limits.max_message_size as u64,
                });
            }
            let Some(body) = data.get(n..n + size) else {
                return Ok(None);
            };
            let rec = Record::UnsizedChunk(body.to_vec());
            self.unsized_total = total;
            return Ok(Some((rec, n + size)));
        }
        let Some(&t) = data.first() else {
            return Ok(None);
        };
        let rest = &data[1..];
        let fixed = |n: usize| rest.get(..n);
        Ok(match t {
            0x00 => fixed(2).map(|b| {
                (
                    Record::Version {
                        major: b[0],
                        minor: b[1],
                    },
                    3,
                )
            }),
            0x01 => fixed(1).map(|b| (Record::Mode(b[0]), 2)),
            0x02 => self
                .string(rest, off + 1, self.limits.max_via, "via")?
                .map(|(s, n)| (Record::Via(s), n + 1)),
            0x03 => fixed(1).map(|b| (Record::KnownEncoding(b[0]), 2)),
            0x04 => self
                .string(rest, off + 1, self.limits.max_content_type, "content type")?
                .map(|(s, n)| (Record::ExtensibleEncoding(s), n + 1)),
            0x05 => {
                self.in_unsized = true;
                self.unsized_total = 0;
                Some((Record::UnsizedEnvelopeStart, 1))
            }
            0x06 => {
                let (size, n) = match decode_mb31(rest, off + 1)? {
                    Mb31::Value(v, n) => (v as usize, n),
                    Mb31::Incomplete => return Ok(None),
                };
                if size > self.limits.max_message_size {
                    return Err(Error::TooLarge {
                        offset: off + 1,
                        what: "sized envelope",
                        size: size as u64,
                        max: self.limits.max_message_size as u64,
                    });
                }
                rest.get(n..n + size)
                    .map(|body| (Record::SizedEnvelope(body.to_vec()), 1 + n + size))
            }
            0x07 => Some((Record::End, 1)),
            0x08 => self
                .string(rest, off + 1, self.limits.max_fault, "fault")?
                .map(|(s, n)| (Record::Fault(s), n + 1)),
            0x09 => self
                .string(
                    rest,
                    off + 1,
                    self.limits.max_content_type,
                    "upgrade protocol",
                )?
                .map(|(s, n)| (Record::UpgradeRequest(s), n + 1)),
            0x0A => Some((Record::UpgradeResponse, 1)),
            0x0B => Some((Record::PreambleAck, 1)),
            0x0C => Some((Record::PreambleEnd, 1)),
            _ => {
                return Err(Error::InvalidRecordType {
                    offset: off,
                    byte: t,
                })
            }
        })
    }

    fn string(
        &self,
        data: &[u8],
        off: u64,
        max: usize,
        what: &'static str,
    ) -> Result<Option<(String, usize)>, Error> {
        let (len, n) = match decode_mb31(data, off)? {
            Mb31::Value(v, n) => (v as usize, n),
            Mb31::Incomplete => return Ok(None),
        };
        if len > max {
            return Err(Error::TooLarge {
                offset: off,
                what,
                size: len as u64,
                max: max as u64,
            });
        }
        let Some(body) = data.get(n..n + len) else {
            return Ok(None);
        };
        let s = core::str::from_utf8(body).map_err(|_| Error::InvalidUtf8 {
            offset: off + n as u64,
        })?;
        Ok(Some((s.to_owned(), n + len)))
    }
}

/// Decode a complete byte stream: all records, then the offset where decoding stopped
/// (the start of opaque upgrade bytes, or the end). Errors on a truncated record.
pub fn decode_all(data: &[u8], limits: Limits) -> Result<(Vec<Record>, u64), Error> {
    let mut d = Decoder::new(limits);
    d.feed(data);
    let mut out = Vec::new();
    while let Some(r) = d.next_record()? {
        out.push(r);
    }
    let stop = d.offset();
    d.finish()?;
    Ok((out, stop))
}

fn string(s: &str, out: &mut Vec<u8>) {
    encode_size(s.len() as u32, out);
    out.extend_from_slice(s.as_bytes());
}

/// Append the wire form of `r`.
pub fn encode_record(r: &Record, out: &mut Vec<u8>) {
    match r {
        Record::Version { major, minor } => out.extend_from_slice(&[0x00, *major, *minor]),
        Record::Mode(m) => out.extend_from_slice(&[0x01, *m]),
        Record::Via(s) => {
            out.push(0x02);
            string(s, out);
        }
        Record::KnownEncoding(e) => out.extend_from_slice(&[0x03, *e]),
        Record::ExtensibleEncoding(s) => {
            out.push(0x04);
            string(s, out);
        }
        Record::UnsizedEnvelopeStart => out.push(0x05),
        Record::UnsizedChunk(b) => {
            encode_size(b.len() as u32, out);
            out.extend_from_slice(b);
        }
        Record::UnsizedEnvelopeEnd => out.push(0x00),
        Record::SizedEnvelope(b) => {
            out.push(0x06);
            encode_size(b.len() as u32, out);
            out.extend_from_slice(b);
        }
        Record::End => out.push(0x07),
        Record::Fault(s) => {
            out.push(0x08);
            string(s, out);
        }
        Record::UpgradeRequest(s) => {
            out.push(0x09);
            string(s, out);
        }
        Record::UpgradeResponse => out.push(0x0A),
        Record::PreambleAck => out.push(0x0B),
        Record::PreambleEnd => out.push(0x0C),
    }
}

/// Encode a list of records.
pub fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        encode_record(r, &mut out);
    }
    out
}
