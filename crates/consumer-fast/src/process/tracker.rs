//! Per-partition offset tracking for concurrent processing.
//!
//! Messages of one partition are handled at once and complete in any order,
//! so a partition commits only up to its lowest incomplete offset: the
//! *commit point*. The offsets completed above it go into the commit's
//! metadata string, so that after a restart or rebalance the next owner
//! re-processes only what really was not done.
//!
//! Offsets arrive in increasing order with gaps (compaction, transaction
//! markers). A gap is never delivered, so it is neither complete nor
//! incomplete: it never holds back the commit point, and the metadata counts
//! it as not completed (harmless, since it never comes again).
//!
//! # Metadata format
//!
//! `tk1` (ours, version 1), one kind character, then the payload in base64
//! (standard alphabet, no padding). Offsets are relative to the committed
//! offset `c`, which by definition is not completed, so the payload starts at
//! `c + 1`. Whichever kind is shorter is written (the bitset on a tie):
//!
//! - `tk1b`: a bitset. Bit `i` (byte `i / 8`, bit `i % 8`, least significant
//!   first) set means offset `c + 1 + i` is completed. The last byte is not
//!   zero.
//! - `tk1r`: run lengths as unsigned LEB128 varints, alternating not-completed
//!   and completed runs from `c + 1` on. The first not-completed run may be
//!   empty, no other run is, and the last run is a completed one.
//!
//! With nothing completed above the commit point the metadata is the empty
//! string. The decoder takes each kind only in the form the encoder writes it
//! (no trailing zero byte, empty run, trailing not-completed run or overlong
//! varint): anything else with our prefix is an error, and any string without
//! the prefix is someone else's (nothing completed).

use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// Marks metadata as ours, format version 1; the kind character follows.
const PREFIX: &str = "tk1";
/// Kind of the bitset form.
const KIND_BITSET: char = 'b';
/// Kind of the run-length form.
const KIND_RUNS: char = 'r';
/// Bytes ahead of the base64 payload: the prefix and the kind.
const HEADER_LEN: usize = PREFIX.len() + 1;
/// Characters of a bad metadata string quoted in a [`MetadataError`]: enough
/// to recognise it, short enough for a log line (metadata runs to kilobytes).
const QUOTED_CHARS: usize = 32;

/// Offsets `first..=last`: inclusive, so that `i64::MAX` needs no end past it.
type OffsetRange = (i64, i64);

/// Offsets of one partition handed to concurrent processing.
///
/// `received` and `complete` are amortized O(1) and O(log n): they only push,
/// flag and pop slots. The metadata is built on demand by
/// [`metadata`](Self::metadata), in O(span).
#[derive(Debug)]
pub(crate) struct PartitionTracker {
    /// The committed offset the partition was assigned with: the commit
    /// point until something is received.
    committed: Option<i64>,
    /// The highest offset received: anything at or below it is a repeat.
    highest: Option<i64>,
    /// Received offsets from the lowest incomplete one on, in order. Its
    /// front is always incomplete (the commit point), so it is empty when
    /// nothing is incomplete.
    window: VecDeque<Slot>,
    /// How many slots of `window` are not done.
    incomplete: usize,
    /// Offsets completed before the assignment, read from the commit's
    /// metadata.
    done_before: CompletedOffsets,
    /// Index of the first range of `done_before` that can still hold an
    /// offset to be received: offsets only increase, so ranges behind it are
    /// settled.
    done_before_next: usize,
}

/// A received offset and whether it is done.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The message's offset.
    offset: i64,
    /// Completed (or completed before the assignment).
    done: bool,
}

/// What [`PartitionTracker::received`] says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// New: process it.
    Process,
    /// Completed before (named by the metadata read back on assignment): it
    /// counts as completed now; do not process it.
    AlreadyDone,
    /// At or below an offset already received: a repeat; ignore it (nothing
    /// recorded).
    Repeat,
}

impl PartitionTracker {
    /// A tracker for a partition assigned with committed offset `committed`
    /// (None: nothing committed / unknown) and the completed offsets decoded
    /// from that commit's metadata (`CompletedOffsets::default()` when none).
    pub(crate) fn new(committed: Option<i64>, done_before: CompletedOffsets) -> Self {
        Self {
            committed,
            highest: None,
            window: VecDeque::new(),
            incomplete: 0,
            done_before,
            done_before_next: 0,
        }
    }

    /// A message at `offset` arrived (offsets increase; gaps allowed).
    pub(crate) fn received(&mut self, offset: i64) -> Received {
        if self.highest.is_some_and(|highest| offset <= highest) {
            return Received::Repeat;
        }
        self.highest = Some(offset);
        if self.was_done_before(offset) {
            // Below the commit point (nothing incomplete) it needs no slot:
            // the commit point moves past it with `highest`.
            if !self.window.is_empty() {
                self.window.push_back(Slot { offset, done: true });
            }
            return Received::AlreadyDone;
        }
        self.window.push_back(Slot {
            offset,
            done: false,
        });
        self.incomplete += 1;
        Received::Process
    }

    /// The message at `offset` (received with `Received::Process`) is done.
    /// Returns false, recording nothing, for an offset that is not incomplete
    /// (never received, or completed already).
    pub(crate) fn complete(&mut self, offset: i64) -> bool {
        let Ok(index) = self
            .window
            .binary_search_by_key(&offset, |slot| slot.offset)
        else {
            return false;
        };
        let Some(slot) = self.window.get_mut(index) else {
            return false;
        };
        if slot.done {
            return false;
        }
        slot.done = true;
        self.incomplete -= 1;
        if index == 0 {
            // The commit point moves up to the next incomplete offset.
            while self.window.front().is_some_and(|slot| slot.done) {
                self.window.pop_front();
            }
        }
        true
    }

    /// The offset to commit: the lowest incomplete offset; with none
    /// incomplete, highest received + 1; with nothing received, `committed`
    /// from `new`. None only when nothing was received and `committed` was
    /// None.
    pub(crate) fn commit_point(&self) -> Option<i64> {
        match (self.window.front(), self.highest) {
            (Some(slot), _) => Some(slot.offset),
            // Saturating: Kafka offsets never come near i64::MAX.
            (None, Some(highest)) => Some(highest.saturating_add(1)),
            (None, None) => self.committed,
        }
    }

    /// How many received messages are not complete.
    pub(crate) fn incomplete(&self) -> usize {
        self.incomplete
    }

    /// Offsets the metadata would have to cover: highest received + 1 -
    /// commit point (0 when nothing is incomplete or nothing received).
    pub(crate) fn span(&self) -> u64 {
        match (self.window.front(), self.highest) {
            (Some(slot), Some(highest)) => highest.abs_diff(slot.offset) + 1,
            _ => 0,
        }
    }

    /// The commit's metadata: the completed offsets above `commit_point()`,
    /// encoded (empty string when there are none). Always a string of at most
    /// `max_bytes` bytes: if the full encoding does not fit, encode only the
    /// completed offsets from the low end that fit (dropping the highest ones
    /// costs duplicates after a restart, never a loss) — `metadata_fits`
    /// tells the caller beforehand.
    ///
    /// Offsets completed before the assignment and not received again yet are
    /// carried forward too, as the highest ones: they are the first dropped
    /// when the string is too long.
    pub(crate) fn metadata(&self, max_bytes: usize) -> String {
        let Some(commit) = self.commit_point() else {
            return String::new();
        };
        let completed = self.completed_above(commit);
        let budget = payload_budget(max_bytes);
        if payload_len(commit, &completed) <= budget {
            return encode(commit, &completed);
        }
        // Both cuts keep a prefix of `completed`: the one reaching the higher
        // offset keeps more.
        let by_bitset = cut_for_bitset(commit, &completed, budget);
        let by_runs = cut_for_runs(commit, &completed, budget);
        let kept = if by_runs.last() > by_bitset.last() {
            by_runs
        } else {
            by_bitset
        };
        encode(commit, &kept)
    }

    /// Whether the full encoding of the current state fits in `max_bytes`.
    pub(crate) fn metadata_fits(&self, max_bytes: usize) -> bool {
        let Some(commit) = self.commit_point() else {
            return true;
        };
        payload_len(commit, &self.completed_above(commit)) <= payload_budget(max_bytes)
    }

    /// Whether the metadata is guaranteed to fit in `max_bytes` for any
    /// completion order even if `more` further offsets are received (i.e. the
    /// worst case — the bitset of span + more offsets — fits). The engine
    /// pauses fetching for the partition when this turns false, so
    /// information is never dropped.
    ///
    /// `more` counts offsets, not messages: a gap in what arrives counts
    /// against it as well. Offsets completed before the assignment and not
    /// received again yet are not counted (they are carried forward as best
    /// effort, see [`metadata`](Self::metadata)): counting them could pause a
    /// partition that has nothing in flight for good.
    pub(crate) fn has_room(&self, max_bytes: usize, more: u64) -> bool {
        // The commit point is not completed by definition, so the bitset
        // covers the offsets above it up to the highest received, plus `more`.
        let bits = self.span().saturating_add(more).saturating_sub(1);
        bits.div_ceil(8) <= payload_budget(max_bytes)
    }

    /// Whether `offset`, just received, was completed before the assignment.
    fn was_done_before(&mut self, offset: i64) -> bool {
        let ranges = &self.done_before.ranges;
        while let Some(&(_, last)) = ranges.get(self.done_before_next)
            && last < offset
        {
            self.done_before_next += 1;
        }
        ranges
            .get(self.done_before_next)
            .is_some_and(|&(first, _)| first <= offset)
    }

    /// The completed offsets above `commit` (the commit point), in order: the
    /// done slots, then what was completed before the assignment and has not
    /// been received again.
    fn completed_above(&self, commit: i64) -> Vec<OffsetRange> {
        let mut completed = RangeBuilder::default();
        // Every slot but the front (the commit point) is above the commit.
        for slot in self.window.iter().filter(|slot| slot.done) {
            completed.push(slot.offset, slot.offset);
        }
        let floor = self.highest.map_or(commit, |highest| highest.max(commit));
        for &(first, last) in self.done_before.ranges.iter().skip(self.done_before_next) {
            // `last > floor`, so `floor + 1` cannot overflow.
            if last > floor {
                completed.push(first.max(floor + 1), last);
            }
        }
        completed.ranges
    }
}

/// Completed offsets decoded from a commit's metadata (absolute offsets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompletedOffsets {
    /// Sorted, disjoint and never adjacent, so equal sets are equal values;
    /// ranges rather than offsets because a run-length string can name
    /// billions of offsets in a few bytes.
    ranges: Vec<OffsetRange>,
}

impl CompletedOffsets {
    /// Whether `offset` is completed.
    #[cfg(test)]
    pub(crate) fn contains(&self, offset: i64) -> bool {
        let after = self.ranges.partition_point(|&(first, _)| first <= offset);
        after > 0
            && self
                .ranges
                .get(after - 1)
                .is_some_and(|&(_, last)| offset <= last)
    }

    /// How many offsets are completed (saturating at `usize::MAX`).
    pub(crate) fn len(&self) -> usize {
        self.ranges.iter().fold(0usize, |total, &(first, last)| {
            let count = usize::try_from(last.abs_diff(first)).unwrap_or(usize::MAX);
            total.saturating_add(count).saturating_add(1)
        })
    }

    /// Whether no offset is completed.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Collects offsets given in increasing order into ranges, merging adjacent
/// ones.
#[derive(Debug, Default)]
struct RangeBuilder {
    /// The ranges so far.
    ranges: Vec<OffsetRange>,
}

impl RangeBuilder {
    /// Adds `first..=last`, which lies above everything added before.
    fn push(&mut self, first: i64, last: i64) {
        if let Some(previous) = self.ranges.last_mut()
            && previous.1.checked_add(1) == Some(first)
        {
            previous.1 = last;
        } else {
            self.ranges.push((first, last));
        }
    }
}

/// Why a metadata string with our prefix could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetadataError {
    /// The start of the metadata string.
    quoted: String,
    /// What is wrong with it.
    reason: String,
}

impl MetadataError {
    /// An error about `metadata`, quoting only its start.
    fn new(metadata: &str, reason: String) -> Self {
        let quoted = match metadata.char_indices().nth(QUOTED_CHARS) {
            Some((cut, _)) => format!("{}…", &metadata[..cut]),
            None => metadata.to_owned(),
        };
        Self { quoted, reason }
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset metadata `{}`: {}", self.quoted, self.reason)
    }
}

impl std::error::Error for MetadataError {}

/// Decodes the metadata written with a commit at `commit_offset`. Metadata
/// that is not ours (any other string, e.g. empty or written by another tool)
/// gives Ok(empty). A string with our prefix that is malformed gives
/// Err(MetadataError) naming what is wrong.
pub(crate) fn decode_metadata(
    commit_offset: i64,
    metadata: &str,
) -> Result<CompletedOffsets, MetadataError> {
    let Some(rest) = metadata.strip_prefix(PREFIX) else {
        return Ok(CompletedOffsets::default());
    };
    let error = |reason: String| MetadataError::new(metadata, reason);
    let mut chars = rest.chars();
    let kind = chars
        .next()
        .ok_or_else(|| error(format!("no kind after `{PREFIX}`")))?;
    if kind != KIND_BITSET && kind != KIND_RUNS {
        return Err(error(format!(
            "unknown kind `{kind}` (expected `{KIND_BITSET}` or `{KIND_RUNS}`)"
        )));
    }
    let payload = chars.as_str();
    if payload.is_empty() {
        return Err(error("empty payload".to_owned()));
    }
    let bytes = STANDARD_NO_PAD
        .decode(payload)
        .map_err(|e| error(format!("invalid base64 payload: {e}")))?;
    let ranges = if kind == KIND_BITSET {
        decode_bitset(commit_offset, &bytes)
    } else {
        decode_runs(commit_offset, &bytes)
    }
    .map_err(error)?;
    Ok(CompletedOffsets { ranges })
}

/// The completed offsets of a bitset payload above `commit`.
fn decode_bitset(commit: i64, bytes: &[u8]) -> Result<Vec<OffsetRange>, String> {
    if let Some(last) = bytes.len().checked_sub(1)
        && bytes.get(last) == Some(&0)
    {
        return Err(format!("bitset ends with a zero byte (byte {last})"));
    }
    let mut completed = RangeBuilder::default();
    for (byte_index, &byte) in bytes.iter().enumerate() {
        for bit in 0..8u64 {
            if byte & (1 << bit) != 0 {
                let offset = offset_at(commit, byte_index as u64 * 8 + bit)?;
                completed.push(offset, offset);
            }
        }
    }
    Ok(completed.ranges)
}

/// The completed offsets of a run-length payload above `commit`.
fn decode_runs(commit: i64, bytes: &[u8]) -> Result<Vec<OffsetRange>, String> {
    let mut completed = RangeBuilder::default();
    let mut at = 0;
    // Offsets above the commit covered by the runs so far.
    let mut covered: u64 = 0;
    let mut run = 0usize;
    while at < bytes.len() {
        let gap = read_varint(bytes, &mut at)?;
        run += 1;
        if gap == 0 && run > 1 {
            return Err(format!("empty not-completed run (run {run})"));
        }
        if at == bytes.len() {
            return Err(format!("ends with a not-completed run (run {run})"));
        }
        let len = read_varint(bytes, &mut at)?;
        run += 1;
        if len == 0 {
            return Err(format!("empty completed run (run {run})"));
        }
        let beyond = || "completed offsets beyond i64::MAX".to_owned();
        let first = covered.checked_add(gap).ok_or_else(beyond)?;
        let last = first.checked_add(len - 1).ok_or_else(beyond)?;
        completed.push(offset_at(commit, first)?, offset_at(commit, last)?);
        covered = last.checked_add(1).ok_or_else(beyond)?;
    }
    Ok(completed.ranges)
}

/// Reads the unsigned LEB128 varint at `*at`, moving `*at` past it.
fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let start = *at;
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = bytes.get(*at) else {
            return Err(format!("truncated varint at byte {start}"));
        };
        *at += 1;
        let low = u64::from(byte & 0x7f);
        if shift > 63 || (shift == 63 && low > 1) {
            return Err(format!("varint beyond 64 bits at byte {start}"));
        }
        if byte == 0 && shift > 0 {
            return Err(format!("overlong varint at byte {start}"));
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// The offset `index` places above `commit` (index 0 is `commit + 1`).
fn offset_at(commit: i64, index: u64) -> Result<i64, String> {
    commit
        .checked_add(1)
        .and_then(|first| first.checked_add_unsigned(index))
        .ok_or_else(|| "completed offsets beyond i64::MAX".to_owned())
}

/// The alternating runs `(not completed, completed)` of `completed` above
/// `commit`, by length.
fn runs(commit: i64, completed: &[OffsetRange]) -> impl Iterator<Item = (u64, u64)> + '_ {
    // The offset just below the next not-completed run.
    let mut below = commit;
    completed.iter().map(move |&(first, last)| {
        let gap = first.abs_diff(below) - 1;
        below = last;
        // `first > commit >= i64::MIN`, so this cannot reach u64::MAX + 1.
        (gap, last.abs_diff(first) + 1)
    })
}

/// Bytes of `value` as an unsigned LEB128 varint.
fn varint_len(value: u64) -> u64 {
    u64::from((u64::BITS - value.leading_zeros()).div_ceil(7).max(1))
}

/// Payload bytes of the bitset of `completed` above `commit`.
fn bitset_len(commit: i64, completed: &[OffsetRange]) -> u64 {
    completed
        .last()
        .map_or(0, |&(_, last)| last.abs_diff(commit).div_ceil(8))
}

/// Payload bytes of the run-length form of `completed` above `commit`.
fn runs_len(commit: i64, completed: &[OffsetRange]) -> u64 {
    runs(commit, completed)
        .map(|(gap, len)| varint_len(gap) + varint_len(len))
        .sum()
}

/// Payload bytes of the shorter form (0 for nothing completed).
fn payload_len(commit: i64, completed: &[OffsetRange]) -> u64 {
    bitset_len(commit, completed).min(runs_len(commit, completed))
}

/// The largest payload whose encoding (header and base64) fits in
/// `max_bytes`: 3 payload bytes per 4 characters, 2 per 3, 1 per 2.
fn payload_budget(max_bytes: usize) -> u64 {
    let chars = u64::try_from(max_bytes.saturating_sub(HEADER_LEN)).unwrap_or(u64::MAX);
    chars / 4 * 3 + chars % 4 * 3 / 4
}

/// The completed offsets whose bitset fits in `budget` bytes.
fn cut_for_bitset(commit: i64, completed: &[OffsetRange], budget: u64) -> Vec<OffsetRange> {
    let limit = commit
        .checked_add_unsigned(budget.saturating_mul(8))
        .unwrap_or(i64::MAX);
    completed
        .iter()
        .take_while(|&&(first, _)| first <= limit)
        .map(|&(first, last)| (first, last.min(limit)))
        .collect()
}

/// The completed offsets whose run-length form fits in `budget` bytes.
fn cut_for_runs(commit: i64, completed: &[OffsetRange], budget: u64) -> Vec<OffsetRange> {
    let mut left = budget;
    let mut kept = Vec::new();
    for ((gap, len), &(first, last)) in runs(commit, completed).zip(completed) {
        let gap_bytes = varint_len(gap);
        let needed = gap_bytes + varint_len(len);
        if needed <= left {
            kept.push((first, last));
            left -= needed;
            continue;
        }
        if left > gap_bytes {
            // Part of the run fits: as many offsets as a varint of the bytes
            // left can count (fewer than `len`, as the whole did not fit).
            let room = left - gap_bytes;
            let most = 1u64
                .checked_shl(u32::try_from(room * 7).unwrap_or(u32::MAX))
                .map_or(u64::MAX, |power| power - 1);
            kept.push((first, first.saturating_add_unsigned(most.min(len) - 1)));
        }
        break;
    }
    kept
}

/// The metadata string for `completed` above `commit`, in the shorter form.
fn encode(commit: i64, completed: &[OffsetRange]) -> String {
    if completed.is_empty() {
        return String::new();
    }
    let bitset = bitset_len(commit, completed);
    if bitset <= runs_len(commit, completed) {
        // No larger than the run-length form, which is held in memory.
        let mut bytes = vec![0u8; usize::try_from(bitset).unwrap_or(usize::MAX)];
        for &(first, last) in completed {
            for index in first.abs_diff(commit) - 1..last.abs_diff(commit) {
                if let Some(byte) = bytes.get_mut(usize::try_from(index / 8).unwrap_or(usize::MAX))
                {
                    *byte |= 1 << (index % 8);
                }
            }
        }
        format!("{PREFIX}{KIND_BITSET}{}", STANDARD_NO_PAD.encode(bytes))
    } else {
        let mut bytes = Vec::new();
        for (gap, len) in runs(commit, completed) {
            write_varint(&mut bytes, gap);
            write_varint(&mut bytes, len);
        }
        format!("{PREFIX}{KIND_RUNS}{}", STANDARD_NO_PAD.encode(bytes))
    }
}

/// Appends `value` as an unsigned LEB128 varint.
fn write_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Every offset of `offsets`, one by one.
    fn offsets_of(offsets: &CompletedOffsets) -> BTreeSet<i64> {
        offsets
            .ranges
            .iter()
            .flat_map(|&(first, last)| first..=last)
            .collect()
    }

    /// A tracker with nothing committed that received `offsets`.
    fn received_all(offsets: impl IntoIterator<Item = i64>) -> PartitionTracker {
        let mut tracker = PartitionTracker::new(None, CompletedOffsets::default());
        for offset in offsets {
            assert_eq!(tracker.received(offset), Received::Process);
        }
        tracker
    }

    /// The metadata `payload` in the given kind.
    fn ours(kind: char, payload: &[u8]) -> String {
        format!("{PREFIX}{kind}{}", STANDARD_NO_PAD.encode(payload))
    }

    #[test]
    fn commit_point_before_anything_is_received_is_the_committed_offset() {
        let tracker = PartitionTracker::new(None, CompletedOffsets::default());
        assert_eq!(tracker.commit_point(), None);
        assert_eq!(tracker.metadata(4096), "");
        let tracker = PartitionTracker::new(Some(42), CompletedOffsets::default());
        assert_eq!(tracker.commit_point(), Some(42));
        assert_eq!(tracker.span(), 0);
        assert_eq!(tracker.incomplete(), 0);
    }

    #[test]
    fn gaps_do_not_hold_back_the_commit_point() {
        let mut tracker = PartitionTracker::new(Some(10), CompletedOffsets::default());
        for offset in [10, 13, 17] {
            assert_eq!(tracker.received(offset), Received::Process);
        }
        assert_eq!(tracker.span(), 8);
        assert!(!tracker.complete(11), "a gap is not incomplete");
        assert!(tracker.complete(10));
        assert_eq!(tracker.commit_point(), Some(13));
        assert!(tracker.complete(17));
        assert_eq!(tracker.commit_point(), Some(13));
        assert!(tracker.complete(13));
        assert_eq!(tracker.commit_point(), Some(18));
        assert_eq!(tracker.span(), 0);
        assert_eq!(tracker.metadata(4096), "");
    }

    #[test]
    fn out_of_order_completion_moves_the_commit_point_only_over_completed_offsets() {
        let mut tracker = received_all(0..6);
        for offset in [3, 1, 5] {
            assert!(tracker.complete(offset));
            assert_eq!(tracker.commit_point(), Some(0));
        }
        assert_eq!(tracker.incomplete(), 3);
        assert!(tracker.complete(0));
        assert_eq!(tracker.commit_point(), Some(2));
        assert!(tracker.complete(4));
        assert_eq!(tracker.commit_point(), Some(2));
        assert!(tracker.complete(2));
        assert_eq!(tracker.commit_point(), Some(6));
        assert_eq!(tracker.incomplete(), 0);
    }

    #[test]
    fn completing_twice_or_what_was_never_received_records_nothing() {
        let mut tracker = received_all([5, 6]);
        assert!(tracker.complete(6));
        assert!(!tracker.complete(6));
        assert!(!tracker.complete(7));
        assert!(!tracker.complete(4));
        assert_eq!(tracker.incomplete(), 1);
        assert!(tracker.complete(5));
        assert!(!tracker.complete(5), "below the commit point now");
    }

    #[test]
    fn repeats_are_ignored() {
        let mut tracker = received_all([5, 7]);
        assert_eq!(tracker.received(7), Received::Repeat);
        assert_eq!(tracker.received(6), Received::Repeat);
        assert_eq!(tracker.received(1), Received::Repeat);
        assert_eq!(tracker.incomplete(), 2);
        assert!(tracker.complete(5));
        assert!(tracker.complete(7));
        assert_eq!(tracker.received(7), Received::Repeat);
        assert_eq!(tracker.commit_point(), Some(8));
    }

    #[test]
    fn offsets_completed_before_are_already_done() {
        let mut before = received_all(100..110);
        for offset in [102, 103, 107] {
            assert!(before.complete(offset));
        }
        let metadata = before.metadata(4096);
        assert_eq!(metadata, ours(KIND_BITSET, &[0b0100_0110]));
        let done_before = decode_metadata(100, &metadata).unwrap();
        assert_eq!(done_before.len(), 3);
        assert!(done_before.contains(102) && done_before.contains(107));
        assert!(!done_before.contains(101) && !done_before.contains(104));

        let mut after = PartitionTracker::new(Some(100), done_before);
        assert_eq!(after.metadata(4096), metadata, "carried forward");
        let expected = [
            (100, Received::Process),
            (101, Received::Process),
            (102, Received::AlreadyDone),
            (103, Received::AlreadyDone),
            (105, Received::Process),
            (107, Received::AlreadyDone),
        ];
        for (offset, received) in expected {
            assert_eq!(after.received(offset), received, "offset {offset}");
        }
        assert!(!after.complete(102), "already done");
        assert_eq!(after.incomplete(), 3);
        assert!(after.complete(100));
        assert!(after.complete(101));
        assert_eq!(after.commit_point(), Some(105));
        assert!(after.complete(105));
        assert_eq!(after.commit_point(), Some(108));
    }

    #[test]
    fn already_done_with_nothing_incomplete_moves_the_commit_point() {
        let done_before = decode_metadata(100, &ours(KIND_BITSET, &[0b101])).unwrap();
        let mut tracker = PartitionTracker::new(Some(100), done_before);
        assert_eq!(tracker.received(100), Received::Process);
        assert!(tracker.complete(100));
        // 101 is the commit point now, so only 103 is carried forward.
        assert_eq!(tracker.metadata(4096), ours(KIND_BITSET, &[0b10]));
        assert_eq!(tracker.received(101), Received::AlreadyDone);
        assert_eq!(tracker.commit_point(), Some(102));
        assert_eq!(tracker.received(103), Received::AlreadyDone);
        assert_eq!(tracker.commit_point(), Some(104));
        assert_eq!(tracker.incomplete(), 0);
        assert_eq!(tracker.metadata(4096), "");
    }

    #[test]
    fn the_shorter_form_is_written() {
        let mut tracker = received_all(0..=1000);
        for offset in 1..=1000 {
            tracker.complete(offset);
        }
        // 0 (empty not-completed run), 1000 completed.
        assert_eq!(tracker.metadata(4096), ours(KIND_RUNS, &[0x00, 0xe8, 0x07]));

        let mut tracker = received_all(0..=16);
        for offset in (2..=16).step_by(2) {
            tracker.complete(offset);
        }
        assert_eq!(
            tracker.metadata(4096),
            ours(KIND_BITSET, &[0b1010_1010, 0b1010_1010])
        );
    }

    #[test]
    fn foreign_metadata_is_nothing_completed() {
        for metadata in ["", "hello", "tk", "tk2bAQ", "TK1bAQ", "{\"offset\":3}"] {
            assert_eq!(
                decode_metadata(7, metadata).unwrap(),
                CompletedOffsets::default(),
                "{metadata:?}"
            );
        }
    }

    #[test]
    fn malformed_metadata_of_ours_is_an_error_naming_the_problem() {
        let cases = [
            ("tk1".to_owned(), "no kind after `tk1`"),
            ("tk1xAQ".to_owned(), "unknown kind `x`"),
            ("tk1b".to_owned(), "empty payload"),
            ("tk1b!!".to_owned(), "invalid base64 payload"),
            ("tk1bAQ==".to_owned(), "invalid base64 payload"),
            (
                ours(KIND_BITSET, &[1, 0]),
                "bitset ends with a zero byte (byte 1)",
            ),
            (ours(KIND_RUNS, &[0, 0x80]), "truncated varint at byte 1"),
            (
                ours(KIND_RUNS, &[0, 0x80, 0x00]),
                "overlong varint at byte 1",
            ),
            (
                ours(KIND_RUNS, &[0, 1, 0, 1]),
                "empty not-completed run (run 3)",
            ),
            (ours(KIND_RUNS, &[0, 0]), "empty completed run (run 2)"),
            (
                ours(KIND_RUNS, &[0, 1, 1]),
                "ends with a not-completed run (run 3)",
            ),
            (
                ours(
                    KIND_RUNS,
                    &[
                        0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                    ],
                ),
                "varint beyond 64 bits at byte 1",
            ),
            (
                ours(
                    KIND_RUNS,
                    &[
                        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1,
                    ],
                ),
                "completed offsets beyond i64::MAX",
            ),
        ];
        for (metadata, reason) in cases {
            let error = decode_metadata(7, &metadata).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("offset metadata `{metadata}`: ")),
                "{error}"
            );
            assert!(error.contains(reason), "{error} should say {reason}");
        }
        // Bit 3 above `i64::MAX - 3` is `i64::MAX + 1`; bit 2 is the last.
        let error = decode_metadata(i64::MAX - 3, &ours(KIND_BITSET, &[0b1000]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("beyond i64::MAX"), "{error}");
        let last = decode_metadata(i64::MAX - 3, &ours(KIND_BITSET, &[0b100])).unwrap();
        assert!(last.contains(i64::MAX));
    }

    #[test]
    fn a_long_bad_string_is_quoted_shortened() {
        let metadata = format!("tk1b{}", "!".repeat(5000));
        let error = decode_metadata(0, &metadata).unwrap_err().to_string();
        assert!(error.starts_with("offset metadata `tk1b!!!!"), "{error}");
        assert!(error.len() < 200, "{error}");
    }

    #[test]
    fn too_long_metadata_keeps_the_lowest_completed_offsets() {
        let mut tracker = received_all(0..=10_000);
        // Every other offset: the bitset is the shorter form, 1250 bytes.
        for offset in (1..=10_000).step_by(2) {
            tracker.complete(offset);
        }
        assert!(tracker.metadata_fits(4096));
        assert!(!tracker.metadata_fits(64));
        let metadata = tracker.metadata(64);
        assert!(metadata.len() <= 64, "{}", metadata.len());
        let kept = offsets_of(&decode_metadata(0, &metadata).unwrap());
        let expected: BTreeSet<i64> = (1..=kept.last().copied().unwrap_or(0)).step_by(2).collect();
        assert_eq!(kept, expected);
        // 60 base64 characters carry 45 bytes: 360 offsets, 180 completed.
        assert_eq!(kept.len(), 180);

        // One long run: the run-length form keeps part of it.
        let mut tracker = received_all(0..=100_000);
        for offset in 1..=100_000 {
            tracker.complete(offset);
        }
        // 3 characters carry 2 bytes: a varint up to 127 after the empty
        // not-completed run, where the bitset would cover 16 offsets.
        let metadata = tracker.metadata(7);
        assert_eq!(metadata, ours(KIND_RUNS, &[0, 127]));
        // 2 characters carry 1 byte: the bitset's 8 offsets beat no run.
        let metadata = tracker.metadata(6);
        assert_eq!(metadata, ours(KIND_BITSET, &[0xff]));
        assert_eq!(tracker.metadata(5), "", "no room for any payload");
    }

    #[test]
    fn room_is_the_bitset_of_span_and_more() {
        let tracker = received_all(0..=100);
        assert_eq!(tracker.span(), 101);
        // 4092 base64 characters carry 3069 bytes: 24552 offsets above the
        // commit point.
        assert!(tracker.has_room(4096, 24_552 - 100));
        assert!(!tracker.has_room(4096, 24_552 - 100 + 1));
        assert!(PartitionTracker::new(None, CompletedOffsets::default()).has_room(0, 1));
        assert!(!tracker.has_room(5, 0));
    }

    /// One delivered offset of a proptest scenario.
    #[derive(Debug, Clone)]
    struct Delivery {
        /// Distance from the previous offset.
        gap: i64,
        /// Completed at some point, or left incomplete.
        completes: bool,
        /// How many further deliveries happen before it completes.
        delay: usize,
        /// Orders completions due at the same time.
        order: u32,
    }

    /// Deliveries with mostly small and a few large gaps.
    fn deliveries(max: usize) -> impl Strategy<Value = Vec<Delivery>> {
        let gap = prop_oneof![8 => Just(1i64), 3 => 2i64..6, 1 => 6i64..400];
        prop::collection::vec(
            (gap, prop::bool::weighted(0.85), 0usize..300, any::<u32>()).prop_map(
                |(gap, completes, delay, order)| Delivery {
                    gap,
                    completes,
                    delay,
                    order,
                },
            ),
            1..max,
        )
    }

    /// A step of a scenario.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Receive the offset.
        Receive(i64),
        /// Complete the offset.
        Complete(i64),
    }

    /// The offsets and the steps of a scenario: each offset received in
    /// order, the completing ones completed `delay` deliveries later.
    fn schedule(start: i64, deliveries: &[Delivery]) -> (Vec<i64>, Vec<Step>) {
        let mut offset = start;
        let mut offsets = Vec::new();
        let mut timed = Vec::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            offset += delivery.gap;
            offsets.push(offset);
            timed.push(((index, 0, 0), Step::Receive(offset)));
            if delivery.completes {
                let due = (index + delivery.delay, 1, delivery.order);
                timed.push((due, Step::Complete(offset)));
            }
        }
        timed.sort_by_key(|&(due, _)| due);
        (offsets, timed.into_iter().map(|(_, step)| step).collect())
    }

    /// The heavy checks: the metadata round trip, a restart from it, and a
    /// cut to `small` bytes.
    fn check_metadata(
        tracker: &PartitionTracker,
        offsets: &[i64],
        completed: &BTreeSet<i64>,
        small: usize,
    ) -> Result<(), TestCaseError> {
        let Some(commit) = tracker.commit_point() else {
            prop_assert_eq!(tracker.metadata(usize::MAX), "");
            return Ok(());
        };
        let above: BTreeSet<i64> = completed.range(commit + 1..).copied().collect();

        // (2) Everything completed above the commit point survives.
        prop_assert!(tracker.metadata_fits(usize::MAX));
        let metadata = tracker.metadata(usize::MAX);
        let decoded =
            decode_metadata(commit, &metadata).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(offsets_of(&decoded), above.clone());
        prop_assert_eq!(decoded.len(), above.len());

        // (3) A restart processes exactly what was not completed.
        let mut restarted = PartitionTracker::new(Some(commit), decoded);
        prop_assert_eq!(restarted.metadata(usize::MAX), metadata.clone());
        for &offset in offsets.iter().filter(|&&offset| offset >= commit) {
            let expected = if completed.contains(&offset) {
                Received::AlreadyDone
            } else {
                Received::Process
            };
            prop_assert_eq!(restarted.received(offset), expected, "offset {}", offset);
        }

        // (4) A cut stays within its bytes and names only completed offsets,
        // the lowest ones.
        let cut = tracker.metadata(small);
        prop_assert!(cut.len() <= small, "{} > {}", cut.len(), small);
        let kept = offsets_of(
            &decode_metadata(commit, &cut).map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        prop_assert!(kept.is_subset(&above));
        if let Some(&highest_kept) = kept.last() {
            let lowest: BTreeSet<i64> = above.range(..=highest_kept).copied().collect();
            prop_assert_eq!(&kept, &lowest);
        }
        prop_assert_eq!(tracker.metadata_fits(small), kept == above);
        if tracker.has_room(small, 0) {
            prop_assert!(tracker.metadata_fits(small));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn commit_point_and_metadata_follow_the_completions(
            start in 0i64..1_000,
            known_start in any::<bool>(),
            deliveries in deliveries(3_000),
            small in 0usize..80,
        ) {
            let committed = known_start.then_some(start);
            let (offsets, steps) = schedule(start, &deliveries);
            let mut tracker = PartitionTracker::new(committed, CompletedOffsets::default());
            let mut incomplete = BTreeSet::new();
            let mut completed = BTreeSet::new();
            let mut highest = None;
            let heavy_every = (steps.len() / 6).max(1);
            for (index, step) in steps.iter().enumerate() {
                match *step {
                    Step::Receive(offset) => {
                        prop_assert_eq!(tracker.received(offset), Received::Process);
                        prop_assert_eq!(tracker.received(offset), Received::Repeat);
                        incomplete.insert(offset);
                        highest = Some(offset);
                    }
                    Step::Complete(offset) => {
                        prop_assert!(tracker.complete(offset));
                        prop_assert!(!tracker.complete(offset));
                        incomplete.remove(&offset);
                        completed.insert(offset);
                    }
                }
                // (1) The commit point is the lowest incomplete offset.
                let expected = incomplete
                    .first()
                    .copied()
                    .or(highest.map(|highest| highest + 1))
                    .or(committed);
                prop_assert_eq!(tracker.commit_point(), expected);
                prop_assert_eq!(tracker.incomplete(), incomplete.len());
                let span = match (incomplete.first(), highest) {
                    (Some(&lowest), Some(highest)) => (highest + 1 - lowest) as u64,
                    _ => 0,
                };
                prop_assert_eq!(tracker.span(), span);
                if index % heavy_every == 0 || index + 1 == steps.len() {
                    check_metadata(&tracker, &offsets, &completed, small)?;
                }
            }
        }

        #[test]
        fn room_holds_for_dense_offsets_whatever_completes(
            completions in prop::collection::vec((any::<bool>(), any::<u8>()), 1..2_000),
            max_bytes in 0usize..40,
        ) {
            // Offset i is received at step i; each completing offset
            // completes a few steps later (its byte), in a shuffled order.
            let mut tracker = PartitionTracker::new(Some(0), CompletedOffsets::default());
            let mut due: Vec<(usize, i64)> = Vec::new();
            let mut room_for_one = tracker.has_room(max_bytes, 1);
            for (step, &(completes, delay)) in completions.iter().enumerate() {
                let offset = step as i64;
                prop_assert_eq!(tracker.received(offset), Received::Process);
                if room_for_one {
                    prop_assert!(tracker.metadata_fits(max_bytes));
                }
                if completes {
                    due.push((step + usize::from(delay % 16), offset));
                }
                due.sort_by_key(|&(at, offset)| (at, offset.wrapping_mul(7919) % 13));
                while due.first().is_some_and(|&(at, _)| at <= step) {
                    let (_, offset) = due.remove(0);
                    prop_assert!(tracker.complete(offset));
                    if room_for_one {
                        prop_assert!(tracker.metadata_fits(max_bytes));
                    }
                }
                if tracker.has_room(max_bytes, 0) {
                    prop_assert!(tracker.metadata_fits(max_bytes));
                }
                room_for_one = tracker.has_room(max_bytes, 1);
            }
        }

        #[test]
        fn decoding_any_string_of_ours_never_panics(
            kind in prop_oneof![Just('b'), Just('r'), any::<char>()],
            payload in prop::collection::vec(any::<u8>(), 0..64),
            commit in any::<i64>(),
        ) {
            if let Ok(decoded) = decode_metadata(commit, &ours(kind, &payload)) {
                // Whatever decodes is above the commit and survives a
                // re-encoding (in the shorter form).
                prop_assert!(decoded.ranges.iter().all(|&(first, _)| first > commit));
                let tracker = PartitionTracker::new(Some(commit), decoded.clone());
                let again = decode_metadata(commit, &tracker.metadata(usize::MAX));
                prop_assert_eq!(again.ok(), Some(decoded));
            }
        }
    }
}
