//! `moby`: build minimal, immutable Linux images from LinuxKit YAML specs, without a Docker daemon.

mod build_cmd;
mod cache_cmd;
mod cli;
mod cluster_cmd;
mod gcp_cmd;
mod pkg_cmd;
mod plugin_cmd;
mod progress;
mod run_cmd;
mod run_hyperkit;
mod run_vmware;
mod vm_cmd;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;

use builder::Progress;
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Started as a private network's switch by an instance joining it.
    if let Some(status) = vmm::network::switch_main() {
        return ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    let bars = progress::Bars::for_stderr(cli.quiet);
    init_logging(cli.verbose, cli.quiet, bars.clone());
    let result = match cli.command {
        Command::Build(args) => build_cmd::run(args, bars.clone().map(|bars| bars as Arc<dyn Progress>)),
        Command::Cache(args) => cache_cmd::run(args),
        Command::Pkg(args) => pkg_cmd::run(args),
        Command::Run(args) => run_cmd::run(args, bars.clone()),
        Command::Ps(args) => vm_cmd::ps(args),
        Command::Stop(args) => vm_cmd::stop(args),
        Command::Console(args) => vm_cmd::console(args),
        Command::Rm(args) => vm_cmd::rm(args),
        Command::Plugin(args) => plugin_cmd::run(args),
        Command::Cluster(args) => cluster_cmd::run(args),
        Command::Push(args) => match args.target {
            cli::PushTarget::Gcp(gcp) => gcp_cmd::push(gcp, bars.clone()),
        },
        Command::Version => print_text(format!("moby {}\n", env!("CARGO_PKG_VERSION"))),
    };
    if let Some(bars) = &bars {
        bars.finish();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|cause| cause.is::<ReaderStopped>()) => ExitCode::SUCCESS,
        Err(err) => {
            print_error(&report(&err));
            if let Some(hint) = hint(&err) {
                let _ = writeln!(io::stderr(), "Hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Writes text (a listing, a name, YAML) to standard output. A reader that stops early, as in
/// `moby ps | head -1`, took what it wanted: that ends the command quietly. (An image cut short
/// the same way is an error: `OutputError::ReaderGone`.)
pub fn print_text(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_ref()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Err(ReaderStopped.into()),
        Err(err) => Err(anyhow::anyhow!("cannot write to standard output: {err}")),
        Ok(()) => Ok(()),
    }
}

/// `rows` as left-aligned columns two spaces apart, one line each (the first row is the header).
pub fn format_table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|row| row.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.as_ref().get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Prints `Error: ...` on stderr; a closed stderr has no one left to tell.
pub fn print_error(text: &str) {
    let _ = writeln!(io::stderr(), "Error: {text}");
}

/// Makes SIGINT and SIGTERM end the process after removing the partial outputs (files written
/// under temporary names), with the status a shell reports for a death by that signal (130, 143).
pub fn remove_partial_outputs_on_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the signal handler: {err}"))?;
    let (mut interrupt, mut terminate) = {
        let _context = runtime.enter();
        let handler = |kind| signal(kind).map_err(|err| anyhow::anyhow!("cannot handle signals: {err}"));
        (handler(SignalKind::interrupt())?, handler(SignalKind::terminate())?)
    };
    std::thread::spawn(move || {
        let status = runtime.block_on(std::future::poll_fn(|cx| {
            if interrupt.poll_recv(cx).is_ready() {
                Poll::Ready(130)
            } else if terminate.poll_recv(cx).is_ready() {
                Poll::Ready(143)
            } else {
                Poll::Pending
            }
        }));
        builder::remove_partial_outputs();
        // The build may be blocked anywhere (a pull, a FIFO without a reader): only ending the
        // process stops it.
        #[allow(clippy::exit)]
        std::process::exit(status);
    });
    Ok(())
}

/// The reader of standard output went away while text was printed (see [`print_text`]).
#[derive(Debug)]
struct ReaderStopped;

impl fmt::Display for ReaderStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reader of standard output stopped reading")
    }
}

impl std::error::Error for ReaderStopped {}

/// Progress goes to stderr like LinuxKit's log (above the progress bars, if any); `-v` adds
/// detail, `-q` keeps only errors.
fn init_logging(verbose: u8, quiet: bool, bars: Option<Arc<progress::Bars>>) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOBY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || progress::LogWriter::new(bars.as_ref()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .with_level(false)
        .init();
}

/// The error and its causes, each cause once: library errors often already quote their cause in
/// their own message, so a cause whose text is already there is not repeated.
fn report(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// What to do, in the CLI's words, about an error whose library text cannot name commands.
fn hint(err: &anyhow::Error) -> Option<String> {
    let damage = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<builder::Error>()?.damaged_blob())?;
    Some(format!(
        "run `moby cache rm {}`, or build again with --pull, to fetch a good copy of the image",
        damage.image
    ))
}
