//! MultiByteInt31: 1–5 bytes, 7 bits each, least significant group first.

use crate::Error;

/// Largest value a MultiByteInt31 can carry (2³¹ − 1).
pub const MB31_MAX: u32 = 0x7FFF_FFFF;

/// Outcome of [`decode_mb31`] on a buffer that may be incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mb31 {
    /// A value and the number of bytes it occupied.
    Value(u32, usize),
    /// The buffer ended before the last byte of the integer.
    Incomplete,
}

/// Decode a MultiByteInt31 at the start of `data`.
///
/// Non-minimal encodings are accepted (as .NET does); a fifth byte with any of bits 3–7
/// set is rejected with [`Error::InvalidMb31`] at `offset` (the caller's position of `data`).
pub fn decode_mb31(data: &[u8], offset: usize) -> Result<Mb31, Error> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some(&b) = data.get(i) else {
            return Ok(Mb31::Incomplete);
        };
        if i == 4 {
            if b & 0xF8 != 0 {
                return Err(Error::InvalidMb31 { offset });
            }
            value |= u32::from(b) << 28;
            return Ok(Mb31::Value(value, 5));
        }
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Mb31::Value(value, i + 1));
        }
    }
    Err(Error::InvalidMb31 { offset })
}

/// Append the minimal MultiByteInt31 encoding of `value` (values above [`MB31_MAX`] are
/// the caller's bug and are masked to 31 bits).
pub fn encode_mb31(value: u32, out: &mut Vec<u8>) {
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

/// Number of bytes [`encode_mb31`] writes for `value`.
pub fn mb31_len(value: u32) -> usize {
    match value & MB31_MAX {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0x0FFF_FFFF => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        for (v, bytes) in [
            (0u32, &[0x00u8][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (134, &[0x86, 0x01]),
            (325, &[0xC5, 0x02]),
            (16384, &[0x80, 0x80, 0x01]),
            (MB31_MAX, &[0xFF, 0xFF, 0xFF, 0xFF, 0x07]),
        ] {
            let mut out = Vec::new();
            encode_mb31(v, &mut out);
            assert_eq!(out, bytes, "encode {v}");
            assert_eq!(mb31_len(v), bytes.len());
            assert_eq!(decode_mb31(bytes, 0), Ok(Mb31::Value(v, bytes.len())));
        }
    }

    #[test]
    fn non_minimal_accepted_fifth_byte_checked() {
        assert_eq!(decode_mb31(&[0x81, 0x00], 0), Ok(Mb31::Value(1, 2)));
        assert_eq!(
            decode_mb31(&[0x80, 0x80, 0x80, 0x80, 0x08], 3),
            Err(Error::InvalidMb31 { offset: 3 })
        );
        assert_eq!(decode_mb31(&[0x80, 0x80], 0), Ok(Mb31::Incomplete));
        assert_eq!(decode_mb31(&[], 0), Ok(Mb31::Incomplete));
    }
}
