//! An instance's states and the actions that move it between them.
//!
//! ```text
//!            Start             Booted
//!  Stopped ────────▶ Starting ────────▶ Running
//!  Failed  ────────▶    │ Fail/Exited      │ Stop            Exited
//!     ▲                 ▼                  ▼                    │
//!     └──────────── Failed ◀── Fail ── Stopping ──── Exited ──▶ Stopped
//! ```
//!
//! Every (state, action) pair is either a transition or a [`TransitionError`]; [`InstanceState::apply`]
//! is the whole table. `Destroy` ends an instance that is not running: it leaves no state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Its process is being started; the guest has not been let run yet.
    Starting,
    /// The guest runs.
    Running,
    /// It was asked to stop and has not exited yet.
    Stopping,
    /// It is not running; its state (disks, MAC, console log) is kept for the next start.
    Stopped,
    /// It could not start, or exited while starting; the record says why.
    Failed,
}

/// Something that happens to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start it.
    Start,
    /// Its guest was let run.
    Booted,
    /// Stop it (gracefully, then by force).
    Stop,
    /// Its process exited.
    Exited,
    /// Starting it failed.
    Fail,
    /// Remove it and its state.
    Destroy,
}

impl InstanceState {
    /// Every state, for tables and tests.
    pub const ALL: [InstanceState; 5] = [
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Failed,
    ];

    /// The state after `action`: `Ok(None)` when the instance is gone (destroyed), a
    /// [`TransitionError`] when the action is not allowed in this state.
    pub fn apply(self, action: Action) -> Result<Option<InstanceState>, TransitionError> {
        use Action as A;
        use InstanceState as S;
        let next = match (self, action) {
            (S::Stopped | S::Failed, A::Start) => S::Starting,
            (S::Starting, A::Booted) => S::Running,
            (S::Starting, A::Fail | A::Exited) | (S::Running | S::Stopping, A::Fail) => S::Failed,
            (S::Starting | S::Running | S::Stopping, A::Stop) => S::Stopping,
            (S::Running | S::Stopping, A::Exited) => S::Stopped,
            (S::Stopped | S::Failed, A::Destroy) => return Ok(None),
            (state, action) => return Err(TransitionError { state, action }),
        };
        Ok(Some(next))
    }

    /// Whether a process may be running in this state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            InstanceState::Starting | InstanceState::Running | InstanceState::Stopping
        )
    }

    /// The lower-case name (`running`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Booted => "mark as booted",
            Action::Stop => "stop",
            Action::Exited => "mark as exited",
            Action::Fail => "mark as failed",
            Action::Destroy => "destroy",
        })
    }
}

/// An action that is not allowed in the instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an instance that is {state}{}", hint(*state, *action))]
pub struct TransitionError {
    /// The state it is in.
    pub state: InstanceState,
    /// The action refused.
    pub action: Action,
}

fn hint(state: InstanceState, action: Action) -> &'static str {
    match (state, action) {
        (s, Action::Destroy) if s.is_active() => ": stop it first",
        (s, Action::Start) if s.is_active() => ": it already runs",
        (_, Action::Stop) => ": it does not run",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [Action; 6] = [
        Action::Start,
        Action::Booted,
        Action::Stop,
        Action::Exited,
        Action::Fail,
        Action::Destroy,
    ];

    /// The whole table, written out: `Some(Some(s))` goes to `s`, `Some(None)` destroys, `None`
    /// is refused.
    fn expected(state: InstanceState, action: Action) -> Option<Option<InstanceState>> {
        use Action as A;
        use InstanceState as S;
        let to = |s| Some(Some(s));
        match state {
            S::Stopped => match action {
                A::Start => to(S::Starting),
                A::Destroy => Some(None),
                A::Booted | A::Stop | A::Exited | A::Fail => None,
            },
            S::Failed => match action {
                A::Start => to(S::Starting),
                A::Destroy => Some(None),
                A::Booted | A::Stop | A::Exited | A::Fail => None,
            },
            S::Starting => match action {
                A::Booted => to(S::Running),
                A::Stop => to(S::Stopping),
                A::Exited | A::Fail => to(S::Failed),
                A::Start | A::Destroy => None,
            },
            S::Running => match action {
                A::Stop => to(S::Stopping),
                A::Exited => to(S::Stopped),
                A::Fail => to(S::Failed),
                A::Start | A::Booted | A::Destroy => None,
            },
            S::Stopping => match action {
                A::Stop => to(S::Stopping),
                A::Exited => to(S::Stopped),
                A::Fail => to(S::Failed),
                A::Start | A::Booted | A::Destroy => None,
            },
        }
    }

    #[test]
    fn every_state_and_action_pair_is_a_transition_or_a_typed_error() {
        let mut allowed = 0;
        for state in InstanceState::ALL {
            for action in ACTIONS {
                match (state.apply(action), expected(state, action)) {
                    (Ok(next), Some(want)) => {
                        assert_eq!(next, want, "{state} + {action:?}");
                        allowed += 1;
                    }
                    (Err(e), None) => assert_eq!(e, TransitionError { state, action }),
                    (got, want) => panic!("{state} + {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(allowed, 14, "30 pairs, 14 of them transitions");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let e = InstanceState::Running.apply(Action::Destroy).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot destroy an instance that is running: stop it first"
        );
        let e = InstanceState::Stopped.apply(Action::Stop).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot stop an instance that is stopped: it does not run"
        );
        let e = InstanceState::Starting.apply(Action::Start).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot start an instance that is starting: it already runs"
        );
    }

    #[test]
    fn states_serialize_as_lower_case_names() {
        for state in InstanceState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<InstanceState>(&json).unwrap(), state);
        }
    }
}
