//! How big a record may be (sessions/FORMAT.md, "Limits"). A recording or a server is input like
//! any other: a record over a limit is not shown, so a hostile file or peer cannot make a viewer
//! allocate without bound. Readers skip such a record and count it with the other bad lines.
//!
//! Arrays and layer lists are capped while they are parsed (an over-long one stops the parse),
//! the rest by [`check`] on the parsed record. What the dashboard keeps is sized from the header
//! (fixed history budgets shared by its layers, plus the latest arrays: about 90 bytes per
//! channel), so the records after a header must fit its shape; that also keeps records that each
//! pass from adding up to more layers and channels than any one of them has.
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::events::Event;
use super::header::RunHeader;

/// A longer line is not read. The largest record the limits below allow is a snapshot with all 23
/// per-channel arrays of [`MAX_TOTAL_CHANNELS`] channels, at most 15 bytes a value
/// ("-1.1754944e-38,"): 11.3 MB; with [`MAX_RANKS`] rank drifts and a summary per layer of
/// [`MAX_LAYERS`], under 15.5 MB. A ResNet-50 snapshot (26,560 BN channels) is at most 8.8 MB.
pub const MAX_LINE: usize = 16 << 20;
/// Layers of a header, snapshot, population or probe record.
pub const MAX_LAYERS: usize = 256;
/// Values of one array: the channels of one layer (and of the input images).
pub const MAX_CHANNELS: usize = 4096;
/// Channels of all the header's layers together: ResNet-50 has 26,560 BN channels.
pub const MAX_TOTAL_CHANNELS: usize = 32768;
/// Values of one layer's `rank_drift` (ranks of a distributed run).
pub const MAX_RANKS: usize = 1024;
/// Bytes of one string (names, labels, reasons, messages).
pub const MAX_TEXT: usize = 4096;
/// Control names a producer's header may list (there are about 20 controls).
pub const MAX_CONTROL_NAMES: usize = 64;
/// Without a header (a file that lost its first line), only the first this many layers may carry
/// per-channel arrays, of at most [`HEADERLESS_CHANNELS`] values: what the default network needs.
pub const HEADERLESS_LAYERS: usize = 16;
pub const HEADERLESS_CHANNELS: usize = 256;

/// `#[serde(deserialize_with = "limits::bounded_layers")]`: a list of at most [`MAX_LAYERS`].
pub fn bounded_layers<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {MAX_LAYERS} layers")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut layers = Vec::new();
            while let Some(layer) = seq.next_element()? {
                if layers.len() == MAX_LAYERS {
                    return Err(de::Error::custom(format!("more than {MAX_LAYERS} layers")));
                }
                layers.push(layer);
            }
            Ok(layers)
        }
    }

    d.deserialize_seq(Bounded(PhantomData))
}

/// Whether `event` is within the limits; `header` is the run's header, if one was read (the
/// reference for the layers and channels of the other records). The error says which limit.
pub fn check(event: &Event, header: Option<&RunHeader>) -> Result<(), String> {
    match event {
        Event::Header(h) => check_header(h),
        Event::Snapshot(s) => {
            if let Some(l) = s.layers.iter().find(|l| l.rank_drift.len() > MAX_RANKS) {
                return Err(format!(
                    "a rank_drift of {} values, more than {MAX_RANKS}",
                    l.rank_drift.len()
                ));
            }
            check_layers(s.layers.iter().map(|l| l.widest()), header)
        }
        Event::Population(p) => check_layers(
            p.layers.iter().map(|l| l.mean.len().max(l.var.len())),
            header,
        ),
        Event::Probe(p) => check_layers(p.layers.iter().map(|_| 0), header),
        Event::Control(c) => c.rejected.as_deref().map_or(Ok(()), text),
        Event::Marker(m) => text(&m.label),
        Event::End(e) => e.message.as_deref().map_or(Ok(()), text),
        Event::Evaluation(_) | Event::Folding(_) | Event::Unknown => Ok(()),
    }
}

fn text(s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        return Err(format!("a text of {} bytes, more than {MAX_TEXT}", s.len()));
    }
    Ok(())
}

/// The header's part of [`check`].
pub fn check_header(h: &RunHeader) -> Result<(), String> {
    if h.layers.len() > MAX_LAYERS {
        return Err(format!(
            "a header of {} layers, more than {MAX_LAYERS}",
            h.layers.len()
        ));
    }
    let mut total = 0usize;
    for (i, layer) in h.layers.iter().enumerate() {
        if layer.channels > MAX_CHANNELS {
            return Err(format!(
                "header layer {i} has {} channels, more than {MAX_CHANNELS}",
                layer.channels
            ));
        }
        total += layer.channels;
        text(&layer.name)?;
    }
    if total > MAX_TOTAL_CHANNELS {
        return Err(format!(
            "a header of {total} channels in all, more than {MAX_TOTAL_CHANNELS}"
        ));
    }
    if let Some(names) = h.producer.as_ref().and_then(|p| p.controls.as_ref()) {
        if names.len() > MAX_CONTROL_NAMES {
            return Err(format!(
                "a producer with {} control names, more than {MAX_CONTROL_NAMES}",
                names.len()
            ));
        }
        names.iter().try_for_each(|n| text(n))?;
    }
    let producer = h
        .producer
        .iter()
        .flat_map(|p| [&p.name, &p.version, &p.framework, &p.model, &p.device]);
    let data = h.data.iter().flat_map(|d| [&d.name, &d.source]);
    let layer_sources = h.layers.iter().filter_map(|l| l.feeds_from.as_ref());
    let c = &h.conventions;
    for s in producer
        .chain(data)
        .chain(layer_sources)
        .chain(h.config.optimizer.name.as_ref())
        .chain([
            &h.format,
            &h.config.data_order,
            &c.momentum,
            &c.batch_variance,
            &c.running_variance,
            &c.drift,
            &c.weight_metrics,
            &c.weight_decay_scope,
        ])
    {
        text(s)?;
    }
    Ok(())
}

/// `widths`: per layer, the length of its longest per-channel array (0: summary only).
fn check_layers(
    widths: impl ExactSizeIterator<Item = usize>,
    header: Option<&RunHeader>,
) -> Result<(), String> {
    let n = widths.len();
    if n > MAX_LAYERS {
        return Err(format!("{n} layers, more than {MAX_LAYERS}"));
    }
    match header {
        Some(h) => {
            if n > h.layers.len() {
                return Err(format!(
                    "{n} layers, more than the header's {}",
                    h.layers.len()
                ));
            }
            for (i, (width, layer)) in widths.zip(&h.layers).enumerate() {
                if width > layer.channels {
                    return Err(format!(
                        "layer {i} has {width} channels, more than the header's {}",
                        layer.channels
                    ));
                }
            }
        }
        None => {
            for (i, width) in widths.enumerate() {
                let allowed = if i < HEADERLESS_LAYERS {
                    HEADERLESS_CHANNELS
                } else {
                    0
                };
                if width > allowed {
                    return Err(format!(
                        "layer {i} has {width} channels, more than {allowed} without a header"
                    ));
                }
            }
        }
    }
    Ok(())
}
