//! Shared code of the fuzz targets: see `harness.rs`, which the integration
//! tests include as well.

#[path = "harness.rs"]
mod harness;

pub use harness::*;
