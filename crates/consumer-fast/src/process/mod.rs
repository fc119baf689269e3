//! Concurrent processing: many messages of a partition handled at once,
//! order kept per key (or partition), only completed work committed.
//!
//! [`Consumer::process`](crate::Consumer::process) drives a handler;
//! [`Consumer::processing_stream`](crate::Consumer::processing_stream) hands
//! out messages with acknowledgements for an application's own tasks. Both
//! run on [`engine::Engine`]: a polling thread routes each message to its
//! order group; per partition, a [`tracker::PartitionTracker`] knows the
//! highest offset below which everything is done, and which messages above
//! it are done too, for the commit and its metadata.

mod dead_letter;
mod engine;
mod options;
mod runner;
mod tracker;
mod work;

pub(crate) use engine::RebalanceHook;

pub use dead_letter::{
    DeadLetterTopic, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION, HEADER_ORIGINAL_TOPIC,
};
pub use options::{DeadLetterLimit, ProcessOptions, ProcessingOrder, RetryPolicy};
pub use runner::{BoxError, DeadLetter, DeadLetterHook, ProcessError, Processor};
pub use work::{Ack, ProcessingStream, Work};
