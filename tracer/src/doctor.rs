//! `tracer doctor`: what tracer can do on this kernel, without watching.
//! Loads and attaches every program once, reports, and detaches.

use anyhow::Result;

use crate::{
    cli::DoctorArgs,
    ebpf,
    family::{self, Settings},
    kernel_btf, preflight,
};

pub fn run(args: DoctorArgs) -> Result<()> {
    println!("tracer {} doctor", env!("CARGO_PKG_VERSION"));
    println!("kernel:     {}", preflight::kernel_release());
    let mut ok = true;
    let mut check = |what: &str, result: Result<String>| match result {
        Ok(detail) => println!("{what:<11} ok: {detail}"),
        Err(e) => {
            ok = false;
            println!("{what:<11} FAIL: {e:#}");
        }
    };
    check(
        "privileges",
        preflight::check_privileges().map(|()| "can load BPF programs".into()),
    );
    check(
        "tracefs",
        preflight::ensure_tracefs().map(|t| format!("{} ({t:?})", preflight::TRACEFS)),
    );
    let btf_path = args
        .host
        .btf
        .clone()
        .unwrap_or_else(|| kernel_btf::DEFAULT_BTF.into());
    let offsets = kernel_btf::load(&btf_path).and_then(|btf| kernel_btf::resolve(&btf));
    let offsets = match offsets {
        Ok(r) => {
            let missing: Vec<String> = r
                .missing
                .iter()
                .map(|(m, effect)| format!("{m} ({effect})"))
                .collect();
            let detail = if missing.is_empty() {
                "every member found".to_string()
            } else {
                format!("missing {}", missing.join(", "))
            };
            check(
                "btf",
                Ok(format!(
                    "{} ({detail}); {:?}",
                    btf_path.display(),
                    r.offsets
                )),
            );
            Some(r)
        }
        Err(e) => {
            check("btf", Err(e));
            None
        }
    };
    if let Some(kernel) = offsets {
        // Everything switched on: settings are constants to the verifier,
        // which skips the code they turn off.
        let settings = Settings::everything(&kernel, &args.host.procfs);
        let config = settings.config();
        let hooks: Vec<ebpf::Hook> = family::all_hooks().copied().collect();
        match ebpf::load(
            &kernel.offsets,
            &config,
            &hooks,
            ebpf::DEFAULT_RING_BUFFER_SIZE,
        ) {
            Ok(mut loaded) => {
                settings.mark_degraded(&mut loaded.hooks);
                for h in &loaded.hooks {
                    let label = format!("hook {}", h.hook.name);
                    match h.describe() {
                        Ok(how) => println!("{label:<30} ok: {how}"),
                        Err(e) => {
                            ok &= !h.hook.essential;
                            println!("{label:<30} OFF ({}): {e}", h.hook.without_it);
                        }
                    }
                }
            }
            Err(e) => {
                ok = false;
                println!("programs    FAIL: {e:#}");
            }
        }
    }
    if !ok {
        anyhow::bail!("tracer cannot watch this node as it is (see FAIL above)");
    }
    println!("verdict:    ready");
    Ok(())
}
