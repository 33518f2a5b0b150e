//! `init`: PID 1 of a moby image, and `service`: its control command. One static multi-call binary.
//!
//! - `init` (argv0 `init`, or `/init`): see [`boot`] for the system set-up and [`supervisor`] for the
//!   containers under `/containers/{onboot,services,onshutdown}` (run with youki's libcontainer).
//! - `service CMD ...` (argv0 `service`, or `init service CMD ...`): talks to the running init over
//!   [`control::SOCKET`]; see [`control::usage`].
//! - `modprobe [-q] NAME...` (argv0 `modprobe`): what the kernel runs for its own module requests
//!   (see [`coldplug::MODPROBE_LINK`]).

mod boot;
mod bundle;
mod coldplug;
mod control;
mod exec;
mod netlink;
mod rootdev;
mod supervisor;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if argv0 == "service" {
        return control::client(&args[1..]);
    }
    if argv0 == "modprobe" {
        return coldplug::modprobe(&args[1..]);
    }
    if args.get(1).map(String::as_str) == Some("service") {
        args.remove(0);
        return control::client(&args[1..]);
    }
    if std::process::id() != 1 {
        eprintln!(
            "init: must run as PID 1 (the kernel's /init); to control a running init use `service` \
             (or `init service`): {}",
            control::usage()
        );
        return ExitCode::from(2);
    }
    boot::pid1()
}
