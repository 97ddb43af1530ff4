//! Packets: the headers of captured packets and the kernel's drop reasons.

pub mod drops;
