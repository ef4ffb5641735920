//! The product's core, free of any web framework. The web side talks to one
//! front door, [`studio::Studio`], whose use cases (generate, quota, progress,
//! cancel, recent images, image) run on the parts below: the rate limiter that
//! guards the owner's bill, the image generators, image storage, generations in
//! flight and recent images, over a neutral store layer (memory, Redis, Upstash).

pub mod charge;
pub mod clock;
pub mod cpu;
pub mod gallery;
pub mod generation;
pub mod generator;
pub mod jobs;
pub mod on_drop;
pub mod ratelimit;
pub mod shared;
pub mod storage;
pub mod store;
pub mod studio;
pub mod variants;
pub mod visitor;
