//! One module per command; `main` only parses and dispatches.

pub mod serve;
