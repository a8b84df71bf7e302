//! The exporter's own vocabulary: plain types and the interfaces the outside implements. Imports
//! nothing else from the crate, so that every other layer can import it.

pub mod calls;
pub mod families;
pub mod ids;
pub mod launches;
pub mod model;
pub mod ports;
pub mod shard;
pub mod stats;
pub mod sync;
