//! The seeded RNG and sampling every source stage uses live in `dvx-seeded`.

pub use dvx_seeded::{sample_indices, SplitMix64};
