//! The image config a build produces, modelled the way Docker and BuildKit write it.
//!
//! `oci-spec`'s `Config` lacks Docker's extensions (`Healthcheck`, `OnBuild`, `Shell`,
//! `ArgsEscaped`), so a build works on this serde model instead: every key BuildKit writes is a
//! typed field, and unknown keys of a base image's config are kept (`extra`). The bytes written
//! are validated with oci-spec's parser before they are stored (see `Images::commit`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The PATH BuildKit adds when the base image defines none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The comment BuildKit puts on each history entry.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An image config (the `application/vnd.oci.image.config.v1+json` document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Keys of a base config this model does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `config` object: what a container of the image runs with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the layers' diff IDs, base first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// The environment as (name, value) pairs, in order.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }

    /// Sets `name=value` in the environment, replacing an earlier definition in place (as
    /// BuildKit's `addEnv` does).
    pub fn set_env(&mut self, name: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == name)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    /// Adds the default PATH when the environment has none (BuildKit does this for every base).
    pub fn ensure_path(&mut self) {
        if !self.env_pairs().iter().any(|(k, _)| k == "PATH") {
            self.set_env("PATH", DEFAULT_PATH);
        }
    }

    /// Serialised bytes (keys in a stable order).
    ///
    /// # Errors
    /// serde errors (not expected for this model).
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        let v = serde_json::to_value(self)?;
        serde_json::to_vec(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_replaced_in_place_and_path_added_once() {
        let mut c = ImageConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.config.env, Some(vec!["A=3".into(), "B=2".into()]));
        c.ensure_path();
        c.ensure_path();
        assert_eq!(c.env_pairs().len(), 3);
        assert_eq!(c.env_pairs()[2].1, DEFAULT_PATH);
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let src = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Foo":1},
            "rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x","empty_layer":true}],
            "container":"abc"}"#;
        let c: ImageConfig = serde_json::from_str(src).unwrap();
        assert_eq!(c.extra["container"], "abc");
        assert_eq!(c.config.extra["Foo"], 1);
        let back: Value = serde_json::from_slice(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(back["config"]["Foo"], 1);
        assert_eq!(back["history"][0]["empty_layer"], true);
        assert!(back.get("created").is_none());
    }
}
