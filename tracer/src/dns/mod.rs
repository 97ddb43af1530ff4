//! DNS as the node's pods use it: messages parsed from captured packets, and
//! queries followed to their answers, retries and drops.

pub mod tracker;
pub mod wire;
