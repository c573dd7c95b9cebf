//! strata's deduplicating content-addressed store.
//!
//! Everything strata keeps lives under one root (`--root`), shared safely by any number of strata
//! processes: blobs by digest, regular files as deduplicated objects, layers (unpacked trees made
//! of hardlinks to objects, plus a record that regenerates their tar byte for byte), refs, and the
//! leases that keep GC away from work in progress. See `DESIGN` notes in each module.

pub mod blob;
pub mod commit;
pub mod digest;
pub mod error;
pub mod extract;
pub mod failpoint;
pub mod gc;
pub mod layer;
pub mod lease;
pub mod object;
pub mod platform;
pub mod record;
pub mod reference;
pub mod refs;
pub mod store;
pub mod tarwrite;
pub mod usage;
pub mod verify;

pub use commit::{Hashed, LayerBase, PendingLayer};
pub use digest::Digest;
pub use error::{Error, Result};
pub use layer::{Compression, LayerInfo};
pub use platform::Platform;
pub use reference::Reference;
pub use store::Store;
