//! Cache keys: typed, versioned blake3 hashes of everything that determines a step's result.
//!
//! A key starts with a tag naming the step kind and its version (`strata.run.v1`), then each
//! input as a named, length-prefixed field, in a fixed order: the parent step's key, the
//! expanded instruction, the environment and build args in effect (proxy args left out by the
//! caller), and for COPY/ADD/bind mounts the content digest of the selected sources (never
//! mtime). The inputs are also kept as text, so a cache miss can be explained field by field.

use std::fmt;

/// A step's cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..16])
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Builds a [`CacheKey`] field by field, keeping a readable copy of the inputs.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    hasher: blake3::Hasher,
    inputs: Vec<(String, String)>,
}

impl KeyBuilder {
    /// Starts a key of kind `tag` (e.g. `strata.run.v1`).
    pub fn new(tag: &str) -> Self {
        let mut k = KeyBuilder {
            hasher: blake3::Hasher::new(),
            inputs: Vec::new(),
        };
        k.field("kind", tag);
        k
    }

    /// Adds a text field.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.put(name, value.as_bytes());
        self.inputs.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a list of strings (each length-prefixed, so `["a b"]` differs from `["a", "b"]`).
    pub fn list<S: AsRef<str>>(&mut self, name: &str, values: &[S]) -> &mut Self {
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend_from_slice(&(v.as_ref().len() as u64).to_le_bytes());
            bytes.extend_from_slice(v.as_ref().as_bytes());
        }
        self.put(name, &bytes);
        let shown: Vec<String> = values.iter().map(|v| format!("{:?}", v.as_ref())).collect();
        self.inputs
            .push((name.to_string(), format!("[{}]", shown.join(", "))));
        self
    }

    /// Adds a digest-like field (shown in hex).
    pub fn digest(&mut self, name: &str, value: &[u8; 32]) -> &mut Self {
        self.put(name, value);
        self.inputs.push((
            name.to_string(),
            value.iter().map(|b| format!("{b:02x}")).collect(),
        ));
        self
    }

    fn put(&mut self, name: &str, value: &[u8]) {
        self.hasher.update(&(name.len() as u64).to_le_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update(&(value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    /// The key and its inputs (name, readable value), in the order they were added.
    pub fn finish(self) -> (CacheKey, Vec<(String, String)>) {
        (CacheKey(*self.hasher.finalize().as_bytes()), self.inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unambiguous_and_typed() {
        let key = |f: &dyn Fn(&mut KeyBuilder)| {
            let mut k = KeyBuilder::new("strata.run.v1");
            f(&mut k);
            k.finish().0
        };
        let a = key(&|k| {
            k.list("cmd", &["a b"]);
        });
        let b = key(&|k| {
            k.list("cmd", &["a", "b"]);
        });
        assert_ne!(a, b);
        assert_ne!(
            key(&|k| {
                k.field("x", "ab").field("y", "");
            }),
            key(&|k| {
                k.field("x", "a").field("y", "b");
            })
        );
        let mut other = KeyBuilder::new("strata.copy.v1");
        other.list("cmd", &["a b"]);
        assert_ne!(other.finish().0, a);
        let mut k = KeyBuilder::new("strata.run.v1");
        k.field("user", "root");
        let (_, inputs) = k.finish();
        assert_eq!(inputs[1], ("user".to_string(), "root".to_string()));
        assert_eq!(a.hex().len(), 64);
    }
}
