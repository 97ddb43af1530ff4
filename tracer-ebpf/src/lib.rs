//! Empty on the host: the programs are in the `tracer` binary target, built
//! only for the BPF target. This library exists so that `tracer`'s build
//! script can depend on the crate and be rebuilt when it changes.
#![no_std]
