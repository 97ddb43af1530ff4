//! Every way tracer attaches to a hook, on this kernel. A hook's first
//! candidate that the kernel accepts is the one `watch` uses, so a broken
//! fallback would go unnoticed wherever the preferred program loads: here
//! each candidate is loaded and attached on its own.

use tracer::{ebpf, family, kernel_btf};

use crate::harness::require_root;

/// Tracepoints of all kinds (raw, classic, BTF-typed) must load and attach
/// on every kernel of the matrix; fentry and kprobes where the kernel allows
/// them, which the guests do (this host refuses both).
#[test]
fn every_candidate_program_passes_the_verifier() {
    require_root();
    let resolved = kernel_btf::load_and_resolve(None).expect("kernel BTF");
    // Everything switched on, as `watch` runs by default: the settings are
    // constants to the verifier, which skips the code they turn off.
    let config = family::Settings::everything(&resolved, std::path::Path::new("/proc")).config();
    let in_guest = std::env::var("TRACER_DISPOSABLE_GUEST").as_deref() == Ok("1");
    let mut failures = Vec::new();
    for hook in family::all_hooks() {
        let suited: Vec<&ebpf::Attach> = hook
            .candidates
            .iter()
            .filter(
                |candidate| match ebpf::unsuited(candidate, &resolved.offsets) {
                    // A variant for other kernels' tracepoint arguments: it
                    // would attach and read the wrong ones.
                    Some(why) => {
                        eprintln!("hooks: {} not for this kernel: {why}", hook.name);
                        false
                    }
                    None => true,
                },
            )
            .collect();
        if suited.is_empty() {
            failures.push(format!("{}: no candidate suits this kernel", hook.name));
        }
        for candidate in suited {
            let alone = ebpf::Hook {
                candidates: std::slice::from_ref(candidate),
                ..*hook
            };
            let loaded = ebpf::load(
                &resolved.offsets,
                &config,
                &[alone],
                ebpf::DEFAULT_RING_BUFFER_SIZE,
            )
            .expect("loading the BPF object");
            let outcome = &loaded.hooks[0].attached;
            eprintln!(
                "hooks: {} via {}: {outcome:?}",
                hook.name,
                candidate.describe()
            );
            let must_attach = match candidate {
                ebpf::Attach::RawTracepoint { .. }
                | ebpf::Attach::Tracepoint { .. }
                | ebpf::Attach::BtfTracepoint { .. } => true,
                ebpf::Attach::FEntry { .. }
                | ebpf::Attach::KProbe { .. }
                | ebpf::Attach::KProbeAndReturn { .. } => in_guest,
            };
            if let (true, Err(e)) = (must_attach, outcome) {
                failures.push(format!("{} via {}: {e}", hook.name, candidate.describe()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
