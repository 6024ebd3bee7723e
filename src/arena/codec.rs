//! Little-endian encoding of on-media structures. Every decode is bounds-checked and
//! returns `CodecError` instead of panicking: pool bytes are untrusted input.

use std::fmt;

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// A field runs past the end of the bytes: `want` bytes at `at`, `left` there.
    Truncated { want: usize, at: usize, left: usize },
    /// A length-prefixed byte string longer than its field allows.
    TooLong { len: usize, max: usize },
    /// A timestamp's nanoseconds are not below one second.
    Nanoseconds(u32),
    /// A map record's cloned flag is neither 0 nor 1.
    ClonedFlag(u8),
    /// A record tag no daxlink writes.
    UnknownRecord(u8),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated { want, at, left } => {
                write!(f, "truncated: wanted {want} bytes at offset {at}, {left} left")
            }
            CodecError::TooLong { len, max } => write!(f, "byte string of {len} bytes exceeds {max}"),
            CodecError::Nanoseconds(n) => write!(f, "timestamp nanoseconds {n} out of range"),
            CodecError::ClonedFlag(x) => write!(f, "map record cloned flag {x}"),
            CodecError::UnknownRecord(t) => write!(f, "unknown record type {t}"),
        }
    }
}

/// Appends little-endian fields to a byte vector.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads little-endian fields from a byte slice, failing cleanly at its end.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated { want: n, at: self.pos, left: self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        self.array().map(u64::from_le_bytes)
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        self.array().map(i64::from_le_bytes)
    }
    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<Vec<u8>, CodecError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(CodecError::TooLong { len: n, max });
        }
        Ok(self.take(n)?.to_vec())
    }
}

/// The checksum used by every on-media structure (CRC-32, IEEE polynomial).
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_of_truncated_input_is_an_error_not_a_panic() {
        let mut e = Enc::new();
        e.u64(7);
        e.bytes(b"abc");
        let full = e.buf.clone();
        for cut in 0..full.len() {
            let mut d = Dec::new(&full[..cut]);
            let r = d.u64().and_then(|_| d.bytes(16));
            assert!(r.is_err(), "cut at {cut} decoded");
        }
        let mut d = Dec::new(&full);
        assert_eq!(d.u64().unwrap(), 7);
        assert_eq!(d.bytes(16).unwrap(), b"abc");
    }

    #[test]
    fn oversized_byte_string_is_refused() {
        let mut e = Enc::new();
        e.bytes(&[0u8; 32]);
        assert!(Dec::new(&e.buf).bytes(31).is_err());
    }
}
