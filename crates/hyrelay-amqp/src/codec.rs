//! The AMQP 1.0 type system (part 1): every primitive encoding, described types, lists,
//! maps and arrays.

use crate::Error;

/// Limits for decoding untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nesting of lists, maps, arrays and described values.
    pub max_depth: usize,
    /// Elements of one list, map (keys + values) or array.
    pub max_count: usize,
    /// Bytes of one binary, string or symbol.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_count: 65_536,
            max_bytes: 1 << 20,
        }
    }
}

/// An AMQP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `ubyte`.
    Ubyte(u8),
    /// `ushort`.
    Ushort(u16),
    /// `uint`.
    Uint(u32),
    /// `ulong`.
    Ulong(u64),
    /// `byte`.
    Byte(i8),
    /// `short`.
    Short(i16),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `float`.
    Float(f32),
    /// `double`.
    Double(f64),
    /// `decimal32` (raw IEEE 754 bytes).
    Decimal32([u8; 4]),
    /// `decimal64`.
    Decimal64([u8; 8]),
    /// `decimal128`.
    Decimal128([u8; 16]),
    /// `char` (a UTF-32 code point).
    Char(char),
    /// `timestamp`: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// `uuid`.
    Uuid([u8; 16]),
    /// `binary`.
    Binary(Vec<u8>),
    /// `string`.
    String(String),
    /// `symbol` (ASCII).
    Symbol(String),
    /// `list`.
    List(Vec<Value>),
    /// `map`: key/value pairs in order.
    Map(Vec<(Value, Value)>),
    /// `array`: elements share one constructor (they must be of one kind to encode).
    Array(Vec<Value>),
    /// A described value: descriptor (usually a `ulong` code or a symbol) and value.
    Described(Box<Value>, Box<Value>),
}

impl Value {
    /// A symbol.
    pub fn sym(s: &str) -> Value {
        Value::Symbol(s.to_string())
    }
    /// A described list with a numeric descriptor: how performatives are encoded.
    pub fn described(code: u64, fields: Vec<Value>) -> Value {
        Value::Described(Box::new(Value::Ulong(code)), Box::new(Value::List(fields)))
    }
    /// The text of a string or symbol.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Symbol(s) => Some(s),
            _ => None,
        }
    }
    /// Any unsigned or non-negative integer as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Ubyte(v) => Some(v.into()),
            Value::Ushort(v) => Some(v.into()),
            Value::Uint(v) => Some(v.into()),
            Value::Ulong(v) => Some(v),
            Value::Byte(v) => u64::try_from(v).ok(),
            Value::Short(v) => u64::try_from(v).ok(),
            Value::Int(v) => u64::try_from(v).ok(),
            Value::Long(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// The numeric descriptor and fields of a described list.
    pub fn as_described_list(&self) -> Option<(u64, &[Value])> {
        match self {
            Value::Described(d, v) => match (d.as_u64(), v.as_ref()) {
                (Some(code), Value::List(f)) => Some((code, f)),
                _ => None,
            },
            _ => None,
        }
    }
    /// Looks a key up in a map whose keys are symbols or strings.
    pub fn map_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn truncated(&self) -> Error {
        Error::Truncated {
            offset: self.data.len(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn len(&mut self, wide: bool, what: &'static str, max: usize) -> Result<usize, Error> {
        let off = self.pos;
        let n = if wide {
            self.u32()? as usize
        } else {
            self.u8()? as usize
        };
        if n > max {
            return Err(Error::Limit {
                offset: off,
                what,
                value: n as u64,
                max: max as u64,
            });
        }
        Ok(n)
    }
    fn bytes(&mut self, wide: bool) -> Result<&'a [u8], Error> {
        let n = self.len(wide, "byte length", self.limits.max_bytes)?;
        self.take(n)
    }
    fn text(&mut self, wide: bool) -> Result<String, Error> {
        let off = self.pos;
        let b = self.bytes(wide)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed {
            offset: off,
            reason: "string is not UTF-8".into(),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        let off = self.pos;
        let c = self.u8()?;
        self.constructed(c, off, depth)
    }

    fn check_depth(&self, depth: usize, off: usize) -> Result<(), Error> {
        if depth >= self.limits.max_depth {
            return Err(Error::Limit {
                offset: off,
                what: "nesting depth",
                value: depth as u64 + 1,
                max: self.limits.max_depth as u64,
            });
        }
        Ok(())
    }

    /// The header of a list, map or array: size (checked against the input) and element
    /// count (checked against the limit). Returns (end offset, size, count, count offset).
    fn size_and_count(
        &mut self,
        wide: bool,
        depth: usize,
        off: usize,
        what: &'static str,
    ) -> Result<(usize, usize, usize, usize), Error> {
        self.check_depth(depth, off)?;
        let size = self.len(wide, what, self.data.len())?;
        let end = self.pos + size;
        if end > self.data.len() {
            return Err(self.truncated());
        }
        let count_off = self.pos;
        let count = if wide {
            self.u32()? as usize
        } else {
            self.u8()? as usize
        };
        if count > self.limits.max_count {
            return Err(Error::Limit {
                offset: count_off,
                what: "element count",
                value: count as u64,
                max: self.limits.max_count as u64,
            });
        }
        Ok((end, size, count, count_off))
    }

    /// A compound body (list or map): size, count, then `count` values, all inside `size`.
    fn compound(&mut self, wide: bool, depth: usize, off: usize) -> Result<Vec<Value>, Error> {
        let (end, size, count, count_off) =
            self.size_and_count(wide, depth, off, "compound size")?;
        // Every element takes at least one byte: a count larger than the bytes left is a lie.
        if count > end.saturating_sub(self.pos) {
            return Err(Error::Malformed {
                offset: count_off,
                reason: format!("{count} elements cannot fit in {size} bytes"),
            });
        }
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            v.push(self.value(depth + 1)?);
            if self.pos > end {
                return Err(Error::Malformed {
                    offset: off,
                    reason: "an element runs past the end of its list or map".into(),
                });
            }
        }
        if self.pos != end {
            return Err(Error::Malformed {
                offset: off,
                reason: "size and elements of a list or map disagree".into(),
            });
        }
        Ok(v)
    }

    fn array(&mut self, wide: bool, depth: usize, off: usize) -> Result<Vec<Value>, Error> {
        let (end, _, count, _) = self.size_and_count(wide, depth, off, "array size")?;
        // One constructor (possibly described) shared by every element.
        let coff = self.pos;
        let mut c = self.u8()?;
        let mut descriptor = None;
        if c == 0x00 {
            descriptor = Some(self.value(depth + 1)?);
            c = self.u8()?;
        }
        let mut v = Vec::with_capacity(count.min(end.saturating_sub(self.pos) + 1));
        for _ in 0..count {
            let e = self.constructed(c, coff, depth + 1)?;
            v.push(match &descriptor {
                Some(d) => Value::Described(Box::new(d.clone()), Box::new(e)),
                None => e,
            });
            if self.pos > end {
                return Err(Error::Malformed {
                    offset: off,
                    reason: "an element runs past the end of its array".into(),
                });
            }
        }
        if self.pos != end {
            return Err(Error::Malformed {
                offset: off,
                reason: "size and elements of an array disagree".into(),
            });
        }
        Ok(v)
    }

    fn constructed(&mut self, c: u8, off: usize, depth: usize) -> Result<Value, Error> {
        Ok(match c {
            0x00 => {
                self.check_depth(depth, off)?;
                let d = self.value(depth + 1)?;
                let v = self.value(depth + 1)?;
                Value::Described(Box::new(d), Box::new(v))
            }
            0x40 => Value::Null,
            0x41 => Value::Bool(true),
            0x42 => Value::Bool(false),
            0x56 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Error::Malformed {
                        offset: off + 1,
                        reason: format!("boolean byte {b} is neither 0 nor 1"),
                    })
                }
            },
            0x50 => Value::Ubyte(self.u8()?),
            0x60 => Value::Ushort(u16::from_be_bytes(self.arr()?)),
            0x70 => Value::Uint(self.u32()?),
            0x52 => Value::Uint(self.u8()?.into()),
            0x43 => Value::Uint(0),
            0x80 => Value::Ulong(u64::from_be_bytes(self.arr()?)),
            0x53 => Value::Ulong(self.u8()?.into()),
            0x44 => Value::Ulong(0),
            0x51 => Value::Byte(i8::from_be_bytes(self.arr()?)),
            0x61 => Value::Short(i16::from_be_bytes(self.arr()?)),
            0x71 => Value::Int(i32::from_be_bytes(self.arr()?)),
            0x54 => Value::Int(i8::from_be_bytes(self.arr()?).into()),
            0x81 => Value::Long(i64::from_be_bytes(self.arr()?)),
            0x55 => Value::Long(i8::from_be_bytes(self.arr()?).into()),
            0x72 => Value::Float(f32::from_be_bytes(self.arr()?)),
            0x82 => Value::Double(f64::from_be_bytes(self.arr()?)),
            0x74 => Value::Decimal32(self.arr()?),
            0x84 => Value::Decimal64(self.arr()?),
            0x94 => Value::Decimal128(self.arr()?),
            0x73 => {
                let u = self.u32()?;
                Value::Char(char::from_u32(u).ok_or(Error::Malformed {
                    offset: off + 1,
                    reason: format!("char 0x{u:x} is not a Unicode scalar value"),
                })?)
            }
            0x83 => Value::Timestamp(i64::from_be_bytes(self.arr()?)),
            0x98 => Value::Uuid(self.arr()?),
            0xa0 => Value::Binary(self.bytes(false)?.to_vec()),
            0xb0 => Value::Binary(self.bytes(true)?.to_vec()),
            0xa1 => Value::String(self.text(false)?),
            0xb1 => Value::String(self.text(true)?),
            0xa3 | 0xb3 => {
                let s = self.text(c == 0xb3)?;
                if !s.is_ascii() {
                    return Err(Error::Malformed {
                        offset: off,
                        reason: "symbol is not ASCII".into(),
                    });
                }
                Value::Symbol(s)
            }
            0x45 => Value::List(Vec::new()),
            0xc0 | 0xd0 => Value::List(self.compound(c == 0xd0, depth, off)?),
            0xc1 | 0xd1 => {
                let items = self.compound(c == 0xd1, depth, off)?;
                if items.len() % 2 != 0 {
                    return Err(Error::Malformed {
                        offset: off,
                        reason: "a map with an odd number of elements".into(),
                    });
                }
                let mut m = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.push((k, v));
                }
                Value::Map(m)
            }
            0xe0 | 0xf0 => Value::Array(self.array(c == 0xf0, depth, off)?),
            b => {
                return Err(Error::UnknownConstructor {
                    offset: off,
                    byte: b,
                })
            }
        })
    }
}

/// Decodes one value from the start of `input`; returns it and the bytes it took.
pub fn decode_value(input: &[u8], limits: &Limits) -> Result<(Value, usize), Error> {
    let mut r = Reader {
        data: input,
        pos: 0,
        limits: *limits,
    };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Appends the encoding of `v` to `out`, choosing the smallest form (as most AMQP stacks do).
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0x40),
        Value::Bool(true) => out.push(0x41),
        Value::Bool(false) => out.push(0x42),
        Value::Ubyte(b) => out.extend_from_slice(&[0x50, *b]),
        Value::Ushort(s) => {
            out.push(0x60);
            out.extend_from_slice(&s.to_be_bytes());
        }
        Value::Uint(0) => out.push(0x43),
        Value::Uint(u) if *u < 256 => out.extend_from_slice(&[0x52, *u as u8]),
        Value::Uint(u) => {
            out.push(0x70);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Ulong(0) => out.push(0x44),
        Value::Ulong(u) if *u < 256 => out.extend_from_slice(&[0x53, *u as u8]),
        Value::Ulong(u) => {
            out.push(0x80);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Byte(b) => out.extend_from_slice(&[0x51, *b as u8]),
        Value::Short(s) => {
            out.push(0x61);
            out.extend_from_slice(&s.to_be_bytes());
        }
        Value::Int(i) if (-128..=127).contains(i) => out.extend_from_slice(&[0x54, *i as i8 as u8]),
        Value::Int(i) => {
            out.push(0x71);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Long(l) if (-128..=127).contains(l) => {
            out.extend_from_slice(&[0x55, *l as i8 as u8])
        }
        Value::Long(l) => {
            out.push(0x81);
            out.extend_from_slice(&l.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0x72);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Double(d) => {
            out.push(0x82);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Decimal32(b) => {
            out.push(0x74);
            out.extend_from_slice(b);
        }
        Value::Decimal64(b) => {
            out.push(0x84);
            out.extend_from_slice(b);
        }
        Value::Decimal128(b) => {
            out.push(0x94);
            out.extend_from_slice(b);
        }
        Value::Char(c) => {
            out.push(0x73);
            out.extend_from_slice(&(*c as u32).to_be_bytes());
        }
        Value::Timestamp(t) => {
            out.push(0x83);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Value::Uuid(u) => {
            out.push(0x98);
            out.extend_from_slice(u);
        }
        Value::Binary(b) => var(out, 0xa0, 0xb0, b),
        Value::String(s) => var(out, 0xa1, 0xb1, s.as_bytes()),
        Value::Symbol(s) => var(out, 0xa3, 0xb3, s.as_bytes()),
        Value::List(items) if items.is_empty() => out.push(0x45),
        Value::List(items) => {
            let mut body = Vec::new();
            for i in items {
                encode_value(i, &mut body);
            }
            compound(out, 0xc0, 0xd0, items.len(), &body);
        }
        Value::Map(pairs) => {
            let mut body = Vec::new();
            for (k, v) in pairs {
                encode_value(k, &mut body);
                encode_value(v, &mut body);
            }
            compound(out, 0xc1, 0xd1, pairs.len() * 2, &body);
        }
        Value::Array(items) => {
            // Elements are written with the first element's wide constructor, without it.
            let mut body = Vec::new();
            let mut ctor = None;
            for i in items {
                let mut e = Vec::new();
                encode_array_element(i, &mut e);
                let (c, rest) = e.split_at(1);
                ctor.get_or_insert_with(|| c.to_vec());
                body.extend_from_slice(rest);
            }
            let ctor = ctor.unwrap_or_else(|| vec![0x40]);
            let mut all = ctor;
            all.extend_from_slice(&body);
            // The count is outside the constructor but inside the size.
            let n = items.len();
            if all.len() < 255 && n <= 255 {
                out.push(0xe0);
                out.push((all.len() + 1) as u8);
                out.push(n as u8);
            } else {
                out.push(0xf0);
                out.extend_from_slice(&((all.len() + 4) as u32).to_be_bytes());
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(&all);
        }
        Value::Described(d, v) => {
            out.push(0x00);
            encode_value(d, out);
            encode_value(v, out);
        }
    }
}

/// An array element with its fixed-width constructor (arrays cannot mix widths).
fn encode_array_element(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bool(b) => out.extend_from_slice(&[0x56, u8::from(*b)]),
        Value::Uint(u) => {
            out.push(0x70);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Ulong(u) => {
            out.push(0x80);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Int(i) => {
            out.push(0x71);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Long(l) => {
            out.push(0x81);
            out.extend_from_slice(&l.to_be_bytes());
        }
        Value::Binary(b) => wide(out, 0xb0, b),
        Value::String(s) => wide(out, 0xb1, s.as_bytes()),
        Value::Symbol(s) => wide(out, 0xb3, s.as_bytes()),
        other => encode_value(other, out),
    }
}

fn wide(out: &mut Vec<u8>, c: u8, b: &[u8]) {
    out.push(c);
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn var(out: &mut Vec<u8>, short: u8, long: u8, b: &[u8]) {
    if b.len() <= 255 {
        out.push(short);
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    } else {
        wide(out, long, b);
    }
}

fn compound(out: &mut Vec<u8>, short: u8, long: u8, count: usize, body: &[u8]) {
    if body.len() < 255 && count <= 255 {
        out.push(short);
        out.push((body.len() + 1) as u8);
        out.push(count as u8);
    } else {
        out.push(long);
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
    }
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(v: Value) {
        let mut b = Vec::new();
        encode_value(&v, &mut b);
        let (back, n) = decode_value(&b, &Limits::default()).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(back, v, "{b:02x?}");
    }

    #[test]
    fn spec_encodings() {
        let enc = |v: &Value| {
            let mut b = Vec::new();
            encode_value(v, &mut b);
            b
        };
        assert_eq!(enc(&Value::Uint(0)), [0x43]);
        assert_eq!(enc(&Value::Ulong(0x10)), [0x53, 0x10]);
        assert_eq!(enc(&Value::sym("PLAIN")), b"\xa3\x05PLAIN");
        assert_eq!(enc(&Value::List(vec![])), [0x45]);
        assert_eq!(
            enc(&Value::described(0x10, vec![Value::String("c".into())])),
            [0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1, 0x01, b'c']
        );
    }

    #[test]
    fn round_trips() {
        rt(Value::Null);
        rt(Value::Int(-5));
        rt(Value::Int(100_000));
        rt(Value::Long(-1 << 40));
        rt(Value::String("x".repeat(300)));
        rt(Value::Map(vec![(
            Value::sym("com.microsoft:swt"),
            Value::String("tok".into()),
        )]));
        rt(Value::Array(vec![
            Value::sym("EXTERNAL"),
            Value::sym("ANONYMOUS"),
        ]));
        rt(Value::described(
            0x12,
            vec![Value::Null, Value::Uint(1), Value::Bool(true)],
        ));
    }

    #[test]
    fn limits_and_lies_are_errors() {
        let l = Limits::default();
        // A list that claims 200 elements in 2 bytes.
        assert!(matches!(
            decode_value(&[0xc0, 0x02, 0xc8, 0x40], &l),
            Err(Error::Malformed { .. })
        ));
        // 40 nested lists with depth 32.
        let mut deep = vec![];
        for _ in 0..40 {
            deep.extend_from_slice(&[0xc0, 0x00, 0x01]);
        }
        assert!(decode_value(&deep, &l).is_err());
        assert!(matches!(
            decode_value(&[0xa1, 0x05, b'a'], &l),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            decode_value(&[0xff], &l),
            Err(Error::UnknownConstructor { byte: 0xff, .. })
        ));
    }
}
