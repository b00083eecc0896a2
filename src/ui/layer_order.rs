//! The order of the layers table: network order, worst drift first, or by name. Selection and
//! controls keep using the layer's index in the header; only the rows move.
use std::cmp::Ordering;

use super::state::{LayerState, RunState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LayerSort {
    #[default]
    Network,
    /// Ξ = (D/D0)² descending; layers whose D0 is not known yet follow, by D.
    Drift,
    /// By name, numbers compared as numbers (layer2 before layer10).
    Name,
}

impl LayerSort {
    /// The next order for the sort key.
    pub fn next(self) -> LayerSort {
        match self {
            LayerSort::Network => LayerSort::Drift,
            LayerSort::Drift => LayerSort::Name,
            LayerSort::Name => LayerSort::Network,
        }
    }

    pub fn label(self, ascii: bool) -> &'static str {
        match self {
            LayerSort::Network => "network order",
            LayerSort::Drift if ascii => "worst drift (Xi) first",
            LayerSort::Drift => "worst drift (Ξ) first",
            LayerSort::Name => "name",
        }
    }
}

/// How badly the layer drifts: Ξ when D0 is known (first), else D, else nothing (last).
fn badness(layer: &LayerState) -> (u8, f64) {
    let Some(d) = layer
        .latest
        .as_ref()
        .map(|l| f64::from(l.summary.drift))
        .filter(|d| !d.is_nan())
    else {
        return (0, 0.0);
    };
    match layer.noise_floor().filter(|f| *f > 0.0) {
        Some(floor) => (2, (d / floor).powi(2)),
        None => (1, d),
    }
}

/// `a` and `b` compared with their digit runs as numbers.
pub fn natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let number = |it: &mut std::iter::Peekable<std::str::Chars>| {
                    let mut digits = String::new();
                    while let Some(c) = it.next_if(char::is_ascii_digit) {
                        digits.push(c);
                    }
                    digits.trim_start_matches('0').to_string()
                };
                let (m, n) = (number(&mut x), number(&mut y));
                let order = m.len().cmp(&n.len()).then_with(|| m.cmp(&n));
                if order != Ordering::Equal {
                    return order;
                }
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(&q);
                }
                x.next();
                y.next();
            }
        }
    }
}

/// The layers' indices in display order.
pub fn order(state: &RunState, sort: LayerSort) -> Vec<usize> {
    let mut order: Vec<usize> = (0..state.layers.len()).collect();
    let layers = &state.layers;
    match sort {
        LayerSort::Network => {}
        LayerSort::Drift => order.sort_by(|&a, &b| {
            let (ka, kb) = (badness(&layers[a]), badness(&layers[b]));
            kb.0.cmp(&ka.0)
                .then_with(|| kb.1.total_cmp(&ka.1))
                .then(a.cmp(&b))
        }),
        LayerSort::Name => {
            order.sort_by(|&a, &b| natural(&layers[a].name, &layers[b].name).then(a.cmp(&b)))
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec![
            "layer10.bn",
            "layer2.bn",
            "bn1",
            "layer2.bn10",
            "layer2.bn9",
        ];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(
            names,
            [
                "bn1",
                "layer2.bn",
                "layer2.bn9",
                "layer2.bn10",
                "layer10.bn"
            ]
        );
        assert_eq!(
            natural(
                "a99999999999999999999999999",
                "a100000000000000000000000000"
            ),
            Ordering::Less
        );
    }
}
