//! `bntop plot`: the real binary on the shipped recordings. The SVG is well-formed XML with one
//! titled panel per chart, one line per series and one marker line per control in every panel;
//! the PNG decodes at the figure's size and is not blank; bad input fails in one line.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bntop::plot::draw::size;

fn session(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sessions")
        .join(name)
}

fn bntop(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bntop"))
        .args(args)
        .output()
        .expect("run bntop")
}

fn plot(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "plot".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    bntop(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (text, bold) of every `<text>` element.
fn texts(doc: &roxmltree::Document) -> Vec<(String, bool)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let text = n.text().unwrap_or("").trim().to_string();
            (text, n.attribute("font-weight") == Some("bold"))
        })
        .collect()
}

/// Polylines of `width` stroke (2: a series' line; 1: a control marker), with their points.
fn polylines<'a>(doc: &'a roxmltree::Document, width: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some(width))
        .collect()
}

/// A vertical two-point polyline: a marker at one step from the bottom to the top of a panel.
fn is_vertical(node: &roxmltree::Node) -> bool {
    let points: Vec<&str> = node
        .attribute("points")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let x = |p: &str| p.split(',').next().map(str::to_string);
    points.len() == 2 && x(points[0]) == x(points[1])
}

#[test]
fn the_svg_has_every_panel_series_and_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("m.svg");
    let out = plot(&session("momentum-lag-vs-noise.jsonl"), &out_path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&out_path).expect("the SVG");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let texts = texts(&doc);
    let titles: Vec<&str> = texts.iter().filter(|t| t.1).map(|t| t.0.as_str()).collect();
    // The figure's title, then loss, held-out and two panels for each of the 3 layers.
    assert_eq!(titles.len(), 1 + 8, "{titles:?}");
    assert_eq!(titles[1], "training loss (log scale)");
    assert!(titles[2].starts_with("held-out accuracy"), "{titles:?}");
    for layer in ["block1", "block2", "block3"] {
        assert!(titles.contains(&format!("{layer}: drift D with its floor D0").as_str()));
        assert!(titles.contains(&format!("{layer}: angular update θ per step").as_str()));
    }
    // Series lines: loss 1, held-out batch, EMA and PreciseBN 3, per layer D and D0 (format
    // 1.5 carries the engine's D0), θ and θ* 4.
    assert_eq!(polylines(&doc, "2").len(), 1 + 3 + 3 * 4);
    assert_eq!(
        texts.iter().filter(|t| t.0 == "D0 (noise floor)").count(),
        3
    );
    // Three momentum changes, a line in each of the 8 panels in the first kind's colour,
    // labelled above the first row.
    let markers = polylines(&doc, "1")
        .into_iter()
        .filter(|n| is_vertical(n) && n.attribute("stroke") == Some("#9467BD"))
        .count();
    assert_eq!(markers, 3 * 8);
    for label in ["block3 momentum = 0.010", "block3 momentum = 0.500"] {
        assert_eq!(texts.iter().filter(|t| t.0 == label).count(), 2, "{label}");
    }
    assert!(
        texts.iter().any(|t| t.0 == "momentum ×3"),
        "the kind legend"
    );
}

#[test]
fn compare_adds_a_dashed_ghost_to_every_shared_panel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("c.svg");
    let out = plot(
        &session("momentum-lag-vs-noise.jsonl"),
        &out_path,
        &[
            "--compare",
            session("class-sorted-precise-bn.jsonl")
                .to_str()
                .unwrap_or(""),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&out_path).expect("the SVG");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let texts = texts(&doc);
    // Every panel's legend has the "B" entry; B's four kinds of control are in the kind legend.
    assert_eq!(texts.iter().filter(|t| t.0 == "B").count(), 8);
    assert!(
        texts.iter().any(|t| t.0 == "data order ×0 (B ×1)"),
        "{texts:?}"
    );
    assert!(texts[0]
        .0
        .contains("vs  class-sorted-precise-bn.jsonl (B, dashed)"));
    // Without --compare there is no ghost: the dashes are many short segments of faint lines.
    let faint = |doc: &roxmltree::Document| {
        polylines(doc, "2")
            .iter()
            .filter(|n| n.attribute("opacity") != Some("1"))
            .count()
    };
    assert!(faint(&doc) > 100, "{}", faint(&doc));
    let alone = dir.path().join("a.svg");
    let out = plot(&session("momentum-lag-vs-noise.jsonl"), &alone, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&alone).expect("the SVG");
    assert_eq!(faint(&roxmltree::Document::parse(&svg).expect("XML")), 0);
}

#[test]
fn the_png_decodes_at_the_figure_size_and_is_not_blank() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("h.PNG");
    let out = plot(
        &session("healthy-convergence.jsonl"),
        &out_path,
        &["--layer", "block2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = std::fs::File::open(&out_path).expect("the PNG");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut pixels = vec![0; decoder.output_buffer_size()];
    let info = decoder.next_frame(&mut pixels).expect("a frame");
    // Loss, held-out, and block2's two panels.
    assert_eq!((info.width, info.height), size(4));
    let bytes = &pixels[..info.buffer_size()];
    let mean = bytes.iter().map(|&b| f64::from(b)).sum::<f64>() / bytes.len() as f64;
    let variance = bytes
        .iter()
        .map(|&b| (f64::from(b) - mean).powi(2))
        .sum::<f64>()
        / bytes.len() as f64;
    // Mostly white, but with lines and text: a blank or single-colour image has variance 0.
    assert!(
        mean > 200.0 && variance > 200.0,
        "mean {mean} variance {variance}"
    );
}

#[test]
fn bad_input_fails_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, b"\x00\xffnot json\n{\"kind\":\"snapshot\"}\n").expect("write");
    let good = session("healthy-convergence.jsonl");
    // A session that ended before its first step: a header and nothing to draw.
    let header_only = dir.path().join("header-only.jsonl");
    let text = std::fs::read_to_string(&good).expect("read");
    let header = text.lines().next().expect("a header line");
    std::fs::write(&header_only, format!("{header}\n")).expect("write");
    let svg = dir.path().join("x.svg");
    let cases: [(&Path, PathBuf, &[&str], &str); 6] = [
        (&garbage, svg.clone(), &[], "not a bntop session"),
        (&header_only, svg.clone(), &[], "no snapshots to plot"),
        (
            &dir.path().join("missing.jsonl"),
            svg.clone(),
            &[],
            "missing.jsonl",
        ),
        (
            &good,
            dir.path().join("x.pdf"),
            &[],
            "unknown image format .pdf",
        ),
        (
            &good,
            svg.clone(),
            &["--layer", "block9"],
            "no layer block9",
        ),
        (
            &good,
            svg.clone(),
            &["--compare", "/nonexistent/b.jsonl"],
            "b.jsonl",
        ),
    ];
    for (input, output, extra, expected) in cases {
        let out = plot(input, &output, extra);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{expected}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("bntop: ") && err.contains(expected),
            "{err}"
        );
        assert!(!svg.exists(), "nothing is written on bad input");
    }
}
