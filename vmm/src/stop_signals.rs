//! The signals that stop a VM running in this process's foreground: SIGINT (Ctrl-C), SIGTERM
//! and SIGHUP (the terminal went away), watched from the moment [`StopSignals::watch`] returns.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT, SIGTERM and SIGHUP, taken over from their default action (ending this process) for as
/// long as this lives.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    /// Starts watching the three signals.
    pub fn watch() -> io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next of them (cancel safe: one that arrives meanwhile is kept).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::Signal;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    /// Set in the child process the test runs itself in: signals sent to the test process would
    /// reach every other test watching them.
    const CHILD: &str = "VMM_STOP_SIGNALS_CHILD";

    #[tokio::test]
    async fn each_stop_signal_is_received_and_none_ends_the_process() {
        if std::env::var_os(CHILD).is_some() {
            let mut signals = StopSignals::watch().unwrap();
            println!("watching");
            for _ in 0..3 {
                tokio::time::timeout(Duration::from_secs(10), signals.recv())
                    .await
                    .expect("a signal");
                println!("received");
            }
            return;
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "stop_signals::tests::each_stop_signal_is_received_and_none_ends_the_process",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |want: &str| {
            let found = lines.by_ref().map_while(Result::ok).any(|line| line.ends_with(want));
            assert!(found, "the child never printed {want:?}");
        };
        next("watching");
        for signal in [Signal::HUP, Signal::TERM, Signal::INT] {
            crate::process::send(child.id(), signal);
            next("received");
        }
        assert!(child.wait().unwrap().success());
    }
}
