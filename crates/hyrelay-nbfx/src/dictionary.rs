//! The [MC-NBFS] static dictionary and the [MC-NBFSE] session dictionary.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::mb31::{decode_mb31, encode_mb31, mb31_len, Mb31};
use crate::static_table::STATIC_STRINGS;
use crate::{Error, LimitKind};

/// A DictionaryString key as it appears on the wire: even keys index the static
/// dictionary (`key / 2`), odd keys the session dictionary (`(key - 1) / 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DictKey(pub u32);

impl DictKey {
    /// Key of static dictionary entry `index`.
    pub fn from_static_index(index: u32) -> DictKey {
        DictKey(index.wrapping_mul(2))
    }
    /// Key of session dictionary id `id`.
    pub fn from_session_id(id: u32) -> DictKey {
        DictKey(id.wrapping_mul(2).wrapping_add(1))
    }
    /// True for even (static) keys.
    pub fn is_static(self) -> bool {
        self.0 & 1 == 0
    }
    /// Static table index (for even keys) or session id (for odd keys).
    pub fn index(self) -> u32 {
        self.0 >> 1
    }
}

/// Number of strings in the static dictionary.
pub const STATIC_DICTIONARY_LEN: usize = 487;

/// The string of static dictionary key `key` (even), or `None` if undefined or odd.
pub fn static_string(key: u32) -> Option<&'static str> {
    if key & 1 != 0 {
        return None;
    }
    STATIC_STRINGS.get((key >> 1) as usize).copied()
}

/// The wire key of `s` in the static dictionary (first occurrence), if present.
pub fn static_key(s: &str) -> Option<u32> {
    static INDEX: OnceLock<HashMap<&'static str, u32>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut m = HashMap::with_capacity(STATIC_STRINGS.len());
        for (i, s) in STATIC_STRINGS.iter().enumerate() {
            m.entry(*s).or_insert((i as u32) * 2);
        }
        m
    });
    index.get(s).copied()
}

/// Resolves dictionary keys while reading and rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dictionaries<'a> {
    /// The session dictionary of this direction, if the payload is [MC-NBFSE].
    pub session: Option<&'a SessionDictionary>,
}

impl<'a> Dictionaries<'a> {
    /// Static dictionary only ([MC-NBFS], `application/soap+msbin1`).
    pub fn static_only() -> Self {
        Dictionaries { session: None }
    }
    /// Static and session dictionaries ([MC-NBFSE]).
    pub fn with_session(session: &'a SessionDictionary) -> Self {
        Dictionaries {
            session: Some(session),
        }
    }
    /// Resolve `key`; `offset` is used for the error.
    pub fn resolve(&self, key: DictKey, offset: usize) -> Result<&'a str, Error> {
        if key.is_static() {
            static_string(key.0).ok_or(Error::UndefinedStaticKey { offset, key: key.0 })
        } else {
            self.session
                .and_then(|s| s.get(key.index()))
                .ok_or(Error::UndefinedSessionKey { offset, key: key.0 })
        }
    }
}

/// One direction's [MC-NBFSE] session dictionary (string table), carried across all
/// messages of a framing session.
///
/// The reading side applies the table at the start of each `0x08` payload with
/// [`SessionDictionary::read_table`]; ids count from 0 across the session and are never
/// removed. The writing side adds strings with [`SessionDictionary::intern`] and emits
/// them with [`SessionDictionary::take_new_strings`]. The sum of `MB31 len + len` over all
/// entries is bounded by `max_size` (.NET `MaxSessionSize`, default 2048): a reader
/// that sees more fails and is poisoned; a writer silently stops adding strings.
#[derive(Debug, Clone)]
pub struct SessionDictionary {
    strings: Vec<String>,
    lookup: HashMap<String, u32>,
    used: usize,
    max_size: usize,
    poisoned: bool,
    writer_full: bool,
    pending_from: usize,
}

impl Default for SessionDictionary {
    fn default() -> Self {
        SessionDictionary::new(Self::DEFAULT_MAX_SIZE)
    }
}

impl SessionDictionary {
    /// .NET's default `MaxSessionSize` in bytes.
    pub const DEFAULT_MAX_SIZE: usize = 2048;

    /// An empty session dictionary with a size budget of `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        SessionDictionary {
            strings: Vec::new(),
            lookup: HashMap::new(),
            used: 0,
            max_size,
            poisoned: false,
            writer_full: false,
            pending_from: 0,
        }
    }

    /// The string with session id `id`.
    pub fn get(&self, id: u32) -> Option<&str> {
        self.strings.get(id as usize).map(String::as_str)
    }

    /// The id of `s`, if it is in the table.
    pub fn id_of(&self, s: &str) -> Option<u32> {
        self.lookup.get(s).copied()
    }

    /// Number of strings defined so far.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// True when no string is defined.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Bytes of the budget used so far.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// True after a malformed or oversized table: every later message is rejected.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Reading side: parse the string table at the start of an [MC-NBFSE] payload, append
    /// its strings, and return `(document_offset, new_strings)`: where the binary XML
    /// document starts and the strings this message added (in order).
    ///
    /// Any failure poisons the dictionary (a partially applied table would desynchronise
    /// ids), and a poisoned dictionary fails with [`Error::SessionPoisoned`].
    pub fn read_table(&mut self, payload: &[u8]) -> Result<(usize, Vec<String>), Error> {
        if self.poisoned {
            return Err(Error::SessionPoisoned { offset: 0 });
        }
        match self.parse_table(payload) {
            Ok((doc, strings)) => {
                for s in &strings {
                    self.used += mb31_len(s.len() as u32) + s.len();
                    let id = self.strings.len() as u32;
                    self.lookup.entry(s.clone()).or_insert(id);
                    self.strings.push(s.clone());
                }
                self.pending_from = self.strings.len();
                Ok((doc, strings))
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    fn parse_table(&self, payload: &[u8]) -> Result<(usize, Vec<String>), Error> {
        let (size, n) = match decode_mb31(payload, 0)? {
            Mb31::Value(v, n) => (v as usize, n),
            Mb31::Incomplete => {
                return Err(Error::UnexpectedEof {
                    offset: payload.len(),
                })
            }
        };
        let remaining_budget = self.max_size.saturating_sub(self.used);
        if size > remaining_budget {
            return Err(Error::LimitExceeded {
                offset: 0,
                limit: LimitKind::SessionSize,
                value: (self.used + size) as u64,
                max: self.max_size as u64,
            });
        }
        let end =
            n.checked_add(size)
                .filter(|&e| e <= payload.len())
                .ok_or(Error::UnexpectedEof {
                    offset: payload.len(),
                })?;
        let mut pos = n;
        let mut strings = Vec::new();
        while pos < end {
            let (len, k) = match decode_mb31(&payload[pos..end], pos)? {
                Mb31::Value(v, k) => (v as usize, k),
                Mb31::Incomplete => return Err(Error::UnexpectedEof { offset: end }),
            };
            let start = pos + k;
            let stop = start
                .checked_add(len)
                .filter(|&e| e <= end)
                .ok_or(Error::UnexpectedEof { offset: end })?;
            let s = core::str::from_utf8(&payload[start..stop])
                .map_err(|_| Error::InvalidUtf8 { offset: start })?;
            strings.push(s.to_owned());
            pos = stop;
        }
        Ok((end, strings))
    }

    /// Writing side: the session id of `s`, adding it if it is new and fits the budget.
    /// Returns `None` once the budget is exhausted (from then on nothing is added for the
    /// rest of the session, like .NET's writer).
    pub fn intern(&mut self, s: &str) -> Option<u32> {
        if let Some(id) = self.lookup.get(s) {
            return Some(*id);
        }
        if self.writer_full || self.poisoned || s.len() > super::mb31::MB31_MAX as usize {
            return None;
        }
        let cost = mb31_len(s.len() as u32) + s.len();
        if self.used + cost > self.max_size {
            self.writer_full = true;
            return None;
        }
        let id = self.strings.len() as u32;
        self.used += cost;
        self.strings.push(s.to_owned());
        self.lookup.insert(s.to_owned(), id);
        Some(id)
    }

    /// Writing side: the strings added by [`intern`](Self::intern) since the last call, in
    /// id order: the table of the next message (encode it with [`encode_table`]).
    pub fn take_new_strings(&mut self) -> Vec<String> {
        let from = self.pending_from.min(self.strings.len());
        self.pending_from = self.strings.len();
        self.strings[from..].to_vec()
    }
}

/// Encode a session string table: `MB31 N` then `{MB31 len, UTF-8}*`.
pub fn encode_table<'s>(strings: impl IntoIterator<Item = &'s str>) -> Vec<u8> {
    let mut body = Vec::new();
    for s in strings {
        encode_mb31(s.len() as u32, &mut body);
        body.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 5);
    encode_mb31(body.len() as u32, &mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_table_matches_data_file() {
        let text = include_str!("../data/nbfs-dictionary.txt");
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let (k, s) = line.split_once('\t').expect("tab");
            let key = u32::from_str_radix(k.trim_start_matches("0x"), 16).expect("hex");
            assert_eq!(key, 2 * i as u32);
            assert_eq!(static_string(key), Some(s));
            n += 1;
        }
        assert_eq!(n, STATIC_DICTIONARY_LEN);
        assert_eq!(static_string(0x3CE), None);
        assert_eq!(static_string(0x86), Some("Fault"));
        assert_eq!(static_string(0xA2), Some(""));
        assert!(static_string(0x1A8).is_some_and(|s| s.starts_with(' ')));
        assert_eq!(static_key("Envelope"), Some(2));
    }

    #[test]
    fn session_table_roundtrip_and_budget() {
        let mut w = SessionDictionary::new(16);
        assert_eq!(w.intern("abc"), Some(0));
        assert_eq!(w.intern("defg"), Some(1));
        assert_eq!(w.intern("abc"), Some(0));
        let t = encode_table(w.take_new_strings().iter().map(String::as_str));
        assert_eq!(t, b"\x09\x03abc\x04defg");
        assert!(w.take_new_strings().is_empty());
        // 9 used; "toolong" costs 8 -> over 16, writer stops adding for good.
        assert_eq!(w.intern("toolong"), None);
        assert_eq!(w.intern("x"), None);

        let mut r = SessionDictionary::new(16);
        let (doc, new) = r.read_table(b"\x09\x03abc\x04defg\x40").unwrap();
        assert_eq!((doc, new.len()), (10, 2));
        assert_eq!(r.get(1), Some("defg"));
        assert!(matches!(
            r.read_table(b"\x08\x07toolong"),
            Err(Error::LimitExceeded {
                limit: LimitKind::SessionSize,
                ..
            })
        ));
        assert!(r.is_poisoned());
        assert_eq!(
            r.read_table(b"\x00"),
            Err(Error::SessionPoisoned { offset: 0 })
        );
    }

    #[test]
    fn malformed_table_poisons() {
        let mut r = SessionDictionary::default();
        assert!(r.read_table(b"\x05\x09abcd").is_err());
        assert!(r.is_poisoned());
        let mut r = SessionDictionary::default();
        assert!(r.read_table(b"\x03\x02\xff\xfe").is_err());
        let mut r = SessionDictionary::default();
        assert!(r.read_table(b"\x09\x03ab").is_err());
    }
}
