//! Helpers for the console lines, which each family writes for its own
//! events in the shape on-call engineers know from kernel probes, plus the
//! pod.

use std::fmt::Write as _;

use super::escape::Escaped;
use crate::{attribution::Attribution, process::ProcessRef};

/// ` [pod default/web container app]`, or nothing for a host process.
pub fn label(out: &mut String, a: &Attribution) {
    if a.has_label() {
        let _ = write!(out, " [{}]", Escaped(a.label_text()));
    }
}

/// `server(7942)`.
pub fn process(out: &mut String, p: &ProcessRef) {
    let _ = write!(out, "{}({})", Escaped(&p.comm), p.pid);
}
