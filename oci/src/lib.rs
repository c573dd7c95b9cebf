//! strata's image formats and image service.
//!
//! - [`compression`]: magic-byte detection, streamed bounded decompression, parallel gzip and
//!   multithreaded zstd.
//! - [`image`]: image config and manifest JSON (built and parsed with `oci-spec`), `--change`
//!   lines.
//! - [`docker_archive`] and [`oci_layout`]: reading (`load`) and writing (`save`) archives.
//! - [`registry`]: the distribution API client (`pull`, `push`, `login`, `search`).
//! - [`service`]: [`Images`], the image service behind `import`, `load`, `save`, `images`,
//!   `tag`, `rmi`, `inspect` and `history`.

pub mod archive;
pub mod compression;
pub mod docker_archive;
pub mod error;
pub mod image;
pub mod oci_layout;
pub mod registry;
pub mod service;

pub use error::{Error, Result};
pub use service::{ArchiveFormat, HistoryEntry, ImageSummary, Images, Loaded, Removal, Resolved};
