//! A second run to compare with (`--compare B.jsonl`): run B's whole history, read before the
//! dashboard opens into a `RunState` of its own, and how it lines up with the run on screen (A).
//! Steps align by number. Layers match by name; per-channel charts also need the same channel
//! count. Two different models therefore compare on the layers they share, and the header says
//! how many that is.
use crate::protocol::Event;

use super::state::{ChannelHistory, LayerState, RunState};

/// What the layers table shows beside its main columns (key `B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CompareColumn {
    /// B's value at A's step.
    #[default]
    Value,
    /// A's value minus B's at A's step.
    Difference,
    Off,
}

impl CompareColumn {
    pub fn next(self) -> CompareColumn {
        match self {
            CompareColumn::Value => CompareColumn::Difference,
            CompareColumn::Difference => CompareColumn::Off,
            CompareColumn::Off => CompareColumn::Value,
        }
    }

    /// The footer's answer to `B`.
    pub fn describe(self) -> &'static str {
        match self {
            CompareColumn::Value => "layers table: run B's values at this step (B)",
            CompareColumn::Difference => "layers table: difference A−B at this step (B)",
            CompareColumn::Off => "layers table: no run B columns (B)",
        }
    }
}

/// Run B.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// B's file name, for the header.
    pub name: String,
    pub run: RunState,
    /// Lines of B's file that could not be read (skipped).
    pub skipped_lines: u64,
}

/// How many of A's layers B shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sharing {
    /// A's layers with a layer of the same name in B.
    pub shared: usize,
    pub a_layers: usize,
    pub b_layers: usize,
    /// Shared layers whose channel counts differ: no per-channel ghost for them.
    pub other_widths: usize,
}

impl Sharing {
    /// "B shares 2 of 3 layers", or None when the two runs have the same layers.
    pub fn notice(&self) -> Option<String> {
        if self.a_layers == 0 {
            return None;
        }
        let same_layers = self.shared == self.a_layers && self.shared == self.b_layers;
        if same_layers && self.other_widths == 0 {
            return None;
        }
        let mut text = format!("B shares {} of {} layers", self.shared, self.a_layers);
        if self.b_layers != self.a_layers {
            text.push_str(&format!(" (B has {})", self.b_layers));
        }
        if self.other_widths > 0 {
            text.push_str(&format!(", {} of other width", self.other_widths));
        }
        Some(text)
    }
}

impl Comparison {
    /// Run B, before its records arrive.
    pub fn new(name: impl Into<String>) -> Comparison {
        Comparison {
            name: name.into(),
            run: RunState::new(),
            skipped_lines: 0,
        }
    }

    /// Run B from its records, in file order.
    pub fn from_events(name: impl Into<String>, events: impl IntoIterator<Item = Event>) -> Self {
        let mut b = Comparison::new(name);
        for event in events {
            b.run.apply(&event);
        }
        b
    }

    /// B's layer of the same name as A's `layer`.
    pub fn layer(&self, layer: &LayerState) -> Option<&LayerState> {
        self.run.layers.iter().find(|b| b.name == layer.name)
    }

    /// B's history of the channel A's chart shows (`a` is one of `layer.channel_history`): only
    /// for a layer of the same name and channel count, and a channel B charts too.
    pub fn channel(&self, layer: &LayerState, a: &ChannelHistory) -> Option<&ChannelHistory> {
        self.layer(layer)
            .filter(|b| b.channels == layer.channels)?
            .channel_history
            .iter()
            .find(|h| h.channel == a.channel)
    }

    /// How A's layers (as known so far) line up with B's.
    pub fn sharing(&self, a: &RunState) -> Sharing {
        let matched: Vec<(&LayerState, &LayerState)> = a
            .layers
            .iter()
            .filter_map(|l| Some((l, self.layer(l)?)))
            .collect();
        Sharing {
            shared: matched.len(),
            a_layers: a.layers.len(),
            b_layers: self.run.layers.len(),
            other_widths: matched
                .iter()
                .filter(|(a, b)| a.channels != b.channels)
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::BnKind;
    use crate::ui::synthetic::{self, bn, NetworkRun};

    fn run_of(layers: Vec<crate::protocol::LayerInfo>) -> Vec<Event> {
        NetworkRun::new(synthetic::producer_header(layers, 1), 30, 3).collect()
    }

    #[test]
    fn different_models_share_layers_by_name_and_say_so() {
        let a_layers = vec![
            bn("block1", 16, BnKind::Bn2d),
            bn("block2", 32, BnKind::Bn2d),
            bn("block3", 64, BnKind::Bn2d),
        ];
        let b_layers = vec![
            bn("block1", 16, BnKind::Bn2d),
            bn("block2", 48, BnKind::Bn2d),
            bn("head", 10, BnKind::Bn1d),
            bn("block4", 8, BnKind::Bn2d),
        ];
        let mut a = RunState::new();
        for e in &run_of(a_layers.clone()) {
            a.apply(e);
        }
        let b = Comparison::from_events("b.jsonl", run_of(b_layers));
        let sharing = b.sharing(&a);
        assert_eq!(
            (sharing.shared, sharing.other_widths),
            (2, 1),
            "{sharing:?}"
        );
        assert_eq!(
            sharing.notice().as_deref(),
            Some("B shares 2 of 3 layers (B has 4), 1 of other width")
        );
        // Layer charts pair by name; channel charts only at the same width.
        assert_eq!(b.layer(&a.layers[1]).map(|l| l.channels), Some(48));
        assert!(b.layer(&a.layers[2]).is_none());
        let ch = |i: usize| &a.layers[i].channel_history[1];
        assert_eq!(b.channel(&a.layers[0], ch(0)).map(|h| h.channel), Some(1));
        assert!(b.channel(&a.layers[1], ch(1)).is_none());
        // The same model: nothing to say.
        let same = Comparison::from_events("a.jsonl", run_of(a_layers));
        assert_eq!(same.sharing(&a).notice(), None);
    }

    #[test]
    fn the_key_cycles_value_difference_off() {
        let start = CompareColumn::default();
        assert_eq!(start, CompareColumn::Value);
        let order: Vec<CompareColumn> = std::iter::successors(Some(start), |c| Some(c.next()))
            .take(4)
            .collect();
        assert_eq!(
            order,
            [
                CompareColumn::Value,
                CompareColumn::Difference,
                CompareColumn::Off,
                CompareColumn::Value
            ]
        );
    }
}
