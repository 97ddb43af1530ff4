//! `tracer top`: a live view of who waits for IO, refreshed every interval,
//! in the manner of top and iotop: per pod and per process IO wait and
//! bytes, per device requests and latency, the node's IO pressure. Keys
//! sort; `q` quits. When stdout is not a terminal (or with `--batch`) the
//! frames are printed one after the other, as `top -b` does.

pub mod render;
pub mod terminal;
pub mod view;

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{
    attribution::Attributor,
    cli::TopArgs,
    ebpf,
    family::Settings,
    iowait::{
        self,
        sample::{Sample, Sampler},
    },
    kernel_btf, preflight,
};

pub fn run(args: TopArgs) -> Result<()> {
    preflight::check_privileges()?;
    crate::host_paths::check(&args.host)?;
    let preparation = ebpf::Preparation::start();
    let resolved = kernel_btf::load_and_resolve(args.host.btf.as_deref())?;
    preflight::ensure_tracefs()?;
    // Only the IO wait family's hooks, and no stall reported: top reads the
    // kernel's totals, it reports no events.
    let config = Settings::nothing().config();
    let mut loaded = ebpf::load_prepared(
        preparation,
        &resolved.offsets,
        &config,
        iowait::family::HOOKS,
        4096,
        &[],
    )?;
    let io = iowait::IoMaps::take(&mut loaded.ebpf)?;
    let mut notes = Vec::new();
    for h in &loaded.hooks {
        if let Err(e) = &h.attached {
            notes.push(format!("hook {} OFF: {}", h.hook.name, h.hook.without_it));
            tracing::warn!("hook {} OFF ({}): {e}", h.hook.name, h.hook.without_it);
        }
    }
    if loaded.hooks.iter().all(|h| h.attached.is_err()) {
        anyhow::bail!("no IO hook attached: nothing to show");
    }

    let batch = args.batch || !std::io::stdout().is_terminal();
    let iterations = if args.once { Some(1) } else { args.iterations };
    let interval = Duration::from_secs_f64(args.interval);
    let mut attributor = Attributor::new(&args.host.procfs, &args.host.host_root);
    let mut namer = view::Namer::new(&args.host.procfs);
    let mut sampler = Sampler::new(&args.host.procfs);
    let mut sample = Sample::default();
    let mut sort = view::SortKey::IoWait;
    let mut lines = Vec::new();
    sampler.sample(&io, &mut sample);
    let mut last = Instant::now();
    // The interval the rates on screen were measured over.
    let mut shown_interval = args.interval;

    let mut screen = if batch {
        None
    } else {
        Some(terminal::Screen::enter().context("setting up the terminal")?)
    };
    crate::heap::release_free_pages();
    let mut frames = 0u64;
    loop {
        // Wait for the next frame, answering keys meanwhile.
        let deadline = last + interval;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match &mut screen {
                Some(screen) => {
                    // A new sort order or a new size: redrawn at once, on
                    // the last sample.
                    let redraw = match screen.key(left)? {
                        Some(terminal::Key::Quit) => return Ok(()),
                        Some(terminal::Key::Char(c)) => match view::SortKey::from_key(c) {
                            Some(key) => {
                                sort = key;
                                true
                            }
                            None => false,
                        },
                        Some(terminal::Key::Resize) => true,
                        None => false,
                    };
                    if redraw {
                        draw(
                            &mut lines,
                            screen,
                            &sample,
                            shown_interval,
                            sort,
                            &notes,
                            &mut namer,
                            &mut attributor,
                        )?;
                    }
                }
                None => std::thread::sleep(left),
            }
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).as_secs_f64();
        last = now;
        shown_interval = elapsed;
        sampler.sample(&io, &mut sample);
        // Hung tasks may still come through the ring buffer: top has no use
        // for them, and must not let it fill.
        while loaded.events.next().is_some() {}
        match &mut screen {
            Some(screen) => draw(
                &mut lines,
                screen,
                &sample,
                elapsed,
                sort,
                &notes,
                &mut namer,
                &mut attributor,
            )?,
            None => {
                let view = view::build(&sample, elapsed, sort, &mut namer, &mut attributor);
                render::frame(&view, sort, &clock(), &notes, 80, usize::MAX, &mut lines);
                let mut out = std::io::stdout().lock();
                for line in &lines {
                    writeln!(out, "{line}")?;
                }
                writeln!(out)?;
                out.flush()?;
            }
        }
        frames += 1;
        if iterations.is_some_and(|n| frames >= n) {
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn draw(
    lines: &mut Vec<String>,
    screen: &mut terminal::Screen,
    sample: &Sample,
    interval_s: f64,
    sort: view::SortKey,
    notes: &[String],
    namer: &mut view::Namer,
    attributor: &mut Attributor,
) -> Result<()> {
    let view = view::build(sample, interval_s, sort, namer, attributor);
    let (width, height) = screen.size();
    render::frame(&view, sort, &clock(), notes, width, height, lines);
    screen.draw(lines)
}

fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
