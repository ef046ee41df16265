//! Shared code of the crossplane-lambda functions.
//!
//! The flow every function follows (ARCHITECTURE.md §2):
//!
//! ```text
//! raw payload ─▶ intake (envelopes, shapes) ─▶ CloudEvents of our profile ─▶ ResourceEvent
//!             ─▶ resolution (ARN, guard)   ─▶ handler plan ─▶ AWS actions ─▶ outcome
//! ```
//!
//! * [`intake`] recognises every transport envelope and Crossplane shape by its form,
//!   validates CloudEvents ([`cloudevent`]) and builds [`model::ResourceEvent`]s.
//! * [`resolve`] maps a managed resource to the ARN of its external resource and guards
//!   which accounts, regions and resources a function may touch.
//! * [`aws`] builds the SDK configuration once and counts the calls made.
//! * [`runtime`] runs a [`runtime::Handler`] under the Lambda runtime and shapes its answer
//!   for each transport (direct invocation, SQS partial batch failures, Function URL).
//! * [`fleet`] runs a handler in every account and region it may act in (assuming a role in
//!   the others), and [`sweep`] converges every managed resource there on a schedule.

pub mod aws;
pub mod cache;
pub mod cloudevent;
pub mod crossplane;
pub mod error;
pub mod fleet;
pub mod idempotency;
pub mod intake;
pub mod kinds;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod rds;
pub mod resolve;
pub mod runtime;
pub mod sweep;
pub mod tagging;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{HandlerError, IntakeError};
pub use model::{Lifecycle, ManagedResource, ResourceEvent};
