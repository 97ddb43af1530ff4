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

/// The `_q_first` variants, for kernels whose block tracepoints pass the
/// request queue first (before 5.11), are chosen by the tracepoint's arity
/// in the kernel's BTF. Each is loaded and attached here whatever that
/// choice, and the kernel itself judges it: it refuses to attach a raw
/// tracepoint program that reads past the tracepoint's arguments. So on
/// every kernel each variant must pass the verifier, and attach exactly
/// where the BTF says the queue comes first.
#[test]
fn queue_first_variants_load_and_the_kernel_agrees_with_the_btf_arity() {
    require_root();
    let resolved = kernel_btf::load_and_resolve(None).expect("kernel BTF");
    let config = family::Settings::everything(&resolved, std::path::Path::new("/proc")).config();
    let variants = [
        (
            "io_issue",
            "block_rq_issue_q_first",
            resolved.offsets.block_rq_issue_rq_arg,
        ),
        (
            "io_submit",
            "block_bio_queue_q_first",
            resolved.offsets.block_bio_queue_bio_arg,
        ),
    ];
    for (hook_name, program, arg_by_btf) in variants {
        let hook = family::all_hooks()
            .find(|h| h.name == hook_name)
            .unwrap_or_else(|| panic!("no hook {hook_name}"));
        let candidate = hook
            .candidates
            .iter()
            .find(|c| matches!(c, ebpf::Attach::RawTracepoint { program: p, .. } if *p == program))
            .unwrap_or_else(|| panic!("{hook_name} has no candidate {program}"));
        // As if the BTF said the queue comes first, so that nothing passes
        // the variant over before the kernel sees it.
        let mut forced = resolved.offsets;
        forced.block_rq_issue_rq_arg = 1;
        forced.block_bio_queue_bio_arg = 1;
        let alone = ebpf::Hook {
            candidates: std::slice::from_ref(candidate),
            ..*hook
        };
        let loaded = ebpf::load(&forced, &config, &[alone], ebpf::DEFAULT_RING_BUFFER_SIZE)
            .expect("loading the BPF object");
        let outcome = &loaded.hooks[0].attached;
        eprintln!(
            "hooks: {program} (BTF: queue first {}): {outcome:?}",
            arg_by_btf == 1
        );
        match outcome {
            Ok(_) => assert_eq!(
                arg_by_btf, 1,
                "the kernel took {program}, whose arguments the BTF says it does not have"
            ),
            Err(e) => {
                assert!(
                    e.contains("cannot attach") && !e.contains("refused program"),
                    "{program} must pass the verifier on every kernel: {e}"
                );
                assert_eq!(
                    arg_by_btf, 0,
                    "the BTF says the queue comes first, yet: {e}"
                );
            }
        }
    }
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

    // sched_switch passes prev_state from 5.18; the task's state member is
    // `__state` from 5.14, `state` before.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap(), numbers.next().unwrap());
    let io_wait = hook("io_wait");
    if version >= (5, 18) {
        assert!(io_wait["degraded"].is_null(), "{io_wait}");
    } else {
        let degraded = io_wait["degraded"]
            .as_str()
            .unwrap_or_else(|| panic!("{io_wait}"));
        let member = if version >= (5, 14) {
            "task_struct.__state"
        } else {
            "task_struct.state"
        };
        assert!(
            degraded.contains(member) && degraded.contains("TASK_WAKING"),
            "{io_wait}"
        );
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
