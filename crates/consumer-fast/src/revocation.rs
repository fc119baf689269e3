//! [`RevocationPolicy`]: what happens to the offsets in an [`OffsetBook`]
//! when partitions are revoked, lost or come back.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::offsets::OffsetBook;
use crate::queue::QueueHandle;

/// Serves rdkafka's rebalance callback for a consumer that keeps an
/// [`OffsetBook`]: the revocation half of the at-least-once promise.
///
/// It is the building block both consumers of `tiered-kafka` share: this
/// crate's [`FastContext`](crate::FastContext) and `consumer-legacy`'s
/// `TrackingContext` call [`rebalance`](Self::rebalance) from their
/// `ConsumerContext::rebalance`.
///
/// - **Revoked partitions** leave the book, and the offsets of the messages
///   the application was handed from them are committed before they go to
///   another member. The commit is sent without waiting for its answer: the
///   callback runs wherever the consumer is polled (for a stream, inside
///   `poll_next`, on an executor thread), and a broker round trip there
///   would hold the executor. librdkafka itself holds the rest of the
///   rebalance (the rejoin that lets another member take the partitions)
///   until every commit in flight is answered, so the offsets still land
///   first when the coordinator answers. That wait is bounded by
///   librdkafka: `socket.timeout.ms` (60 s) for a commit sent, and
///   `session.timeout.ms` for one waiting for a coordinator. The answer
///   comes back through the consumer's queue to
///   [`commit_answered`](Self::commit_answered), which the context calls
///   from `ConsumerContext::commit_callback`. Messages of revoked
///   partitions polled before are stale.
/// - **A lost assignment** (the group moved on without this consumer) is not
///   committed: the partitions' new owners read those messages again.
/// - **A failed commit** leaves the partitions' positions with the policy: if
///   a partition comes straight back in the next assignment, reading resumes
///   there, not at the older committed offset, and its position goes back
///   into the book, so this consumer does not repeat itself. Positions of
///   partitions that do not come back are dropped. (Under the cooperative
///   protocol the assignment right after a revocation never holds the
///   revoked partitions, so there the positions are always dropped and a
///   failed commit costs duplicates.) An answer is recognised by its
///   partitions and offsets; an auto-commit of the same offsets answered
///   through the same callback can stand in for it, which at worst hides a
///   failure: duplicates, never a loss.
/// - [`without_commit`](Self::without_commit) turns the commit off for a
///   consumer whose offsets a producer's transactions commit.
///
/// ```
/// use consumer_fast::{OffsetBook, RevocationPolicy};
/// use rdkafka::ClientContext;
/// use rdkafka::consumer::{BaseConsumer, ConsumerContext};
/// use rdkafka::types::RDKafkaRespErr;
/// use rdkafka::TopicPartitionList;
///
/// #[derive(Default)]
/// struct Tracking {
///     book: OffsetBook,
///     revocation: RevocationPolicy,
/// }
///
/// impl ClientContext for Tracking {}
///
/// impl ConsumerContext for Tracking {
///     fn rebalance(
///         &self,
///         consumer: &BaseConsumer<Self>,
///         error: RDKafkaRespErr,
///         partitions: &mut TopicPartitionList,
///     ) {
///         self.revocation
///             .rebalance(consumer, &self.book, error, partitions, |_| {}, |_| {});
///     }
///
///     fn commit_callback(
///         &self,
///         result: rdkafka::error::KafkaResult<()>,
///         offsets: &TopicPartitionList,
///     ) {
///         self.revocation.commit_answered(&result, offsets);
///     }
/// }
/// ```
#[derive(Debug)]
pub struct RevocationPolicy {
    commit: bool,
    /// Commits on revocation sent and not answered yet:
    /// `(topic, partition, next offset)`.
    in_flight: Mutex<Vec<(String, i32, i64)>>,
    /// Positions of revoked partitions whose commit failed, kept until the
    /// next assignment: `(topic, partition, next offset)`.
    uncommitted: Mutex<Vec<(String, i32, i64)>>,
}

impl Default for RevocationPolicy {
    fn default() -> Self {
        RevocationPolicy {
            commit: true,
            in_flight: Mutex::default(),
            uncommitted: Mutex::default(),
        }
    }
}

impl RevocationPolicy {
    /// A policy that commits on revocation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Never commits on revocation: the revoked partitions still leave the
    /// book, and their messages polled before turn stale. For a
    /// transactional consumer, whose offsets the producer's transactions
    /// commit.
    pub fn without_commit(mut self) -> Self {
        self.commit = false;
        self
    }

    /// Serves one rebalance: call it from `ConsumerContext::rebalance` with
    /// the callback's arguments and the consumer's `book`.
    ///
    /// In order: an assignment gets the positions of partitions that come
    /// back after a failed commit, or revoked partitions are committed and
    /// forgotten (see the [type](Self)); then `before` runs; then the
    /// assignment is applied (incrementally under the cooperative protocol;
    /// a rebalance error drops the assignment); then `after` runs. The hooks
    /// are where a context calls its own `pre_rebalance`/`post_rebalance`.
    ///
    /// The assignment is applied even if a hook (or anything before it)
    /// panics; the panic then continues once it is applied, unless the
    /// thread is already unwinding.
    pub fn rebalance<C, B, A>(
        &self,
        consumer: &BaseConsumer<C>,
        book: &OffsetBook,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
        before: B,
        after: A,
    ) where
        C: ConsumerContext,
        B: FnOnce(&Rebalance<'_>),
        A: FnOnce(&Rebalance<'_>),
    {
        // librdkafka waits for the assignment to be applied: a panic before
        // that (in a hook, or a logging layer that panics when stderr is
        // closed) would leave the rebalance, and with it the consumer's
        // close, waiting forever. So everything around the application of
        // the assignment runs under `catch_unwind`, and a panic is resumed
        // only once the assignment is applied.
        let kind = RebalanceKind::of(error);
        let mut panic = catch_unwind(AssertUnwindSafe(|| match &kind {
            RebalanceKind::Assign => {
                self.resume_uncommitted(book, partitions);
                tracing::info!(assigned = partitions.count(), "partitions assigned");
            }
            // Commit what the application was handed before the partitions go.
            RebalanceKind::Revoke => self.revoke(consumer, book, partitions),
            RebalanceKind::Error(error) => {
                tracing::warn!(%error, "rebalance error: dropping the assignment");
            }
        }))
        .err();
        let rebalance = match kind {
            RebalanceKind::Assign => Rebalance::Assign(partitions),
            RebalanceKind::Revoke => Rebalance::Revoke(partitions),
            RebalanceKind::Error(error) => Rebalance::Error(error),
        };
        if panic.is_none() {
            panic = catch_unwind(AssertUnwindSafe(|| before(&rebalance))).err();
        }
        let cooperative = crate::liveness::cooperative(consumer);
        let applied = match (&rebalance, cooperative) {
            (Rebalance::Assign(assigned), true) => consumer.incremental_assign(assigned),
            (Rebalance::Assign(assigned), false) => consumer.assign(assigned),
            (_, true) => consumer.incremental_unassign(partitions),
            (_, false) => consumer.unassign(),
        };
        if panic.is_none() {
            panic = catch_unwind(AssertUnwindSafe(|| {
                if let Err(error) = applied {
                    tracing::warn!(%error, "cannot apply the rebalance");
                }
                after(&rebalance);
            }))
            .err();
        }
        if let Some(payload) = panic {
            // Already unwinding (the consumer is dropped because of another
            // panic): a second panic would abort the process.
            if std::thread::panicking() {
                let _ = catch_unwind(|| {
                    tracing::error!(
                        "a rebalance hook panicked while the thread was already unwinding; the assignment was applied"
                    );
                });
            } else {
                resume_unwind(payload);
            }
        }
    }

    /// Forgets the revoked partitions and commits what the application was
    /// handed from them, unless the assignment was lost or commits are off.
    fn revoke<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        book: &OffsetBook,
        revoked: &TopicPartitionList,
    ) {
        let elements = revoked.elements();
        let to_commit = book.revoke(elements.iter().map(|e| (e.topic(), e.partition())));
        tracing::info!(
            revoked = elements.len(),
            handed_out = to_commit.count(),
            "partitions revoked"
        );
        if to_commit.count() == 0 {
            return;
        }
        if !self.commit {
            tracing::debug!(offsets = ?to_commit, "not committing on revocation: the producer's transactions commit these offsets");
        } else if consumer.assignment_lost() {
            tracing::warn!(offsets = ?to_commit, "assignment lost: cannot commit; the new owner may read these messages again");
        } else {
            self.send_commit(consumer, &to_commit);
        }
    }

    /// Sends the commit on revocation; its answer comes through the
    /// consumer's queue to [`commit_answered`](Self::commit_answered).
    fn send_commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) {
        let entries = positions(offsets);
        // Recorded before the commit is sent: its answer may come first.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(entries.iter().cloned());
        match commit_answering_on_consumer_queue(consumer, offsets) {
            Ok(()) => {
                tracing::debug!(offsets = ?offsets, "commit on revocation sent; the rejoin waits for its answer");
            }
            Err(error) => {
                self.in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|entry| !entries.contains(entry));
                tracing::warn!(%error, offsets = ?offsets, "commit on revocation refused; the new owner may read these messages again");
                self.remember_uncommitted(offsets);
            }
        }
    }

    /// Takes the broker's answer to a commit: call it from
    /// `ConsumerContext::commit_callback`. Answers to commits on revocation
    /// are logged, and a partition whose commit failed keeps its position
    /// for the next assignment (see the [type](Self)); answers to any other
    /// commit are ignored.
    pub fn commit_answered(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        let answered = positions(offsets);
        let ours: Vec<_> = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let ours = answered
                .iter()
                .filter(|entry| in_flight.contains(entry))
                .cloned()
                .collect();
            in_flight.retain(|entry| !answered.contains(entry));
            ours
        };
        if ours.is_empty() {
            return;
        }
        let failed: Vec<_> = offsets
            .elements()
            .into_iter()
            .filter(|element| result.is_err() || element.error().is_err())
            .filter_map(|element| match element.offset() {
                Offset::Offset(next) => {
                    Some((element.topic().to_owned(), element.partition(), next))
                }
                _ => None,
            })
            .filter(|entry| ours.contains(entry))
            .collect();
        if failed.is_empty() {
            tracing::debug!(offsets = ?ours, "committed on revocation");
            return;
        }
        match result {
            Err(error) => {
                tracing::warn!(%error, offsets = ?failed, "commit on revocation failed; the new owner may read these messages again")
            }
            Ok(()) => {
                tracing::warn!(offsets = ?failed, "commit on revocation failed for some partitions; their new owner may read these messages again")
            }
        }
        self.keep_positions(failed);
    }

    /// How many partitions' commits on revocation await the broker's answer.
    pub fn commits_in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Keeps the positions of a failed commit until the next assignment.
    fn remember_uncommitted(&self, offsets: &TopicPartitionList) {
        self.keep_positions(positions(offsets));
    }

    /// Keeps these positions until the next assignment, each replacing an
    /// older one of its partition.
    fn keep_positions(&self, positions: Vec<(String, i32, i64)>) {
        let mut uncommitted = self
            .uncommitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (topic, partition, next) in positions {
            uncommitted.retain(|(t, p, _)| !(*p == partition && *t == topic));
            uncommitted.push((topic, partition, next));
        }
    }

    /// Before an assignment is applied: a partition whose commit on
    /// revocation failed and that comes straight back to this consumer starts
    /// after the messages it already handed out, not at the stale committed
    /// offset; its position goes back into the book, so the next commit
    /// covers it. Positions of partitions not coming back are dropped.
    ///
    /// At-least-once holds either way: everything before such a position was
    /// handed out by this consumer.
    fn resume_uncommitted(&self, book: &OffsetBook, assignment: &mut TopicPartitionList) {
        let uncommitted = std::mem::take(
            &mut *self
                .uncommitted
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (topic, partition, next) in uncommitted {
            if assignment.find_partition(&topic, partition).is_none() {
                continue;
            }
            match assignment.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                Ok(()) => {
                    tracing::info!(%topic, partition, next, "partition back after a failed commit: resuming after what was handed out");
                    book.resume(&topic, partition, next);
                }
                Err(error) => {
                    tracing::warn!(%topic, partition, next, %error, "cannot resume after a failed commit; messages may be read again");
                }
            }
        }
    }
}

/// What a rebalance callback was called for.
enum RebalanceKind {
    Assign,
    Revoke,
    Error(KafkaError),
}

impl RebalanceKind {
    fn of(error: RDKafkaRespErr) -> Self {
        match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => RebalanceKind::Assign,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => RebalanceKind::Revoke,
            other => RebalanceKind::Error(KafkaError::Rebalance(other.into())),
        }
    }
}

/// The `(topic, partition, next offset)` entries of a list, leaving out
/// partitions without an absolute offset.
fn positions(offsets: &TopicPartitionList) -> Vec<(String, i32, i64)> {
    offsets
        .elements()
        .into_iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(next) => Some((element.topic().to_owned(), element.partition(), next)),
            _ => None,
        })
        .collect()
}

/// Sends a commit of `offsets` whose answer librdkafka posts to the
/// consumer's own queue, as an offset-commit event that rdkafka's poll hands
/// to `ConsumerContext::commit_callback`. No thread waits for it.
fn commit_answering_on_consumer_queue<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
) -> Result<(), KafkaError> {
    let Some(queue) = QueueHandle::of(consumer) else {
        // Without a group there is no revocation; keep the commit anyway.
        return consumer.commit(offsets, rdkafka::consumer::CommitMode::Async);
    };
    // SAFETY: the client pointer is valid while `consumer` lives, and the
    // queue handle while `queue` does; librdkafka takes its own reference
    // to the queue for the answer. `offsets` is copied by the call.
    let error = unsafe {
        rdsys::rd_kafka_commit_queue(
            consumer.client().native_ptr(),
            offsets.ptr(),
            queue.as_ptr(),
            None,
            std::ptr::null_mut(),
        )
    };
    if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(error.into()))
    }
}

/// Serves what the consumer's queue holds, right before the consumer is
/// closed: calls `poll_once` (at most once per operation queued now) until
/// it returns `false`. `poll_once` must poll the queue once without waiting,
/// serving a rebalance event through [`RevocationPolicy::rebalance`], and
/// say whether the queue still holds anything. Polled messages are dropped:
/// none was handed out, so none is recorded or committed.
///
/// Why: a rebalance event still queued when librdkafka's close starts is
/// answered inside the close, after the close's own unsubscription has made
/// it moot: the group no longer waits for that answer and terminates as
/// soon as the broker answers its LeaveGroup. An answer (`rd_kafka_assign`
/// and the like) that reaches the group thread in that instant is dropped
/// without a reply, and the answer, and with it the drop, waits forever
/// (librdkafka #4884, still open in 2.15; seen here as a Dedicated consumer
/// hanging in its drop in `mock_faults` on CI). Served here, while the
/// group waits for it and answers every request, such an event is gone
/// before the close starts; the close then raises and awaits its own
/// revocation, as before. This narrows the window to an event that arrives
/// between this call and the close's start (microseconds); librdkafka offers
/// no way to close it from outside.
pub fn serve_queued_before_close<C: ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    mut poll_once: impl FnMut() -> bool,
) {
    let queued = QueueHandle::of(consumer).map_or(0, |queue| queue.len());
    for _ in 0..queued {
        if !poll_once() {
            return;
        }
    }
}

/// Commits `offsets` and waits up to `timeout` for the broker's answer:
/// `ConsumerCommit(OperationTimedOut)` when none came in time (the commit
/// may still be applied later).
///
/// rdkafka's synchronous commit waits without limit, and a broker that
/// accepts connections but does not answer (a network partition, a frozen
/// process) would hold the caller forever. The consumers of this workspace
/// commit with it in `close_blocking`.
///
/// # Errors
///
/// The broker's refusal, or the timeout, as a [`KafkaError::ConsumerCommit`].
pub fn commit_within<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the client pointer is valid while `consumer` lives. The reply
    // queue is ours: created here and destroyed before returning; a reply
    // arriving after that is discarded by librdkafka (the op holds its own
    // reference to the queue). `offsets` outlives the call, which copies it.
    unsafe {
        let client = consumer.client().native_ptr();
        let reply = rdsys::rd_kafka_queue_new(client);
        let error =
            rdsys::rd_kafka_commit_queue(client, offsets.ptr(), reply, None, std::ptr::null_mut());
        let result = if error != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(KafkaError::ConsumerCommit(error.into()))
        } else {
            let event = rdsys::rd_kafka_queue_poll(reply, timeout_ms);
            if event.is_null() {
                Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::OperationTimedOut,
                ))
            } else {
                let error = rdsys::rd_kafka_event_error(event);
                rdsys::rd_kafka_event_destroy(event);
                if error == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(KafkaError::ConsumerCommit(error.into()))
                }
            }
        };
        rdsys::rd_kafka_queue_destroy(reply);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::DefaultConsumerContext;

    use super::*;

    fn offsets(entries: &[(&str, i32, i64)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in entries {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("valid offset");
        }
        list
    }

    #[test]
    fn a_partition_back_after_a_failed_commit_resumes_at_its_position() {
        let policy = RevocationPolicy::new();
        let book = OffsetBook::new();
        policy.remember_uncommitted(&offsets(&[("t", 0, 4), ("t", 1, 7)]));
        // A second failure for the same partition replaces the first.
        policy.remember_uncommitted(&offsets(&[("t", 0, 5)]));

        let mut assignment = TopicPartitionList::new();
        assignment.add_partition("t", 0);
        assignment.add_partition("t", 2);
        policy.resume_uncommitted(&book, &mut assignment);
        assert_eq!(
            assignment.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(5))
        );
        assert_eq!(
            assignment.find_partition("t", 2).map(|e| e.offset()),
            Some(Offset::Invalid)
        );
        assert_eq!(book.position("t", 0), Some(5));

        // t/1 did not come back: its position is gone with that assignment.
        let mut later = TopicPartitionList::new();
        later.add_partition("t", 1);
        policy.resume_uncommitted(&book, &mut later);
        assert_eq!(
            later.find_partition("t", 1).map(|e| e.offset()),
            Some(Offset::Invalid)
        );
        assert_eq!(book.position("t", 1), None);
    }

    #[test]
    fn a_failed_answer_to_a_commit_on_revocation_keeps_its_positions() {
        let policy = RevocationPolicy::new();
        policy
            .in_flight
            .lock()
            .expect("unpoisoned")
            .extend([("t".to_owned(), 0, 4), ("t".to_owned(), 1, 9)]);
        // An answer to some other commit is not ours.
        policy.commit_answered(
            &Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RequestTimedOut,
            )),
            &offsets(&[("t", 0, 3)]),
        );
        assert_eq!(policy.commits_in_flight(), 2);
        // Ours: t/0 failed on its own, t/1 was committed.
        let answer = offsets(&[("t", 0, 4), ("t", 1, 9)]);
        // SAFETY: the list holds two elements, t/0 first; rdkafka offers no
        // setter for a partition's error, which only librdkafka writes.
        unsafe {
            (*(*answer.ptr()).elems).err =
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
        }
        policy.commit_answered(&Ok(()), &answer);
        assert_eq!(policy.commits_in_flight(), 0);

        let book = OffsetBook::new();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition("t", 0);
        assignment.add_partition("t", 1);
        policy.resume_uncommitted(&book, &mut assignment);
        assert_eq!(
            assignment.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(4))
        );
        assert_eq!(
            assignment.find_partition("t", 1).map(|e| e.offset()),
            Some(Offset::Invalid)
        );
    }

    #[test]
    fn the_commit_waits_no_longer_than_its_timeout() {
        // Any context will do, and no broker answers at this address.
        let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "revocation-unit")
            // Closing waits up to the session timeout for the unanswered
            // commit: keep the test short.
            .set("session.timeout.ms", "1000")
            .create()
            .expect("created without a broker");
        let started = Instant::now();
        let result = commit_within(
            &consumer,
            &offsets(&[("t", 0, 1)]),
            Duration::from_millis(200),
        );
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited {:?}",
            started.elapsed()
        );
    }
}
