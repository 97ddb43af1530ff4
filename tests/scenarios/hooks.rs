//! Every way tracer attaches to a hook, on this kernel. A hook's first
//! candidate that the kernel accepts is the one `watch` uses, so a broken
//! fallback would go unnoticed wherever the preferred program loads: here
//! each candidate is loaded and attached on its own.

use tracer::{ebpf, family, kernel_btf};

use crate::harness::{require_root, start_hook, Tracer, Workdir};

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

/// The start record says which way each hook attached, why a better one was
/// passed over, and what the hook cannot tell on this kernel. Checked
/// against the kernel itself: `kfree_skb`'s tracefs format has a `reason`
/// field from 5.17 on, and kprobes exist where `/sys/bus/event_source`
/// lists them (the guests; not this host).
#[test]
fn start_record_names_each_hooks_choice_fallback_and_degradation() {
    require_root();
    let work = Workdir::new();
    let tracer = Tracer::start(&work, &work.host_root(), &[]);
    let records = tracer.records();
    let hook = |name: &str| start_hook(&records, name).unwrap_or_else(|| panic!("no hook {name}"));

    let format = std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
        .expect("kfree_skb's tracefs format");
    let drop = hook("packet_drop");
    if format.contains("reason") {
        assert!(drop["degraded"].is_null(), "{drop}");
    } else {
        let degraded = drop["degraded"]
            .as_str()
            .unwrap_or_else(|| panic!("{drop}"));
        assert!(degraded.contains("nf_hook_slow"), "{drop}");
    }

    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let page_alloc = hook("page_alloc");
    if kprobes {
        assert_eq!(page_alloc["attached"], "kprobe warn_alloc", "{page_alloc}");
        assert!(page_alloc["fallback_because"].is_null(), "{page_alloc}");
    } else {
        assert_eq!(
            page_alloc["attached"], "raw tracepoint mm_page_alloc",
            "{page_alloc}"
        );
        let why = page_alloc["fallback_because"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            why.contains("warn_alloc") && why.contains("no kprobes"),
            "{page_alloc}"
        );
    }
    tracer.stop();
}

/// `--skip-hook` with a way no hook attaches: one line, before anything is
/// attached.
#[test]
fn unknown_skip_hook_is_refused() {
    require_root();
    let args = ["watch", "--skip-hook", "kprobe no_such_function"];
    let (status, stderr) = crate::harness::run_tracer(&args, None);
    assert!(!status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("--skip-hook"), "{stderr}");
}
