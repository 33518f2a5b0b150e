//! `moby`: build minimal, immutable Linux images from LinuxKit YAML specs, without a Docker daemon.

mod build_cmd;
mod cache_cmd;
mod cli;
mod pkg_cmd;
mod run_cmd;
mod run_hyperkit;
mod run_vmware;
mod vm_cmd;

use std::process::ExitCode;

use builder::assemble::BuildError;
use builder::image::DamagedBlob;
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::normalize_args(std::env::args_os()));
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Build(args) => build_cmd::run(args),
        Command::Cache(args) => cache_cmd::run(args),
        Command::Pkg(args) => pkg_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Ps(args) => vm_cmd::ps(args),
        Command::Stop(args) => vm_cmd::stop(args),
        Command::Console(args) => vm_cmd::console(args),
        Command::Version => {
            println!("moby {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", report(&err));
            if let Some(hint) = hint(&err) {
                eprintln!("Hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Progress goes to stderr like LinuxKit's log; `-v` adds detail, `-q` keeps only errors.
fn init_logging(verbose: u8, quiet: bool) {
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
        .with_writer(std::io::stderr)
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
    let damage = err.chain().find_map(|cause| match cause.downcast_ref::<BuildError>() {
        Some(BuildError::Image(image)) => DamagedBlob::find(&**image),
        _ => DamagedBlob::find(cause),
    })?;
    Some(format!(
        "run `moby cache rm {}`, or build again with --pull, to fetch a good copy of the image",
        damage.image
    ))
}

/// A closed stdout (e.g. `moby build -o - x.yml | head`) is not an error worth reporting.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
