//! [`PollingThreadSlot`]: a consumer runs at most one polling thread of its
//! own, a Dedicated stream's or concurrent processing's.

use std::sync::atomic::{AtomicU8, Ordering};

use consumer_api::Misuse;

/// What runs a polling thread of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollingThread {
    Dedicated = 1,
    Processing = 2,
}

/// Which polling thread a consumer runs: two would share its messages.
#[derive(Debug, Default)]
pub(crate) struct PollingThreadSlot(AtomicU8);

const FREE: u8 = 0;

impl PollingThreadSlot {
    /// Takes the slot for `thread`, or says what holds it.
    pub(crate) fn claim(&self, thread: PollingThread) -> Result<(), Misuse> {
        match self
            .0
            .compare_exchange(FREE, thread as u8, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(held) if held == PollingThread::Dedicated as u8 => {
                Err(Misuse::DedicatedStreamAlreadyOpen)
            }
            Err(_) => Err(Misuse::PollingThreadRunning),
        }
    }

    /// Frees the slot.
    pub(crate) fn release(&self) {
        self.0.store(FREE, Ordering::Release);
    }
}
