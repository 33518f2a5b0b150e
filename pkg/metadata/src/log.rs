//! Logging to stderr the way LinuxKit's metadata logs: informational messages are printed as they
//! are, debug messages only with `-v`.

use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Turns debug messages on or off.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Whether debug messages are printed.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// An informational message (always printed).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { eprintln!($($arg)*) };
}

/// A debug message (printed with `-v`).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::verbose() {
            eprintln!("debug: {}", format_args!($($arg)*))
        }
    };
}
