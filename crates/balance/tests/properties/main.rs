//! Property tests of `wayfinder-balance`: one binary (one link on a shared 2-core machine), one
//! module per guarantee. Every run is reproducible: proptest's own seed is fixed (see
//! `common::config`) and every strategy draws from a `fastrand::Rng` seeded by the case.

mod common;
mod consistent_hash;
mod distribution;
mod load_aware;
mod safety;
mod slow_start;
mod split;
