//! One `#[OpenApi]` struct per resource.

pub mod health;
