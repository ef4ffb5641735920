//! The product's core, free of any web framework: the rate limiter that guards the
//! owner's bill, the image generators, image storage, and the flow that ties them
//! together. Everything here is plain async Rust behind small traits, so tests swap
//! any part without a browser or a server.

pub mod clock;
pub mod gallery;
pub mod generation;
pub mod generator;
pub mod jobs;
pub mod on_drop;
pub mod ratelimit;
pub mod shared;
pub mod storage;
