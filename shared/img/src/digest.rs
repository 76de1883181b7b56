//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and streams that hash what passes through
//! them, so a blob is verified while it is read or written instead of in a second pass.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use anyhow::{Result, bail};
use sha2::{Digest as _, Sha256, Sha512};

/// The hash algorithms the OCI image spec registers; sha256 is what everyone writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: known algorithm, lowercase hex of the right length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The sha256 digest of some bytes.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(bytes);
        h.finish()
    }

    /// The first 12 hex digits, as docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let Some((alg, hex)) = s.split_once(':') else {
            bail!("invalid digest {s:?}: expected ALGORITHM:HEX");
        };
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => bail!("invalid digest {s:?}: unsupported algorithm {alg:?}"),
        };
        if hex.len() != algorithm.hex_len() {
            bail!("invalid digest {s:?}: {alg} needs {} hex digits, got {}", algorithm.hex_len(), hex.len());
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            bail!("invalid digest {s:?}: not lowercase hex");
        }
        Ok(Digest { algorithm, hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hash of one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// What a stream is expected to be; `None` fields are not checked.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

impl Expected {
    pub fn new(digest: &Digest, size: u64) -> Expected {
        Expected { digest: Some(digest.clone()), size: Some(size) }
    }

    /// Checks what was actually seen; the error names both sides.
    pub fn check(&self, digest: &Digest, size: u64) -> Result<()> {
        if let Some(want) = self.size
            && want != size
        {
            bail!("size mismatch: expected {want} bytes, got {size}");
        }
        if let Some(want) = &self.digest
            && want != digest
        {
            bail!("digest mismatch: expected {want}, got {digest}");
        }
        Ok(())
    }

    fn algorithm(&self) -> Algorithm {
        self.digest.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm())
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader { inner, hasher: Hasher::new(algorithm), count: 0 }
    }

    /// The digest and size of what was read so far.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts everything written through it, and can refuse to grow past
/// an expected size (so a lying server cannot fill the disk).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
    expected: Expected,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W, expected: Expected) -> Self {
        let hasher = Hasher::new(expected.algorithm());
        HashingWriter { inner, hasher, count: 0, expected }
    }

    /// Continues a hash over bytes already written elsewhere (a resumed download).
    pub fn resume(inner: W, expected: Expected, hasher: Hasher, count: u64) -> Self {
        HashingWriter { inner, hasher, count, expected }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checks size and digest against what was expected and returns the inner writer.
    pub fn verify(self) -> Result<(W, Digest, u64)> {
        let digest = self.hasher.finish();
        self.expected.check(&digest, self.count)?;
        Ok((self.inner, digest, self.count))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.expected.size
            && self.count + buf.len() as u64 > limit
        {
            return Err(io::Error::other(format!("size mismatch: more than the expected {limit} bytes")));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_values() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn parses_and_rejects() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:abc",
            "md5:e3b0c44298fc1c149afbf4c8996fb924",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn writer_verifies_digest_and_size() {
        let d = Digest::of(b"hello");
        let mut w = HashingWriter::new(Vec::new(), Expected::new(&d, 5));
        w.write_all(b"hello").unwrap();
        let (out, got, n) = w.verify().unwrap();
        assert_eq!((out.as_slice(), got, n), (&b"hello"[..], d.clone(), 5));

        let mut w = HashingWriter::new(Vec::new(), Expected::new(&d, 5));
        w.write_all(b"hellO").unwrap();
        assert!(w.verify().unwrap_err().to_string().contains("digest mismatch"));

        let mut w = HashingWriter::new(Vec::new(), Expected::new(&d, 5));
        assert!(w.write_all(b"hello!").is_err());

        let mut w = HashingWriter::new(Vec::new(), Expected::new(&d, 5));
        w.write_all(b"hel").unwrap();
        assert!(w.verify().unwrap_err().to_string().contains("size mismatch"));
    }

    #[test]
    fn reader_counts_and_hashes() {
        let mut r = HashingReader::new(&b"hello"[..], Algorithm::Sha256);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(r.finish(), (Digest::of(b"hello"), 5));
    }
}
