//! `moby ps`, `moby stop NAME`, `moby console NAME`, `moby rm NAME`: instances found by name under
//! the state root, whatever their backend.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm::console::{self, RawTerminal, RelayEnd, DETACH_BYTE};
use vmm::{Action, AnyBackend, Backend, StateError, Stopped, Tags, TransitionError, VmError};

use crate::cli::{ConsoleArgs, PsArgs, RmArgs, StopArgs};
use crate::run_cmd::{runtime, state_root};

pub fn ps(args: PsArgs) -> Result<()> {
    let root = state_root()?;
    let filter: Tags = args.filter.into_iter().collect();
    let rows = runtime()?.block_on(AnyBackend::list_all(&root, &filter))?;
    let header = [
        "NAME", "BACKEND", "STATUS", "PID", "ACCEL", "CPUS", "MEM", "PORTS", "NETWORK", "TAGS", "IMAGE",
    ];
    let mut table = vec![header.map(String::from)];
    for r in rows.iter().filter(|r| args.all || r.state.is_active()) {
        let or_dash = |text: String| if text.is_empty() { "-".to_string() } else { text };
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.push([
            r.name.clone(),
            r.backend.to_string(),
            r.state.to_string(),
            or_dash(r.pid.map(|p| p.to_string()).unwrap_or_default()),
            or_dash(r.accel.clone().unwrap_or_default()),
            r.cpus.to_string(),
            format!("{}M", r.memory_mib),
            or_dash(r.publish.join(",")),
            match (&r.network, &r.address) {
                (Some(network), Some(address)) => format!("{network}:{address}"),
                (_, Some(address)) => address.clone(),
                _ => "-".to_string(),
            },
            or_dash(tags.join(",")),
            r.image.display().to_string(),
        ]);
    }
    crate::print_text(crate::format_table(&table))
}

/// Runs `act` on each named instance: one name fails the command with its error; with several,
/// each failure is printed and the command fails at the end.
fn each_instance(names: &[String], what: &str, mut act: impl FnMut(&str) -> Result<()>) -> Result<()> {
    if let [name] = names {
        return act(name);
    }
    let mut failed = 0;
    for name in names {
        if let Err(e) = act(name) {
            crate::print_error(&format!("{e:#}"));
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} VMs could not be {what}", names.len());
    }
    Ok(())
}

/// A lifecycle error in the CLI's words.
fn vm_error(err: VmError) -> anyhow::Error {
    match &err {
        VmError::Transition {
            name,
            source: TransitionError {
                action: Action::Stop, ..
            },
        } => anyhow::anyhow!("VM `{name}` is not running; `moby ps -a` lists VMs"),
        VmError::State(StateError::Unknown { .. }) => anyhow::anyhow!("{err}; `moby ps -a` lists VMs"),
        _ => err.into(),
    }
}

pub fn stop(args: StopArgs) -> Result<()> {
    let root = state_root()?;
    let rt = runtime()?;
    let timeout = Duration::from_secs(args.timeout);
    each_instance(&args.names, "stopped", |name| {
        let stopped = rt.block_on(async {
            let backend = AnyBackend::for_instance(&root, name)?;
            backend.stop(name, timeout).await
        });
        report_stop(name, stopped.map_err(vm_error)?, args.timeout);
        Ok(())
    })
}

fn report_stop(name: &str, stopped: Stopped, timeout_secs: u64) {
    match stopped {
        Stopped::PoweredDown => tracing::info!("VM `{name}` powered off after the ACPI power button"),
        Stopped::ShutDown(reason) => tracing::info!("VM `{name}` stopped ({reason})"),
        Stopped::Quit => tracing::warn!(
            "VM `{name}` did not power off within {timeout_secs}s of the ACPI power button; it was told to quit"
        ),
        Stopped::Signalled(why) => {
            tracing::warn!("VM `{name}`: the VM program did not answer ({why}); it was terminated by signal")
        }
    }
}

pub fn rm(args: RmArgs) -> Result<()> {
    let root = state_root()?;
    let rt = runtime()?;
    let timeout = Duration::from_secs(args.timeout);
    each_instance(&args.names, "removed", |name| {
        rt.block_on(async {
            let backend = AnyBackend::for_instance(&root, name)?;
            backend.destroy(name, timeout).await
        })
        .map_err(vm_error)?;
        tracing::info!("VM `{name}` removed");
        Ok(())
    })
}

pub fn console(args: ConsoleArgs) -> Result<()> {
    let root = state_root()?;
    let rt = runtime()?;
    let name = &args.name;
    let console = rt
        .block_on(async { AnyBackend::for_instance(&root, name)?.console(name).await })
        .map_err(vm_error)?;
    if let (false, Some(log)) = (args.no_replay, console.history()) {
        crate::print_text(std::fs::read(log).unwrap_or_default())?;
    }
    let mut stdout = std::io::stdout();
    tracing::info!("attached to `{name}`; Ctrl-] detaches");
    let raw = RawTerminal::enter(false).context("cannot put the terminal in raw mode")?;
    let end = rt.block_on(console::relay(console, Some(DETACH_BYTE), &mut stdout));
    let _ = stdout.flush();
    drop(raw);
    match end? {
        RelayEnd::Detached => tracing::info!("detached from `{name}`; it keeps running"),
        RelayEnd::Closed => tracing::info!("VM `{name}` exited"),
    }
    Ok(())
}
