//! `moby ps`, `moby stop NAME`, `moby console NAME`: VMs started by `moby run`, found by name.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm::console::{self, RawTerminal, RelayEnd, DETACH_BYTE};
use vmm::instance::InstanceRecord;
use vmm::qemu::control::{self, Listing, Stopped};
use vmm::qmp::ShutdownReason;
use vmm::state::{process_alive, ProcessStatus};

use crate::cli::{ConsoleArgs, PsArgs, StopArgs};
use crate::run_cmd::state_root;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn status_text(row: &Listing) -> String {
    match (&row.status, &row.run_state) {
        (ProcessStatus::Running { .. }, Some(state)) => state.clone(),
        (ProcessStatus::Running { .. }, None) => "running (QMP busy)".into(),
        (ProcessStatus::Stale { .. }, _) => "exited".into(),
        (ProcessStatus::Stopped, _) => "stopped".into(),
    }
}

pub fn ps(args: PsArgs) -> Result<()> {
    let root = state_root()?;
    let rows = runtime()?.block_on(control::list(&root))?;
    let mut table = vec![["NAME", "STATUS", "PID", "ACCEL", "CPUS", "MEM", "PORTS", "IMAGE"].map(String::from)];
    for row in rows {
        let running = matches!(row.status, ProcessStatus::Running { .. });
        if !running && !args.all {
            continue;
        }
        let pid = match row.status {
            ProcessStatus::Running { pid } => pid.to_string(),
            _ => "-".into(),
        };
        let r = row.record.as_ref();
        let field = |f: &dyn Fn(&InstanceRecord) -> String| r.map(f).unwrap_or_else(|| "-".into());
        table.push([
            row.name.clone(),
            status_text(&row),
            pid,
            field(&|r| r.accel.clone()),
            field(&|r| r.cpus.to_string()),
            field(&|r| format!("{}M", r.memory_mib)),
            field(&|r| {
                if r.publish.is_empty() {
                    "-".into()
                } else {
                    r.publish.join(",")
                }
            }),
            field(&|r| r.image.display().to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    crate::print_text(text)
}

pub fn stop(args: StopArgs) -> Result<()> {
    let root = state_root()?;
    let rt = runtime()?;
    let timeout = Duration::from_secs(args.timeout);
    let mut failed = 0;
    if let [name] = args.names.as_slice() {
        let state = control::existing(&root, name)?;
        report_stop(name, rt.block_on(control::stop(&state, timeout))?, args.timeout);
        return Ok(());
    }
    for name in &args.names {
        let result = control::existing(&root, name).and_then(|state| rt.block_on(control::stop(&state, timeout)));
        match result {
            Ok(stopped) => report_stop(name, stopped, args.timeout),
            Err(e) => {
                crate::print_error(&e.to_string());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} VMs could not be stopped", args.names.len());
    }
    Ok(())
}

fn report_stop(name: &str, stopped: Stopped, timeout_secs: u64) {
    match stopped {
        Stopped::PoweredDown(s) if s.reason == ShutdownReason::GuestShutdown => {
            tracing::info!("VM `{name}` powered off after the ACPI power button")
        }
        Stopped::PoweredDown(s) => tracing::info!("VM `{name}` stopped ({})", s.reason),
        Stopped::Quit => tracing::warn!(
            "VM `{name}` did not power off within {timeout_secs}s of the ACPI power button; qemu was told to quit"
        ),
        Stopped::Signalled(why) => {
            tracing::warn!("VM `{name}`: QMP did not answer ({why}); qemu was terminated by signal")
        }
    }
}

pub fn console(args: ConsoleArgs) -> Result<()> {
    let root = state_root()?;
    let state = control::existing(&root, &args.name)?;
    let ProcessStatus::Running { .. } = state.status()? else {
        bail!(
            "VM `{}` is not running; its last console output is in {}",
            args.name,
            state.console_log().display()
        );
    };
    if let Some(owner) = InstanceRecord::read(&state)?.and_then(|r| r.owner_pid) {
        if process_alive(owner) {
            bail!(
                "VM `{}` runs in the foreground of `moby run` (pid {owner}), which holds its console; \
                 its output is also in {}",
                args.name,
                state.console_log().display()
            );
        }
    }
    if !args.no_replay {
        crate::print_text(std::fs::read(state.console_log()).unwrap_or_default())?;
    }
    let mut stdout = std::io::stdout();
    tracing::info!("attached to `{}`; Ctrl-] detaches", args.name);
    let raw = RawTerminal::enter(false).context("cannot put the terminal in raw mode")?;
    let end = runtime()?.block_on(async {
        let stream = console::attach(&state.console_socket()).await?;
        console::relay(stream, Some(DETACH_BYTE), &mut stdout).await
    });
    let _ = stdout.flush();
    drop(raw);
    match end? {
        RelayEnd::Detached => tracing::info!("detached from `{}`; it keeps running", args.name),
        RelayEnd::Closed => tracing::info!("VM `{}` exited", args.name),
    }
    Ok(())
}
