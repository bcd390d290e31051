//! One module per command; `main` only parses and dispatches.

pub mod apply;
pub mod butane;
pub mod common;
pub mod import;
pub mod lab;
pub mod plan;
pub mod power;
pub mod recreate;
pub mod render;
pub mod serve;
pub mod state;
pub mod status;
