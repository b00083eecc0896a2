//! The history `bntop serve` sends a viewer that attaches mid-run, so its charts are full at once:
//! the header, every recent record, a longer and thinner run of snapshots, and the rare records
//! (controls, evaluations, lab results, markers) that each matter.
//!
//! Bounded in records and in bytes. An external producer may send snapshots of up to
//! [`MAX_LINE`](crate::protocol::MAX_LINE) bytes (a ResNet-50's per-channel arrays are several
//! MB), so past [`BACKLOG_BYTES`] the oldest snapshots first lose their per-channel arrays (their
//! summaries still draw every scalar chart), and only then the oldest records go.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::hub::Line;
use crate::protocol::{Event, MarkerKind, Snapshot};
use crate::session::decimator::summary_only;

/// Bytes of history kept for late viewers (besides the header).
pub const BACKLOG_BYTES: usize = 64 << 20;
/// Every recent event (about 15 s at full speed), and a longer, thinner history.
const RECENT_EVENTS: usize = 2048;
const THIN_SNAPSHOTS: usize = 2048;
const THIN_EVERY: u64 = 4;
const KEPT_RECORDS: usize = 2048;

struct Item {
    line: Line,
    /// A snapshot with per-channel arrays: the same snapshot without them.
    summary: Option<Line>,
    /// The queues holding this item.
    refs: u8,
}

impl Item {
    fn bytes(&self) -> usize {
        self.line.len() + self.summary.as_ref().map_or(0, |s| s.len())
    }
}

pub struct Backlog {
    header: Option<Line>,
    items: BTreeMap<u64, Item>,
    recent: VecDeque<u64>,
    thin: VecDeque<u64>,
    records: VecDeque<u64>,
    /// Snapshots that still carry their arrays, oldest first (may name items already gone).
    whole: VecDeque<u64>,
    bytes: usize,
    budget: usize,
    seq: u64,
}

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog::with_budget(BACKLOG_BYTES)
    }
}

impl Backlog {
    pub fn with_budget(budget: usize) -> Backlog {
        Backlog {
            header: None,
            items: BTreeMap::new(),
            recent: VecDeque::new(),
            thin: VecDeque::new(),
            records: VecDeque::new(),
            whole: VecDeque::new(),
            bytes: 0,
            budget,
            seq: 0,
        }
    }

    /// Keep `event`, serialized as `line`, as far as the bounds allow.
    pub fn push(&mut self, event: &Event, line: &Line) {
        let (thin, record) = match event {
            Event::Header(_) => {
                self.header = Some(Arc::clone(line));
                return;
            }
            Event::Snapshot(s) => (s.step % THIN_EVERY == 0, false),
            Event::Control(_)
            | Event::Evaluation(_)
            | Event::Folding(_)
            | Event::Population(_)
            | Event::Probe(_)
            | Event::End(_) => (false, true),
            Event::Marker(m) => (false, m.kind != MarkerKind::Epoch),
            Event::Unknown => (false, false),
        };
        self.seq += 1;
        let seq = self.seq;
        let summary = match event {
            Event::Snapshot(s) if s.layers.iter().any(|l| l.widest() > 0) => {
                self.whole.push_back(seq);
                summary_line(s)
            }
            _ => None,
        };
        let item = Item {
            line: Arc::clone(line),
            summary,
            refs: 1 + u8::from(thin) + u8::from(record),
        };
        self.bytes += item.bytes();
        self.items.insert(seq, item);
        self.enqueue(Queue::Recent, seq);
        if thin {
            self.enqueue(Queue::Thin, seq);
        }
        if record {
            self.enqueue(Queue::Records, seq);
        }
        self.fit();
    }

    /// Header first, then everything kept, in stream order, once.
    pub fn lines(&self) -> Vec<Line> {
        self.header
            .iter()
            .cloned()
            .chain(self.items.values().map(|item| Arc::clone(&item.line)))
            .collect()
    }

    /// Bytes held for late viewers besides the header.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn queue(&mut self, which: Queue) -> (&mut VecDeque<u64>, usize) {
        match which {
            Queue::Recent => (&mut self.recent, RECENT_EVENTS),
            Queue::Thin => (&mut self.thin, THIN_SNAPSHOTS),
            Queue::Records => (&mut self.records, KEPT_RECORDS),
        }
    }

    fn enqueue(&mut self, which: Queue, seq: u64) {
        let (queue, cap) = self.queue(which);
        let dropped = if queue.len() == cap {
            queue.pop_front()
        } else {
            None
        };
        queue.push_back(seq);
        if let Some(old) = dropped {
            self.release(old);
        }
    }

    /// One queue let go of `seq`; the last one frees it.
    fn release(&mut self, seq: u64) {
        if let Some(item) = self.items.get_mut(&seq) {
            item.refs = item.refs.saturating_sub(1);
            if item.refs == 0 {
                self.bytes -= item.bytes();
                self.items.remove(&seq);
            }
        }
    }

    /// Within the byte budget: the oldest snapshots lose their arrays first, then the oldest
    /// items go.
    fn fit(&mut self) {
        while self.bytes > self.budget {
            if !self.demote_oldest() && !self.drop_oldest() {
                return;
            }
        }
        // Names of items that are gone do not pile up.
        while self
            .whole
            .front()
            .is_some_and(|seq| !self.items.contains_key(seq))
        {
            self.whole.pop_front();
        }
    }

    fn demote_oldest(&mut self) -> bool {
        while let Some(seq) = self.whole.pop_front() {
            if let Some(item) = self.items.get_mut(&seq) {
                if let Some(summary) = item.summary.take() {
                    self.bytes -= item.line.len();
                    item.line = summary;
                    return true;
                }
            }
        }
        false
    }

    fn drop_oldest(&mut self) -> bool {
        let Some(&oldest) = self.items.keys().next() else {
            return false;
        };
        for which in [Queue::Recent, Queue::Thin, Queue::Records] {
            let (queue, _) = self.queue(which);
            if queue.front() == Some(&oldest) {
                queue.pop_front();
                self.release(oldest);
            }
        }
        true
    }
}

#[derive(Clone, Copy)]
enum Queue {
    Recent,
    Thin,
    Records,
}

/// The snapshot's line without per-channel arrays.
fn summary_line(s: &Snapshot) -> Option<Line> {
    let mut summary = s.clone();
    summary.layers = s.layers.iter().map(summary_only).collect();
    let mut text = serde_json::to_string(&Event::Snapshot(summary)).ok()?;
    text.push('\n');
    Some(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::synthetic;

    fn line(event: &Event) -> Line {
        let mut text = serde_json::to_string(event).expect("json");
        text.push('\n');
        text.into()
    }

    fn parse(lines: &[Line]) -> Vec<Event> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("a record"))
            .collect()
    }

    /// Snapshots with arrays over the budget: every snapshot is still there (the scalar charts
    /// stay full), only the newest keep their arrays, and the bytes stay within the budget.
    #[test]
    fn past_the_budget_old_snapshots_lose_their_arrays_first() {
        let events = synthetic::run(300, 1);
        let snapshots: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Snapshot(s) if s.layers.iter().any(|l| l.widest() > 0)))
            .collect();
        assert!(snapshots.len() >= 200, "{}", snapshots.len());
        let one = line(snapshots[0]).len();
        // Room for every record as a summary, and about ten snapshots' arrays.
        let summaries: usize = events
            .iter()
            .skip(1)
            .map(|e| match e {
                Event::Snapshot(s) => summary_line(s).map_or(0, |l| l.len()),
                other => line(other).len(),
            })
            .sum();
        let budget = summaries + 10 * one;
        let mut backlog = Backlog::with_budget(budget);
        for e in &events {
            backlog.push(e, &line(e));
            assert!(backlog.bytes() <= budget, "{} > {budget}", backlog.bytes());
        }
        let kept = parse(&backlog.lines());
        let kept_snapshots: Vec<&Snapshot> = kept
            .iter()
            .filter_map(|e| match e {
                Event::Snapshot(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(kept_snapshots.len(), snapshots.len());
        let whole = kept_snapshots
            .iter()
            .filter(|s| s.layers.iter().any(|l| l.widest() > 0))
            .count();
        assert!((5..=11).contains(&whole), "{whole}");
        let last = kept_snapshots.last().expect("a snapshot");
        assert!(last.layers.iter().any(|l| l.widest() > 0));
        assert!(matches!(kept.first(), Some(Event::Header(_))));
    }

    /// When even the summaries do not fit, the oldest go and the newest stay.
    #[test]
    fn past_the_budget_without_arrays_the_oldest_go() {
        let events = synthetic::run(300, 1);
        let mut backlog = Backlog::with_budget(50_000);
        for e in &events {
            backlog.push(e, &line(e));
        }
        assert!(backlog.bytes() <= 50_000);
        let kept = parse(&backlog.lines());
        let last_step = |evs: &[Event]| evs.iter().rev().find_map(Event::step);
        assert_eq!(last_step(&kept), last_step(&events));
        let first_kept = kept.iter().find_map(Event::step).expect("a step");
        assert!(first_kept > 0, "the oldest records went");
        // With the default budget, nothing of this small run is lost.
        let mut roomy = Backlog::default();
        for e in &events {
            roomy.push(e, &line(e));
        }
        assert_eq!(roomy.lines().len(), events.len());
    }
}
