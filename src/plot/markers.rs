//! Control markers: one colour per kind of control (in order of first use), a short word for the
//! kind for the legend, and the placement of the labels so none overlaps another.
use super::recording::ControlMarker;

/// Label rows above a panel's plot area: a label goes to the first row where it fits.
pub const LABEL_ROWS: usize = 3;
/// Space kept between two labels of a row, in pixels.
const LABEL_GAP: i32 = 6;

/// The kind as a word: `set_lr` -> `lr`, `apply_precise_bn` -> `apply precise bn`.
pub fn kind_word(kind: &str) -> String {
    kind.strip_prefix("set_").unwrap_or(kind).replace('_', " ")
}

/// The distinct kinds of `markers`, in order of first appearance (the legend's order, and each
/// kind's colour index).
pub fn kinds(markers: &[ControlMarker]) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    for m in markers {
        if !kinds.contains(&m.kind) {
            kinds.push(m.kind);
        }
    }
    kinds
}

/// For labels at pixel columns `x` (left edge) with widths `width`, in the order given: the row
/// each goes to, or None when every row is taken there (the marker line still shows, and the
/// legend names its kind). A label that would run past `right_edge` ends at its marker instead
/// (`labels` is updated to where each goes). Labels are placed left to right, the earlier
/// control winning.
pub fn place_labels(labels: &mut [(i32, i32)], right_edge: i32) -> Vec<Option<usize>> {
    for (x, width) in labels.iter_mut() {
        if *x + *width > right_edge {
            *x = (*x - *width - 4).max(0);
        }
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| labels[i].0);
    // The right end of the last label in each row.
    let mut ends = [i32::MIN; LABEL_ROWS];
    let mut rows = vec![None; labels.len()];
    for i in order {
        let (x, width) = labels[i];
        if let Some(row) = (0..LABEL_ROWS).find(|&r| ends[r].saturating_add(LABEL_GAP) <= x) {
            ends[row] = x + width;
            rows[i] = Some(row);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_overlap_and_stack_into_rows() {
        let mut labels = [(0, 50), (10, 50), (20, 50), (30, 50), (100, 20), (200, 80)];
        let rows = place_labels(&mut labels, 250);
        assert_eq!(
            rows,
            vec![Some(0), Some(1), Some(2), None, Some(0), Some(1)],
            "the fourth overlaps all three rows"
        );
        assert_eq!(labels[5], (116, 80), "past the edge: ends at its marker");
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate().skip(i + 1) {
                if rows[i].is_some() && rows[i] == rows[j] {
                    assert!(a.0 + a.1 + LABEL_GAP <= b.0 || b.0 + b.1 + LABEL_GAP <= a.0);
                }
            }
        }
    }

    #[test]
    fn kinds_keep_first_use_order() {
        let m = |kind| ControlMarker {
            step: 1,
            kind,
            label: String::new(),
        };
        let markers = [m("set_lr"), m("set_mode"), m("set_lr"), m("pause")];
        assert_eq!(kinds(&markers), ["set_lr", "set_mode", "pause"]);
        assert_eq!(kind_word("set_lr"), "lr");
        assert_eq!(kind_word("apply_precise_bn"), "apply precise bn");
    }
}
