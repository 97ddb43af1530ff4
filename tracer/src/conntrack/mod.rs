//! Conntrack state of the node's network namespaces.
//!
//! Conntrack tables, counters and limits are per network namespace, so a
//! drop inside a pod is explained by the pod's own conntrack, not by the
//! host's. Readers here run in the namespace they describe (see
//! [`crate::netns::in_netns`]).

pub mod stats;
