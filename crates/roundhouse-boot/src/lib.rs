//! The boot server.
