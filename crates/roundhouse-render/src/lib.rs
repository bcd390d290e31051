//! Per-node rendering.
