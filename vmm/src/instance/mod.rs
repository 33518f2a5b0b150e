//! Instances: what to start ([`Request`]), the record of one ([`InstanceRecord`], with its tags,
//! logical id and spec digest), and its states with the transitions between them
//! ([`InstanceState`], [`Action`]).

mod lifecycle;
mod record;
mod request;

pub use lifecycle::{Action, InstanceState, TransitionError};
pub use record::{matches, BackendKind, InstanceRecord, Tags};
pub use request::Request;

#[cfg(test)]
pub(crate) use record::sample;
