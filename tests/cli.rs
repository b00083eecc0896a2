//! The real `bntop` binary: argument and data errors, the JSON event stream, divergence.
use std::path::Path;
use std::process::{Command, Output};

use bntop::protocol::{EndReason, Event};

/// Runs bntop in a fresh directory, so recordings it makes by default land there.
fn bntop(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    bntop_in(dir.path(), args)
}

fn bntop_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bntop"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run bntop")
}

#[test]
fn a_headless_run_is_recorded_under_sessions_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bntop_in(
        dir.path(),
        &["train", "--headless", "--steps", "60", "--data", "digits"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("sessions"))
        .expect("sessions/ was created")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.ends_with("Z.jsonl") && name.starts_with("20"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).expect("read the session");
    let records: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one record per line"))
        .collect();
    assert!(matches!(&records[0], Event::Header(h) if h.recording.is_some()));
    assert!(matches!(records.last(), Some(Event::End(e)) if e.step == 60));
    // The last step is kept whole even when the policy dropped its neighbours.
    let last_snapshot = records.iter().rev().find_map(|e| match e {
        Event::Snapshot(s) => Some(s),
        _ => None,
    });
    assert_eq!(last_snapshot.map(|s| s.step), Some(60));
    // --no-record writes nothing; --record chooses the file.
    let out = bntop_in(
        dir.path(),
        &[
            "train",
            "--headless",
            "--steps",
            "5",
            "--data",
            "digits",
            "--no-record",
        ],
    );
    assert!(out.status.success());
    let out = bntop_in(
        dir.path(),
        &[
            "train",
            "--headless",
            "--steps",
            "5",
            "--data",
            "digits",
            "--record",
            "mine.jsonl",
        ],
    );
    assert!(out.status.success());
    assert!(dir.path().join("mine.jsonl").is_file());
    assert_eq!(
        std::fs::read_dir(dir.path().join("sessions"))
            .map(|d| d.count())
            .ok(),
        Some(1)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn events(out: &Output) -> Vec<Event> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line}: {e}"))
        })
        .collect()
}

#[test]
fn bad_arguments_exit_2_with_a_one_line_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bn-momentum", "1.5"], "--bn-momentum"),
        (&["--bn-momentum", "-0.1"], "--bn-momentum"),
        (&["--lr", "0"], "--lr"),
        (&["--lr", "-1"], "--lr"),
        (&["--batch", "0"], "--batch"),
        (&["--batch", "100000"], "--batch"),
        (&["--data", "/no/such/dir"], "/no/such/dir"),
        (&["--lr", "fast"], "--lr"),
        (&["--data-order", "sorted"], "class_sorted"),
        (&["--precise-samples", "0"], "--precise-samples"),
        (&["--lab-every", "often"], "--lab-every"),
        (&["--widths", "16,0,64"], "block 2 has 0 channels"),
        (&["--widths", "16,513"], "block 2 has 513 channels"),
        (&["--widths", "1,2,3,4,5,6,7,8,9"], "9 blocks"),
        (&["--widths", "16,,32"], "--widths"),
        (&["--widths", ""], "--widths"),
    ];
    for (args, mentions) in cases {
        let mut full = vec!["train", "--headless", "--steps", "1"];
        full.extend_from_slice(args);
        let out = bntop(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(mentions),
            "{args:?}: error should mention {mentions}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn a_bad_data_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("batch.bin");
    std::fs::write(&junk, vec![7u8; 1000]).expect("write");
    let out = bntop(&[
        "train",
        "--headless",
        "--steps",
        "1",
        "--data",
        junk.to_str().expect("utf8"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("batch.bin") && err.contains("3073"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn json_stream_has_header_snapshots_evaluations_and_end_in_order() {
    let out = bntop(&[
        "train",
        "--headless",
        "--json",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--conv-bias",
        "--data",
        "digits",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = events(&out);
    let Some(Event::Header(header)) = events.first() else {
        panic!("first record must be the header")
    };
    assert_eq!(header.layers.len(), 3);
    assert_eq!(data(header).name, "digits");
    assert!(header.conventions.drift.contains("BEFORE"));
    let Some(Event::End(end)) = events.last() else {
        panic!("last record must be the end")
    };
    assert_eq!((end.step, end.reason), (40, EndReason::Completed));

    let snapshots: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Snapshot(s) = e {
                Some(s)
            } else {
                None
            }
        })
        .collect();
    assert!(!snapshots.is_empty());
    assert!(
        snapshots.windows(2).all(|w| w[0].step < w[1].step),
        "snapshot steps increase"
    );
    let layer = &snapshots.last().expect("one").layers[1];
    assert_eq!(layer.batch_mean.len(), 32);
    assert!(
        layer.bias_grad.as_ref().is_some_and(|g| g.len() == 32),
        "--conv-bias reports the bias gradient"
    );
    let evals: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Evaluation(v) = e {
                Some(v.step)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(evals, vec![0, 20, 40]);
    // The stream prints progress on stderr, never on stdout.
    assert!(stderr(&out).contains("steps/s"));
}

#[test]
fn a_diverging_run_reports_divergence_and_its_nans_survive_json() {
    let out = bntop(&[
        "train",
        "--headless",
        "--json",
        "--steps",
        "200",
        "--lr",
        "1e6",
        "--momentum",
        "0",
        "--data",
        "digits",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("non-finite"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let events = events(&out);
    let Some(Event::End(end)) = events.last() else {
        panic!("ends with an end record")
    };
    assert_eq!(end.reason, EndReason::Diverged);
    let last = events
        .iter()
        .rev()
        .find_map(|e| {
            if let Event::Snapshot(s) = e {
                Some(s)
            } else {
                None
            }
        })
        .expect("a snapshot");
    assert!(
        !last.loss.is_finite(),
        "the diverged loss arrives as a non-finite number, not null: {}",
        last.loss
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"NaN\"")
            || String::from_utf8_lossy(&out.stdout).contains("inf\"")
    );
}

fn write_idx(dir: &Path, prefix: &str, count: usize) {
    let (rows, cols) = (12u32, 12u32);
    let mut images = vec![0, 0, 8, 3];
    for v in [count as u32, rows, cols] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..count * 144).map(|i| ((i * 31) % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(count as u32).to_be_bytes());
    labels.extend((0..count).map(|i| (i % 10) as u8));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).expect("write images");
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).expect("write labels");
}

#[test]
fn trains_on_an_idx_directory_and_a_cifar_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_idx(dir.path(), "train", 80);
    write_idx(dir.path(), "t10k", 20);
    let out = bntop(&[
        "train",
        "--headless",
        "--json",
        "--steps",
        "3",
        "--batch",
        "16",
        "--data",
        dir.path().to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let Some(Event::Header(h)) = events(&out).into_iter().next() else {
        panic!("header")
    };
    assert_eq!(
        (
            data(&h).name.as_str(),
            data(&h).channels,
            data(&h).height,
            data(&h).train_images
        ),
        ("mnist-idx", 1, 12, 80)
    );
    assert_eq!((h.layers[2].out_height, h.layers[2].out_width), (3, 3));

    let cifar = dir.path().join("data_batch_1.bin");
    let records: Vec<u8> = (0..40)
        .flat_map(|i| {
            std::iter::once((i % 10) as u8).chain((0..3072).map(move |p| ((p + i) % 251) as u8))
        })
        .collect();
    std::fs::write(&cifar, records).expect("write cifar");
    let out = bntop(&[
        "train",
        "--headless",
        "--json",
        "--steps",
        "2",
        "--batch",
        "8",
        "--data",
        cifar.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let Some(Event::Header(h)) = events(&out).into_iter().next() else {
        panic!("header")
    };
    assert_eq!(
        (
            data(&h).name.as_str(),
            data(&h).channels,
            data(&h).height,
            h.layers[0].in_channels
        ),
        ("cifar10", 3, 32, 3)
    );
}

/// A headless run recording to `file`, returned once the file holds at least `bytes`.
fn recording_run(file: &Path, bytes: u64) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_bntop"))
        .args(["train", "--headless", "--data", "digits", "--record"])
        .arg(file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start bntop");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(file).map_or(0, |m| m.len()) < bytes {
        assert!(
            std::time::Instant::now() < deadline,
            "bntop wrote too little"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// `kill -9` in the middle of a recorded run: every complete line of the file is a record, and
/// at most the last line is cut short.
#[test]
fn a_killed_writer_loses_at_most_the_line_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("killed.jsonl");
    // A good part of a second of records, then kill it hard.
    let mut child = recording_run(&file, 200_000);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let bytes = std::fs::read(&file).expect("read");
    let text = String::from_utf8_lossy(&bytes);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    let records: Vec<Event> = complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad complete line: {e}")))
        .collect();
    assert!(matches!(records.first(), Some(Event::Header(_))));
    assert!(
        records
            .iter()
            .filter(|e| matches!(e, Event::Snapshot(_)))
            .count()
            > 10
    );
}

#[test]
fn export_writes_csv_per_step_and_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bntop_in(
        dir.path(),
        &[
            "train",
            "--headless",
            "--steps",
            "40",
            "--data",
            "digits",
            "--record",
            "run.jsonl",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bntop_in(
        dir.path(),
        &["export", "run.jsonl", "--csv", "--layer", "block2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .is_some_and(|h| h.starts_with("step,epoch,time_s,loss")));
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.split(',').nth(6) == Some("block2")));
    assert!(
        rows.last().is_some_and(|r| r.starts_with("40,")),
        "{rows:?}"
    );
    let out = bntop_in(
        dir.path(),
        &["export", "run.jsonl", "--csv", "--layer", "block9"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("block2"),
        "lists the layers: {}",
        stderr(&out)
    );
    let out = bntop_in(dir.path(), &["export", "missing.jsonl", "--csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

/// Ctrl-C (SIGINT) on a headless run: training stops cleanly, the recording ends with the end
/// record, and the exit code says which signal it was.
#[test]
fn sigint_ends_a_headless_run_with_its_end_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("run.jsonl");
    let mut child = recording_run(&file, 100_000);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("exit");
    assert_eq!(status.code(), Some(130));
    let text = std::fs::read_to_string(&file).expect("read");
    let last: Event = serde_json::from_str(text.lines().last().expect("a line")).expect("json");
    assert!(
        matches!(&last, Event::End(e) if e.reason == EndReason::Quit),
        "{last:?}"
    );
}

/// The data set of an engine's header (the engine always names it).
fn data(h: &bntop::protocol::RunHeader) -> &bntop::protocol::DataInfo {
    h.data.as_ref().expect("the engine's header names its data")
}

fn header(out: &Output) -> bntop::protocol::RunHeader {
    assert!(out.status.success(), "{}", stderr(out));
    match events(out).into_iter().next() {
        Some(Event::Header(h)) => *h,
        other => panic!("first record must be the header, got {other:?}"),
    }
}

#[test]
fn data_mnist_trains_on_the_embedded_mnist_and_is_the_default() {
    let run = |data: &[&str]| {
        // No lab and a small held-out sample: MNIST's 2,000 images cost seconds in a debug build.
        let mut args = vec![
            "train",
            "--headless",
            "--json",
            "--steps",
            "3",
            "--batch",
            "16",
            "--lab-every",
            "0",
            "--eval-samples",
            "64",
        ];
        args.extend_from_slice(data);
        bntop(&args)
    };
    let out = run(&["--data", "mnist"]);
    let h = header(&out);
    assert_eq!(
        (
            data(&h).name.as_str(),
            data(&h).source.as_str(),
            data(&h).channels,
            data(&h).height,
            data(&h).width,
            data(&h).train_images,
            data(&h).heldout_images
        ),
        ("mnist-10k", "embedded", 1, 28, 28, 8000, 2000)
    );
    assert_eq!((h.layers[2].out_height, h.layers[2].out_width), (7, 7));
    let steps = events(&out)
        .iter()
        .filter(|e| matches!(e, Event::Snapshot(s) if s.step >= 1))
        .count();
    assert!(steps >= 1, "it trained: {steps} snapshots");
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::End(end) if end.reason == EndReason::Completed)));

    let default = header(&run(&[]));
    assert_eq!(default.data, h.data);
    assert_eq!(default.layers, h.layers);
    let digits = header(&run(&["--data", "digits"]));
    assert_eq!(
        (data(&digits).name.as_str(), data(&digits).train_images),
        ("digits", 1437)
    );
}

/// `--widths` chooses the blocks (the header lists them); without it the network follows the
/// image size: three blocks on the 8x8 digits, four on 28x28 MNIST.
#[test]
fn widths_choose_the_blocks_and_the_default_follows_the_image_size() {
    let layers = |args: &[&str]| {
        let mut full = vec![
            "train",
            "--headless",
            "--json",
            "--no-record",
            "--steps",
            "2",
            "--batch",
            "16",
            "--lab-every",
            "0",
            "--eval-samples",
            "64",
        ];
        full.extend_from_slice(args);
        let h = header(&bntop(&full));
        h.layers
            .iter()
            .map(|l| (l.name.clone(), l.channels, l.stride, l.out_height))
            .collect::<Vec<_>>()
    };
    let named = |blocks: &[(usize, usize, usize)]| {
        (blocks.iter().enumerate())
            .map(|(i, &(c, s, h))| (format!("block{}", i + 1), c, s, h))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        layers(&["--data", "digits", "--widths", "8,16"]),
        named(&[(8, 1, 8), (16, 2, 4)])
    );
    assert_eq!(
        layers(&["--data", "digits"]),
        named(&[(16, 1, 8), (32, 2, 4), (64, 2, 2)])
    );
    assert_eq!(
        layers(&["--data", "mnist"]),
        named(&[(16, 1, 28), (32, 2, 14), (64, 2, 7), (128, 2, 4)])
    );
    assert_eq!(
        layers(&["--data", "mnist", "--widths", "4"]),
        named(&[(4, 1, 28)])
    );
}

#[test]
fn a_directory_named_mnist_is_reached_as_a_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).expect("mkdir");
    write_idx(&mnist, "train", 40);
    write_idx(&mnist, "t10k", 10);
    let name = |path: &str| {
        let args = [
            "train",
            "--headless",
            "--json",
            "--no-record",
            "--steps",
            "1",
            "--batch",
            "8",
            "--data",
            path,
        ];
        data(&header(&bntop_in(dir.path(), &args))).name.clone()
    };
    assert_eq!(name("./mnist"), "mnist-idx");
    assert_eq!(name("mnist/"), "mnist-idx");
    assert_eq!(name("mnist"), "mnist-10k");
}

#[test]
fn bench_on_a_random_shape_prints_gflops() {
    let args = [
        "bench",
        "--shape",
        "3,8,8",
        "--steps",
        "4",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--batches",
        "8",
    ];
    let out = bntop(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("random (generated, 3x8x8 images)"), "{text}");
    assert!(text.contains("widths 16,32,64 on random"), "{text}");
    assert!(
        text.contains("GFLOP/s: metrics-off steps/s x conv + linear FLOPs"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("8 "))
        .unwrap_or_else(|| panic!("no batch-8 row: {text}"));
    // batch, rate, "st/s", GFLOP/s: the GFLOP/s is the rate times 3 x 2,811,904 forward FLOPs (3x8x8, batch 8).
    let fields: Vec<&str> = row.split_whitespace().collect();
    let rate: f64 = fields[1].parse().expect("rate");
    let gflops: f64 = fields[3].parse().expect("GFLOP/s");
    let expected = rate * 3.0 * 2_811_904.0 / 1e9;
    assert!(
        (gflops - expected).abs() <= 0.006 + 1e-3 * expected,
        "{gflops} vs {expected}: {row}"
    );

    for (shape, batches, problem) in [
        ("2,8,8", "8", "1 or 3"),
        ("3,8", "8", "three"),
        ("3,0,8", "8", "positive"),
        ("3,512,512", "8", "larger than the 196608 pixels"),
        (
            "3,256,256",
            "8,1000",
            "needs 3750 MB of random images (at most 512 MB)",
        ),
    ] {
        let out = bntop(&["bench", "--shape", shape, "--batches", batches]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{shape}: {err}");
        assert!(err.contains(problem), "{shape}: {err}");
    }

    // --widths: the FLOPs follow the network (3x8x8 -> 8x8 -> 4x4 with 4 and 8 channels).
    let mut args = args.to_vec();
    args.extend(["--widths", "4,8"]);
    let out = bntop(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("widths 4,8 on random"), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("8 "))
        .unwrap_or_else(|| panic!("no batch-8 row: {text}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    let rate: f64 = fields[1].parse().expect("rate");
    let gflops: f64 = fields[3].parse().expect("GFLOP/s");
    let forward = 2.0 * 8.0 * (4.0 * 27.0 * 64.0 + 8.0 * 36.0 * 16.0 + 8.0 * 10.0);
    let expected = rate * 3.0 * forward / 1e9;
    assert!(
        (gflops - expected).abs() <= 0.006 + 1e-3 * expected,
        "{gflops} vs {expected}: {row}"
    );
    let out = bntop(&["bench", "--widths", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("block 1 has 0 channels"));
}

/// `--compare` with a file that is not a readable session: one line naming it, exit 2, before the
/// dashboard takes the terminal (nothing on stdout), training starts or a recording is made.
#[test]
fn a_bad_compare_file_exits_2_with_one_line_before_the_dashboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path.to_str().expect("utf8").to_string()
    };
    let header_only = {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/healthy-convergence.jsonl"),
        )
        .expect("a shipped session");
        let first = shipped.lines().next().unwrap_or_default().to_string();
        write("header-only.jsonl", format!("{first}\n").as_bytes())
    };
    let newer = r#"{"kind":"header","format":"bntop","version_major":99,"version_minor":0}"#;
    let cases = [
        (
            dir.path().join("missing.jsonl").display().to_string(),
            "missing.jsonl",
        ),
        (dir.path().display().to_string(), "--compare"),
        (write("empty.jsonl", b""), "not a bntop session"),
        (
            write("junk.jsonl", &[0xff, 0, 7, b'\n', b'{', b'\n']),
            "not a bntop session",
        ),
        (write("newer.jsonl", format!("{newer}\n").as_bytes()), "99"),
        (header_only, "no training steps"),
    ];
    let replayed = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/healthy-convergence.jsonl");
    let replayed = replayed.to_str().expect("utf8");
    for (file, mentions) in &cases {
        let runs: [&[&str]; 4] = [
            &["replay", replayed, "--compare", file],
            &["--compare", file, "--data", "digits", "--steps", "5"],
            &["attach", "/no/such/socket", "--compare", file],
            &["train", "--headless", "--steps", "1", "--compare", file],
        ];
        for args in runs {
            let run_dir = tempfile::tempdir().expect("tempdir");
            let out = bntop_in(run_dir.path(), args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            // --headless refuses --compare before reading it.
            let expected = if args.contains(&"--headless") {
                "--headless"
            } else {
                mentions
            };
            assert!(
                err.contains(expected),
                "{args:?}: should mention {expected}: {err}"
            );
            assert!(
                out.stdout.is_empty(),
                "{args:?}: the terminal was not touched"
            );
            let made: Vec<_> = std::fs::read_dir(run_dir.path()).expect("ls").collect();
            assert!(made.is_empty(), "{args:?}: nothing recorded: {made:?}");
        }
    }
}
