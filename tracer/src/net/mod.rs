//! The network family: packet drops (conntrack clashes, a full table, filter
//! rules, neighbour and listen-queue overflows), DNS lookups that went wrong,
//! and each network namespace's conntrack counters.

pub mod drops;
pub mod event;
pub mod explain;
pub mod family;
pub mod json;
pub mod netstat;
pub mod packet;
pub mod text;
