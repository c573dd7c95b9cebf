//! OCI content digests.
//!
//! A [`Digest`] is always a validated `sha256:<64 lowercase hex>`: validation happens when the
//! value is built (parsing, deserialising), so every path later built from a digest
//! (`blobs/sha256/<hex>`, `layers/sha256/<hex>`) is a single safe file name. Anything else
//! (`sha256:../../x`, uppercase hex, wrong lengths, other algorithms, empty strings) is rejected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The only algorithm the store accepts.
pub const SHA256: &str = "sha256";

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    bytes: [u8; 32],
}

impl Digest {
    /// The digest of a sha256 hash value.
    pub fn from_sha256_bytes(bytes: [u8; 32]) -> Self {
        Digest { bytes }
    }

    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_sha256_bytes(Sha256::digest(data).into())
    }

    /// The algorithm, always `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        SHA256
    }

    /// The 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The first 12 hex characters, as docker shows image IDs.
    pub fn short(&self) -> String {
        let mut h = self.hex();
        h.truncate(12);
        h
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Parses a bare 64-char lowercase hex string (no `sha256:` prefix).
    ///
    /// # Errors
    /// [`Error::InvalidDigest`] unless `hex` is exactly 64 lowercase hex characters.
    pub fn from_hex(hex_str: &str) -> Result<Self> {
        Self::parse_hex(hex_str, hex_str)
    }

    fn parse_hex(hex_str: &str, input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        if hex_str.len() != 64 {
            return Err(invalid(&format!(
                "expected 64 hex characters, got {}",
                hex_str.len()
            )));
        }
        if !hex_str
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                "only lowercase hex characters [0-9a-f] are allowed",
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut bytes).map_err(|e| invalid(&e.to_string()))?;
        Ok(Digest { bytes })
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((SHA256, hex_str)) => Self::parse_hex(hex_str, s),
            Some((alg, _)) => Err(Error::InvalidDigest {
                input: s.chars().take(200).collect(),
                reason: format!(
                    "unsupported algorithm {:?} (only sha256)",
                    alg.chars().take(40).collect::<String>()
                ),
            }),
            None => Err(Error::InvalidDigest {
                input: s.chars().take(200).collect(),
                reason: "expected sha256:<64 hex characters>".to_string(),
            }),
        }
    }
}

impl TryFrom<&str> for Digest {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        s.parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256}:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming sha256 hasher producing a [`Digest`].
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest::from_sha256_bytes(self.inner.finalize().into())
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Component, Path};

    use proptest::prelude::*;

    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_digest() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        let mut h = Hasher::new();
        h.update(b"");
        assert_eq!(h.finish(), Digest::of(b""));
    }

    #[test]
    fn roundtrip_and_accessors() -> Result<()> {
        let d: Digest = EMPTY.parse()?;
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::from_hex(&EMPTY[7..])?, d);
        let json = serde_json::to_string(&d).map_err(|e| Error::Archive(e.to_string()))?;
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest =
            serde_json::from_str(&json).map_err(|e| Error::Archive(e.to_string()))?;
        assert_eq!(back, d);
        Ok(())
    }

    #[test]
    fn rejects_invalid() {
        let upper = EMPTY.to_uppercase().replacen("SHA256", "sha256", 1);
        let bad = [
            "",
            "sha256:",
            "sha256",
            "sha256:../../x",
            "sha256:../../../../../../../../../../../../../../../../../../../../../../etc/passwd",
            &upper,
            &EMPTY[..EMPTY.len() - 1],
            &format!("{EMPTY}0"),
            &EMPTY.replacen("sha256", "sha512", 1),
            &EMPTY.replacen("sha256", "SHA256", 1),
            &EMPTY[7..],
            &format!(" {EMPTY}"),
            &format!("{EMPTY}\n"),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8/5",
        ];
        for s in bad {
            assert!(s.parse::<Digest>().is_err(), "accepted {s:?}");
            let json = serde_json::to_string(s).unwrap_or_default();
            assert!(serde_json::from_str::<Digest>(&json).is_err(), "{s:?}");
        }
        let e = "sha256:../../x".parse::<Digest>().err();
        assert!(
            e.is_some_and(|e| e.to_string().contains("sha256:../../x")),
            "error names the input"
        );
    }

    proptest! {
        #[test]
        fn no_string_escapes_blobs(s in any::<String>(), tail in "[0-9a-fA-F./]{60,70}") {
            for input in [s.clone(), format!("sha256:{s}"), format!("sha256:{tail}")] {
                if let Ok(d) = input.parse::<Digest>() {
                    let p = Path::new("blobs/sha256").join(d.hex());
                    let comps: Vec<_> = p.components().collect();
                    prop_assert_eq!(comps.len(), 3);
                    prop_assert!(comps.iter().all(|c| matches!(c, Component::Normal(_))));
                    prop_assert_eq!(d.to_string(), input);
                }
            }
        }

        #[test]
        fn valid_roundtrips(bytes in any::<[u8; 32]>()) {
            let d = Digest::from_sha256_bytes(bytes);
            prop_assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
        }
    }
}
