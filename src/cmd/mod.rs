//! One module per command; `main` only parses and dispatches.

pub mod butane;
pub mod common;
pub mod render;
pub mod serve;
