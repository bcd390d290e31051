//! The subset of Go's `text/template` that matchbox users write in templates.
