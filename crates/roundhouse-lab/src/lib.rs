//! `roundhouse lab`: a simulated fleet and a boot server on this machine, ready for
//! `plan`/`apply`/`status`, and the narrated demo. See docs/lab.md.
