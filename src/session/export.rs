//! `bntop export FILE --csv [--layer L]`: a session's per-step, per-layer scalars as CSV, for
//! spreadsheets, pandas or gnuplot.
use std::borrow::Cow;
use std::io::{BufWriter, Write};

use crate::protocol::{BnMode, Event, LayerSnapshot, Snapshot};

use super::reader::{Entry, Kind, Reader};
use super::SessionError;

/// The CSV columns. `batch_mean` to `running_var` are channel means of `batch_mean`,
/// `running_mean_pre`, `batch_var` and `running_var_pre`: empty where the snapshot was recorded
/// summary-only. `radial_fraction` (format 1.3) came last, so older columns kept their places;
/// NaN for older recordings.
pub const COLUMNS: &str = "step,epoch,time_s,loss,batch_accuracy,lr,layer,mode,momentum,D,r_mean,r_min,r_max,d_mean_abs,d_max_abs,weight_norm,angular_update,effective_lr,max_abs_cos,relu_active,batch_mean,running_mean,batch_var,running_var,radial_fraction";

/// Polls per call while reading the file to its end.
const POLL_BUDGET: usize = 64 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub rows: u64,
    /// Bad lines in the file (skipped while indexing or reading).
    pub skipped_lines: u64,
}

/// Writes the header row [`COLUMNS`], then one row per snapshot per layer, in file order:
/// the snapshot's step, epoch, time, loss, batch accuracy and lr, then the layer's name, mode,
/// momentum and summary (D is the layer drift), then four channel means (empty when the snapshot
/// is summary-only). `layer` keeps one layer, by name ("block2") or 0-based index ("1" = the
/// second). Non-finite values are written NaN, inf, -inf. Bad records are skipped and counted.
/// Without a header, layers are named by their index.
pub fn write_csv(
    reader: &mut Reader,
    layer: Option<&str>,
    out: &mut dyn Write,
) -> Result<ExportStats, SessionError> {
    while !reader.poll(POLL_BUDGET)?.at_end {}
    let file = reader.path().display().to_string();
    let write_err = |source| SessionError::Write {
        what: format!("the CSV of {file}"),
        source,
    };
    let mut names: Vec<String> = reader
        .header()
        .map(|h| h.layers.iter().map(|l| l.name.clone()).collect())
        .unwrap_or_default();
    let snapshots: Vec<_> = reader
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, Kind::Snapshot { .. }))
        .copied()
        .collect();
    let mut selected = None;
    if let Some(wanted) = layer {
        if names.is_empty() {
            names = unnamed_layers(reader, &snapshots);
        }
        let layer = resolve_layer(&names, wanted)
            .map_err(|e| SessionError::NoSuchLayer(format!("{file}: {e}")))?;
        selected = Some(layer);
    }
    let mut out = BufWriter::with_capacity(1 << 16, out);
    writeln!(out, "{COLUMNS}").map_err(write_err)?;
    let mut rows = 0u64;
    for entry in &snapshots {
        // A bad record is counted by the reader; the export goes on without it.
        let Ok(Event::Snapshot(snapshot)) = reader.read(entry) else {
            continue;
        };
        for (i, l) in snapshot.layers.iter().enumerate() {
            if selected.is_some_and(|s| s != i) {
                continue;
            }
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            write_row(&mut out, &snapshot, &name, l).map_err(write_err)?;
            rows += 1;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(ExportStats {
        rows,
        skipped_lines: reader.skipped().lines,
    })
}

/// Layer names for a file without a header: indices, as many as the widest readable snapshot.
fn unnamed_layers(reader: &mut Reader, snapshots: &[Entry]) -> Vec<String> {
    let count = snapshots
        .iter()
        .find_map(|e| match reader.read(e) {
            Ok(Event::Snapshot(s)) => Some(s.layers.len()),
            _ => None,
        })
        .unwrap_or(0);
    (0..count).map(|i| i.to_string()).collect()
}

/// A layer by name, or by 0-based index.
fn resolve_layer(names: &[String], wanted: &str) -> Result<usize, String> {
    if let Some(i) = names.iter().position(|n| n == wanted) {
        return Ok(i);
    }
    if let Ok(i) = wanted.parse::<usize>() {
        if i < names.len() {
            return Ok(i);
        }
    }
    if names.is_empty() {
        return Err(format!(
            "no layer \"{wanted}\": the session has no layer data"
        ));
    }
    Err(format!(
        "no layer \"{wanted}\"; layers: {} (or an index from 0 to {})",
        names.join(", "),
        names.len() - 1
    ))
}

fn write_row(
    out: &mut impl Write,
    s: &Snapshot,
    name: &str,
    l: &LayerSnapshot,
) -> std::io::Result<()> {
    let m = &l.summary;
    let mode = match l.mode {
        BnMode::Train => "train",
        BnMode::Eval => "eval",
    };
    // Rust prints non-finite floats as NaN, inf and -inf: the spellings wanted here.
    write!(
        out,
        "{},{},{},{},{},{},{},{mode},{},",
        s.step,
        s.epoch,
        s.time_s,
        s.loss,
        s.batch_accuracy,
        s.lr,
        csv_field(name),
        l.momentum
    )?;
    write!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{}",
        m.drift,
        m.r_mean,
        m.r_min,
        m.r_max,
        m.d_mean_abs,
        m.d_max_abs,
        m.weight_norm,
        m.angular_update,
        m.effective_lr,
        m.max_abs_cos,
        m.relu_active
    )?;
    for xs in [
        &l.batch_mean,
        &l.running_mean_pre,
        &l.batch_var,
        &l.running_var_pre,
    ] {
        match channel_mean(xs) {
            Some(x) => write!(out, ",{x}")?,
            None => write!(out, ",")?,
        }
    }
    writeln!(out, ",{}", m.radial_fraction)
}

fn channel_mean(xs: &[f32]) -> Option<f32> {
    if xs.is_empty() {
        return None;
    }
    Some((xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64) as f32)
}

/// A field quoted if it needs to be (RFC 4180).
fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_by_name_or_index() {
        let names: Vec<String> = ["block1", "block2", "3"].map(String::from).to_vec();
        assert_eq!(resolve_layer(&names, "block2"), Ok(1));
        assert_eq!(resolve_layer(&names, "0"), Ok(0));
        // A name wins over an index.
        assert_eq!(resolve_layer(&names, "3"), Ok(2));
        let err = resolve_layer(&names, "7").expect_err("unknown");
        assert_eq!(
            err,
            "no layer \"7\"; layers: block1, block2, 3 (or an index from 0 to 2)"
        );
        assert!(resolve_layer(&[], "0").is_err());
    }

    #[test]
    fn fields_and_means() {
        assert_eq!(csv_field("block1"), "block1");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(channel_mean(&[]), None);
        assert_eq!(channel_mean(&[1.0, 2.0, 4.5]), Some(2.5));
        assert!(channel_mean(&[1.0, f32::NAN]).is_some_and(f32::is_nan));
        assert_eq!(format!("{}", f32::NEG_INFINITY), "-inf");
        assert_eq!(COLUMNS.split(',').count(), 25);
    }
}
