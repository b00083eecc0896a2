//! Bounded time series for the dashboard's charts.
//!
//! A [`Series`] holds at most `capacity` buckets of `width` training steps each. When a step
//! falls past the last bucket, the width doubles and neighbouring buckets merge, so memory stays
//! fixed however long the run is. Buckets keep min *and* max rather than a mean, so a one-step
//! loss spike is still visible after any amount of compaction or resampling.

use std::mem::size_of;

/// One time bucket: min and max of the finite values pushed into it, and the last value pushed
/// (may be non-finite, so a NaN/inf at the end of a run shows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub min: f32,
    pub max: f32,
    pub last: f32,
    pub count: u32,
}

impl Bucket {
    /// No values: min/max are the identities of min/max so merging into it needs no special case.
    pub const EMPTY: Bucket = Bucket {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        last: f32::NAN,
        count: 0,
    };

    /// No values were pushed into this bucket.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `min`/`max` hold at least one finite value (false if empty or only NaN/inf).
    pub fn is_finite_range(&self) -> bool {
        self.min <= self.max
    }

    /// Combine with a bucket covering later steps; `last` comes from the later one if non-empty.
    pub fn merge(mut self, later: Bucket) -> Bucket {
        if !later.is_empty() {
            self.last = later.last;
        }
        self.count = self.count.saturating_add(later.count);
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self
    }

    fn push(&mut self, value: f32) {
        self.count = self.count.saturating_add(1);
        self.last = value;
        // NaN/inf would poison the chart's scale, so only finite values shape min/max.
        if value.is_finite() {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
    }
}

/// A time series of values keyed by training step, in at most `capacity` buckets of `width` steps
/// each. Bucket k covers steps `[start + k*width, start + (k+1)*width)`. When a push would need
/// bucket index >= capacity, the width doubles and bucket pairs (2j, 2j+1) merge, repeatedly until
/// it fits, so memory is bounded by capacity.
#[derive(Clone, Debug)]
pub struct Series {
    capacity: usize,
    width: u64,
    start: Option<u64>,
    last_step: Option<u64>,
    last_value: Option<f32>,
    buckets: Vec<Bucket>,
}

impl Series {
    /// An empty series of at most `capacity` buckets (values below 2 are raised to 2).
    pub fn new(capacity: usize) -> Series {
        let capacity = capacity.max(2);
        let mut buckets = Vec::new();
        // Reserve up front so memory stays flat over the run; if an absurd capacity cannot be
        // reserved, fall back to growing on demand rather than aborting here.
        let _ = buckets.try_reserve_exact(capacity);
        Series {
            capacity,
            width: 1,
            start: None,
            last_step: None,
            last_value: None,
            buckets,
        }
    }

    /// Record `value` at `step`. The first push sets the start; earlier steps fold into bucket 0,
    /// out-of-order steps merge into their bucket. Non-finite values update `last` and count only.
    pub fn push(&mut self, step: u64, value: f32) {
        let start = *self.start.get_or_insert(step);
        let offset = step.saturating_sub(start);
        let cap = u64::try_from(self.capacity).unwrap_or(u64::MAX);
        // Terminates: once width reaches 2^63, offset / width <= 1 < 2 <= cap.
        while offset / self.width >= cap {
            self.compact();
        }
        // offset / width < capacity, so the cast cannot truncate.
        let idx = (offset / self.width) as usize;
        if self.buckets.len() <= idx {
            self.buckets.resize(idx + 1, Bucket::EMPTY);
        }
        self.buckets[idx].push(value);
        self.last_step = Some(self.last_step.map_or(step, |s| s.max(step)));
        self.last_value = Some(value);
    }

    /// Forget the steps after `step` (a run that went back to a checkpoint): buckets that start
    /// after it go; the bucket holding `step` keeps what it merged (its resolution is the
    /// width). Steps pushed later append from there, never drawn back over the dropped ones.
    pub fn truncate_after(&mut self, step: u64) {
        let Some(start) = self.start else {
            return;
        };
        if step < start {
            *self = Series::new(self.capacity);
            return;
        }
        let keep = ((step - start) / self.width).saturating_add(1);
        self.buckets
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        while self.buckets.last().is_some_and(Bucket::is_empty) {
            self.buckets.pop();
        }
        let Some(k) = self.buckets.len().checked_sub(1) else {
            *self = Series::new(self.capacity);
            return;
        };
        let (_, hi) = self.bounds(k);
        let last = u64::try_from(hi - 1).unwrap_or(u64::MAX).min(step);
        self.last_step = Some(last);
        self.last_value = self.buckets.last().map(|b| b.last);
    }

    /// Double the width, merging bucket pairs in place (reads run ahead of writes).
    fn compact(&mut self) {
        let len = self.buckets.len();
        let half = len.div_ceil(2);
        for j in 0..half {
            self.buckets[j] = merge_all(&self.buckets[2 * j..len.min(2 * j + 2)]);
        }
        self.buckets.truncate(half);
        self.width = self.width.saturating_mul(2);
    }

    /// Half-open step range `[lo, hi)` of bucket `k`, in u128 because it may pass u64::MAX.
    fn bounds(&self, k: usize) -> (u128, u128) {
        let width = u128::from(self.width);
        let lo = u128::from(self.start.unwrap_or(0)) + k as u128 * width;
        (lo, lo + width)
    }

    /// Nothing has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.start.is_none()
    }

    /// The first step pushed.
    pub fn start(&self) -> Option<u64> {
        self.start
    }

    /// The largest step pushed.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }

    /// The value of the most recent push (by push order, not by step).
    pub fn last_value(&self) -> Option<f32> {
        self.last_value
    }

    /// Steps per bucket; always a power of two.
    pub fn width(&self) -> u64 {
        self.width
    }

    /// Buckets from the start up to the highest one pushed into; length <= capacity.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// (step, value) per non-empty bucket from step `from` on, for fitting a trend: the bucket's
    /// middle step and the geometric mean of its min and max (its typical size on a log scale);
    /// buckets with a value <= 0 are left out.
    pub fn log_scale_points(&self, from: u64) -> Vec<(f64, f64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty() && b.min > 0.0)
            .map(|(k, b)| {
                let (lo, hi) = self.bounds(k);
                (
                    (lo + hi) as f64 / 2.0,
                    (f64::from(b.min) * f64::from(b.max)).sqrt(),
                )
            })
            .filter(|&(t, _)| t >= from as f64)
            .collect()
    }

    /// The value in force at `step`: the last value of the latest bucket that starts at or before
    /// it (so a value recorded every 50 steps reads between its records); `None` before the
    /// first push or if that value is not finite.
    pub fn value_at(&self, step: u64) -> Option<f32> {
        let start = self.start?;
        if step < start {
            return None;
        }
        let k = usize::try_from((step - start) / self.width).unwrap_or(usize::MAX);
        let upto = k.saturating_add(1).min(self.buckets.len());
        let bucket = self.buckets[..upto].iter().rev().find(|b| !b.is_empty())?;
        bucket.last.is_finite().then_some(bucket.last)
    }

    /// Finite min and max over buckets overlapping the inclusive step range `[from, to]`
    /// (swapped if reversed); None if there are none.
    pub fn range(&self, from: u64, to: u64) -> Option<(f32, f32)> {
        let (from, to) = (u128::from(from.min(to)), u128::from(from.max(to)));
        let acc = merge_all(self.buckets.iter().enumerate().filter_map(|(k, b)| {
            let (lo, hi) = self.bounds(k);
            (lo <= to && hi > from).then_some(b)
        }));
        acc.is_finite_range().then_some((acc.min, acc.max))
    }

    /// Resample onto `columns` equal step intervals spanning `[from, to]`, one per screen pixel.
    /// Column i covers `[from + i*(to-from)/columns, from + (i+1)*(to-from)/columns)` and gets the
    /// merge of every bucket overlapping it, so a bucket wider than a column fills each column it
    /// touches. `to` itself is excluded, so pass `last_step + 1` to include the newest step.
    /// All empty if `to <= from`. Costs O(buckets + columns).
    pub fn resample(&self, from: u64, to: u64, columns: usize) -> Vec<Bucket> {
        let mut out = vec![Bucket::EMPTY; columns];
        if columns == 0 || to <= from {
            return out;
        }
        let (from, to) = (u128::from(from), u128::from(to));
        let (span, cols) = (to - from, columns as u128);
        for (k, bucket) in self.buckets.iter().enumerate() {
            let (lo, hi) = self.bounds(k);
            if bucket.count == 0 || hi <= from || lo >= to {
                continue;
            }
            // Exact integer arithmetic scaled by `cols`; clamping first keeps the products below
            // span * cols < 2^128. Buckets and columns each tile the line, so the total number
            // of (bucket, column) pairs visited is at most buckets + columns.
            let first = (lo.max(from) - from) * cols / span;
            let end = ((hi.min(to) - from) * cols).div_ceil(span);
            for col in out.iter_mut().take(end as usize).skip(first as usize) {
                *col = col.merge(*bucket);
            }
        }
        out
    }

    /// Approximate heap bytes held by the bucket storage.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
    }
}

/// Merge buckets given in step order.
fn merge_all<'a>(buckets: impl IntoIterator<Item = &'a Bucket>) -> Bucket {
    buckets
        .into_iter()
        .fold(Bucket::EMPTY, |acc, b| acc.merge(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min_max(buckets: &[Bucket]) -> (f32, f32) {
        let all = merge_all(buckets);
        (all.min, all.max)
    }

    fn counts(buckets: &[Bucket]) -> u32 {
        buckets.iter().map(|b| b.count).sum()
    }

    /// Going back to a checkpoint: the steps after it are forgotten, and the steps trained again
    /// replace them instead of merging with the abandoned values.
    #[test]
    fn truncate_after_forgets_later_steps() {
        let mut s = Series::new(16);
        (0..10u64).for_each(|i| s.push(i, i as f32));
        s.truncate_after(4);
        assert_eq!(s.buckets().len(), 5);
        assert_eq!((s.last_step(), s.last_value()), (Some(4), Some(4.0)));
        (5..8u64).for_each(|i| s.push(i, -(i as f32)));
        assert_eq!(s.buckets().len(), 8);
        assert_eq!(min_max(&s.buckets()[5..]), (-7.0, -5.0));
        assert_eq!(s.range(5, 20), Some((-7.0, -5.0)));
        // Wide buckets: the one holding the step keeps its merged values.
        let mut wide = Series::new(4);
        (0..64u64).for_each(|i| wide.push(i, i as f32));
        assert_eq!(wide.width(), 16);
        wide.truncate_after(20);
        assert_eq!(wide.buckets().len(), 2);
        assert_eq!(wide.last_step(), Some(20));
        // Back before the start (a restart): empty, and it starts again at the next push.
        wide.truncate_after(0);
        assert_eq!(wide.buckets().len(), 1);
        let mut late = Series::new(4);
        late.push(3, 1.0);
        late.truncate_after(0);
        assert!(late.is_empty());
        late.push(1, 2.0);
        assert_eq!(late.start(), Some(1));
    }

    #[test]
    fn width_one_until_full() {
        let mut s = Series::new(16);
        (0..16u64).for_each(|i| s.push(i, i as f32 * 0.5));
        assert_eq!((s.width(), s.buckets().len()), (1, 16));
        for (i, b) in s.buckets().iter().enumerate() {
            let v = i as f32 * 0.5;
            assert_eq!((b.min, b.max, b.last, b.count), (v, v, v, 1));
        }
    }

    #[test]
    fn compaction_bounds_memory_and_keeps_spikes() {
        let mut s = Series::new(16);
        let bytes = s.heap_bytes();
        let value = |i: u64| match i {
            97 => 1000.0,
            33 => -500.0,
            _ => (i % 7) as f32 * 0.1,
        };
        for i in 0..160u64 {
            s.push(i, value(i));
            assert!(s.buckets().len() <= 16 && s.width().is_power_of_two());
        }
        assert_eq!(s.width(), 16);
        assert_eq!(min_max(s.buckets()), (-500.0, 1000.0));
        assert_eq!(s.buckets()[97 / 16].max, 1000.0);
        // Bucket 5 (steps 80..96) was built by merging: `last` must come from its later half.
        assert_eq!(s.buckets()[5].last, value(95));
        assert_eq!((counts(s.buckets()), s.heap_bytes()), (160, bytes));
    }

    #[test]
    fn range_matches_brute_force() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut s, mut pushed) = (Series::new(12), Vec::new());
        for i in 0..500u64 {
            let v = (next() % 10_000) as f32 / 7.0 - 600.0;
            let v = if i % 50 == 3 { f32::NAN } else { v };
            s.push(7 + i * 3, v);
            pushed.push((7 + i * 3, v));
        }
        let (start, w) = (s.start().unwrap_or(0), s.width());
        for _ in 0..500 {
            let (a, b) = (next() % 1700, next() % 1700);
            let mut want: Option<(f32, f32)> = None;
            for k in 0..s.buckets().len() as u64 {
                let steps = start + k * w..start + (k + 1) * w;
                if steps.start > a.max(b) || steps.end <= a.min(b) {
                    continue;
                }
                for &(_, v) in pushed.iter().filter(|p| steps.contains(&p.0)) {
                    if v.is_finite() {
                        want = Some(want.map_or((v, v), |(m, x)| (m.min(v), x.max(v))));
                    }
                }
            }
            assert_eq!(s.range(a, b), want, "window {a} {b}");
        }
    }

    #[test]
    fn resample_counts_and_spikes() {
        let mut s = Series::new(16);
        (0..64u64).for_each(|i| s.push(i, if i == 37 { 1000.0 } else { 1.0 }));
        assert_eq!((s.width(), s.buckets().len()), (4, 16));
        for cols in [4usize, 8, 16] {
            let out = s.resample(0, 64, cols);
            assert_eq!(counts(&out), 64);
            for (c, b) in out.iter().enumerate() {
                assert_eq!(b.max == 1000.0, c == 37 * cols / 64, "{cols} columns");
            }
        }
        // More columns than buckets: each 4-step bucket fills the 4 one-step columns it overlaps.
        let out = s.resample(0, 64, 64);
        for (c, b) in out.iter().enumerate() {
            assert_eq!((b.count, b.max == 1000.0), (4, (36..40).contains(&c)));
        }
        // Uneven columns: the column holding step 37 shows the spike, and none is left empty.
        let out = s.resample(0, 64, 7);
        assert!(out[37 * 7 / 64].max == 1000.0 && out.iter().all(|b| b.count > 0));
        assert!(s.resample(100, 200, 5).iter().all(Bucket::is_empty));
        assert!(s.resample(10, 10, 3).iter().all(Bucket::is_empty));
        assert!(s.resample(0, 64, 0).is_empty());
    }

    #[test]
    fn value_at_reads_the_value_in_force() {
        let mut s = Series::new(8);
        assert_eq!(s.value_at(3), None);
        for step in [10u64, 20, 30] {
            s.push(step, step as f32);
        }
        assert_eq!(s.value_at(9), None);
        assert_eq!(s.value_at(10), Some(10.0));
        assert_eq!(s.value_at(25), Some(20.0));
        assert_eq!(s.value_at(1_000), Some(30.0));
        // Compacted (width 4 after steps 10..=40): a bucket reads its last value.
        (31..=40u64).for_each(|i| s.push(i, i as f32));
        assert!(s.width() > 1);
        assert_eq!(s.value_at(40), Some(40.0));
        s.push(41, f32::NAN);
        assert_eq!(s.value_at(41), None);
    }

    #[test]
    fn value_at_a_step_holds_until_the_next_value() {
        let mut s = Series::new(8);
        assert_eq!(s.value_at(0), None);
        for (step, v) in [(10, 1.0), (11, 2.0), (14, 3.0)] {
            s.push(step, v);
        }
        assert_eq!(s.value_at(9), None);
        assert_eq!(s.value_at(10), Some(1.0));
        assert_eq!(s.value_at(12), Some(2.0), "no value at 12: the one before");
        assert_eq!(s.value_at(u64::MAX), Some(3.0), "past the end: the last");
        // Compacted to buckets of 4 steps: the last value of the bucket holding the step.
        s.push(41, 9.0);
        assert_eq!(s.width(), 4);
        assert_eq!(s.value_at(11), Some(2.0));
        assert_eq!(s.value_at(14), Some(3.0));
        assert_eq!(s.value_at(30), Some(3.0));
        assert_eq!(s.value_at(41), Some(9.0));
    }

    #[test]
    fn non_finite_values() {
        let mut s = Series::new(8);
        (0..6u64).for_each(|i| s.push(i, i as f32));
        s.push(6, f32::INFINITY);
        s.push(7, f32::NAN);
        assert!(s.last_value().is_some_and(f32::is_nan));
        assert!(s.buckets()[7].last.is_nan());
        assert_eq!(s.range(0, 100), Some((0.0, 5.0)));
        assert_eq!(s.range(6, 7), None);
        let mut bad = Series::new(8);
        bad.push(3, f32::NAN);
        bad.push(4, f32::NEG_INFINITY);
        assert_eq!(bad.range(0, u64::MAX), None);
        assert!(bad.buckets().iter().all(|b| !b.is_finite_range()));
        assert_eq!(counts(bad.buckets()), 2);
        assert!(Series::new(0).range(0, 10).is_none());
    }

    #[test]
    fn extreme_steps_do_not_panic() {
        let mut s = Series::new(8);
        let pushes = [
            (0, 1.0),
            (1 << 40, 2.0),
            (5, 3.0),
            (u64::MAX, 4.0),
            (3, f32::NAN),
        ];
        for (step, v) in pushes {
            s.push(step, v);
            assert!(s.buckets().len() <= 8 && s.width().is_power_of_two());
        }
        assert_eq!((s.start(), s.last_step()), (Some(0), Some(u64::MAX)));
        assert_eq!(s.range(0, u64::MAX), Some((1.0, 4.0)));
        assert_eq!(s.range(u64::MAX, u64::MAX), Some((4.0, 4.0)));
        assert_eq!(min_max(&s.resample(0, u64::MAX, 3)), (1.0, 4.0));
        assert_eq!(min_max(&s.resample(0, u64::MAX, 1000)), (1.0, 4.0));
        // Start at the very end, then go backwards: everything folds into bucket 0.
        let mut back = Series::new(2);
        for (i, step) in [u64::MAX, 0, u64::MAX, 17].into_iter().enumerate() {
            back.push(step, i as f32);
        }
        assert_eq!((back.buckets().len(), back.width()), (1, 1));
        assert_eq!(back.buckets()[0].count, 4);
        assert_eq!(back.range(u64::MAX, 0), Some((0.0, 3.0)));
        assert_eq!(back.last_value(), Some(3.0));
        // Bucket 0 starts at u64::MAX, just outside resample's half-open span.
        assert!(back.resample(0, u64::MAX, 4).iter().all(Bucket::is_empty));
    }
}
