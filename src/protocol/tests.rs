//! Every record kind survives JSON and comes back equal; unknown kinds are recognised as such.
use super::*;

fn layer(c: usize, bias: bool) -> LayerSnapshot {
    let v = |k: f32| (0..c).map(|i| k + i as f32 * 0.25).collect::<Vec<f32>>();
    LayerSnapshot {
        mode: BnMode::Eval,
        cumulative: false,
        rank_drift: Vec::new(),
        momentum: 0.1,
        batch_mean: v(0.5),
        batch_var: v(1.5),
        running_mean_pre: v(0.4),
        running_var_pre: v(1.4),
        running_mean_post: v(0.45),
        running_var_post: v(1.45),
        r: v(1.01),
        d: vec![f32::NAN; c],
        drift: vec![f32::INFINITY; c],
        out_mean: v(0.0),
        out_var: v(1.0),
        relu_mean: v(0.4),
        relu_var: v(0.3),
        relu_active: v(0.5),
        gamma: v(1.0),
        beta: v(0.0),
        grad_gamma: v(-1e-3),
        grad_beta: vec![f32::NEG_INFINITY; c],
        weight_norm: v(2.0),
        angular_update: v(1e-3),
        weight_grad_cos: v(1e-7),
        weight_grad_norm: v(0.5),
        bias_grad: bias.then(|| v(1e-9)),
        ema: None,
        summary: LayerSummary {
            drift: 0.1,
            r_mean: 1.0,
            r_min: 0.9,
            r_max: f32::NAN,
            d_mean_abs: 0.05,
            d_max_abs: 0.2,
            weight_norm: 3.0,
            angular_update: 1e-3,
            effective_lr: 0.01,
            max_abs_cos: 1e-6,
            relu_active: 0.5,
            radial_fraction: -0.01,
            noise_floor: f32::NAN,
        },
    }
}

// A literal sample of every record kind: splitting it would only scatter the sample.
#[allow(clippy::too_many_lines)]
fn every_kind() -> Vec<Event> {
    let header = RunHeader {
        format: FORMAT_NAME.into(),
        version_major: FORMAT_VERSION_MAJOR,
        version_minor: FORMAT_VERSION_MINOR,
        started_unix_ms: 1_790_000_000_000,
        producer: None,
        config: RunConfig {
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Adam,
                name: None,
                lr: 1e-3,
                momentum: 0.0,
                weight_decay: 0.01,
                weight_decay_mode: WeightDecayMode::Decoupled,
            },
            batch_size: 64,
            seed: Some(7),
            bn_momentum: 0.1,
            eval_every: 50,
            eval_samples: 360,
            max_steps: Some(1000),
            conv_bias: true,
            data_order: "shuffled".into(),
            layer_metrics: true,
            lab_every: 100,
            precise_samples: 1024,
        },
        data: Some(DataInfo {
            name: "digits".into(),
            source: "embedded".into(),
            train_images: 1437,
            heldout_images: 360,
            channels: 1,
            height: 8,
            width: 8,
            classes: 10,
            channel_mean: vec![0.3],
            channel_std: vec![0.4],
        }),
        layers: vec![LayerInfo {
            name: "block1".into(),
            kind: BnKind::Bn2d,
            sync: false,
            feeds_from: None,
            in_channels: 1,
            channels: 2,
            kernel: 3,
            stride: 1,
            padding: 1,
            conv_bias: true,
            in_height: 8,
            in_width: 8,
            out_height: 8,
            out_width: 8,
        }],
        conventions: Conventions::bntop(1e-5),
        recording: None,
    };
    let producer = RunHeader {
        producer: Some(Producer {
            name: "bntop-torch".into(),
            version: "0.1.0".into(),
            framework: "torch 2.5.1".into(),
            model: "ResNet".into(),
            device: "cpu".into(),
            world_size: 2,
            controls: Some(vec!["set_mode".into(), "pause".into()]),
        }),
        data: None,
        layers: vec![LayerInfo {
            name: "layer3.1.bn2".into(),
            kind: BnKind::Bn1d,
            sync: true,
            feeds_from: Some("layer3.1.conv2".into()),
            ..header.layers[0].clone()
        }],
        ..header.clone()
    };
    let mut distributed = layer(3, false);
    distributed.cumulative = true;
    distributed.rank_drift = vec![0.25, f32::NAN];
    // Format 1.5: the producer's D0 and EMA fit (NaN where there is no trend).
    let mut published = layer(2, false);
    published.summary.noise_floor = 0.0625;
    published.ema = Some(EmaFit {
        steps: 400,
        lag: f32::NAN,
        noise: 0.01,
        noise_predicted: 0.0125,
        batch_correlation: -0.05,
        best_momentum: f32::INFINITY,
    });
    vec![
        Event::Header(Box::new(header)),
        Event::Header(Box::new(producer)),
        Event::Snapshot(Snapshot {
            step: 4,
            epoch: 1,
            time_s: 0.5,
            loss: 1.5,
            batch_accuracy: f32::NAN,
            lr: 0.05,
            partial: true,
            layers: vec![distributed],
        }),
        Event::Control(ControlEvent {
            step: 4,
            control: Control::SetMomentumCumulative { layer: None },
            rejected: None,
        }),
        Event::Snapshot(Snapshot {
            step: 3,
            epoch: 0,
            time_s: 0.25,
            loss: f32::NAN,
            batch_accuracy: 0.5,
            lr: 0.05,
            partial: false,
            layers: vec![layer(2, true), layer(3, false), published],
        }),
        Event::Control(ControlEvent {
            step: 3,
            control: Control::SetMomentum {
                layer: Some(1),
                momentum: 0.01,
            },
            rejected: None,
        }),
        Event::Control(ControlEvent {
            step: 3,
            control: Control::SetMode {
                layer: None,
                mode: BnMode::Train,
            },
            rejected: Some("why not".into()),
        }),
        Event::Control(ControlEvent {
            step: 4,
            control: Control::Pause,
            rejected: None,
        }),
        Event::Evaluation(Evaluation {
            step: 50,
            samples: 360,
            batch_stats: EvalScore {
                loss: 0.1,
                accuracy: 0.97,
            },
            running_stats: EvalScore {
                loss: f32::INFINITY,
                accuracy: 0.1,
            },
            precise_stats: Some(EvalScore {
                loss: 0.2,
                accuracy: 0.9,
            }),
        }),
        Event::Control(ControlEvent {
            step: 50,
            control: Control::ApplyPreciseBn { layer: Some(2) },
            rejected: None,
        }),
        Event::Control(ControlEvent {
            step: 50,
            control: Control::PhantomProbe,
            rejected: None,
        }),
        Event::Population(PopulationReport {
            step: 50,
            samples: 1024,
            order: DataOrder::ClassSorted,
            order_batches: 22,
            layers: vec![PopulationLayer {
                mean: vec![0.1, -0.2],
                var: vec![1.5, f32::NAN],
                var_ratio: 0.67,
                n_eff: 4.4,
                predicted_ratio: 0.77,
                running_var_ratio: 0.91,
            }],
        }),
        Event::Probe(ProbeReport {
            step: 50,
            batch: 64,
            layers: vec![ProbeLayer {
                train: 1e-9,
                train_cancellation: 2e-7,
                stop_gradient: 0.01,
                stop_gradient_predicted: 0.01,
                eval: 0.02,
                eval_predicted: 0.02,
            }],
        }),
        Event::Marker(Marker {
            step: 22,
            kind: MarkerKind::Epoch,
            label: "epoch 1".into(),
        }),
        Event::End(RunEnd {
            step: 60,
            reason: EndReason::Diverged,
            elapsed_s: 1.5,
            message: Some("nan".into()),
        }),
    ]
}

/// Equality that treats NaN as equal to NaN, via the canonical JSON text of both sides.
fn same(a: &Event, b: &Event) -> bool {
    serde_json::to_string(a).ok() == serde_json::to_string(b).ok()
}

#[test]
fn every_record_kind_round_trips_through_one_json_line() {
    for event in every_kind() {
        let line = serde_json::to_string(&event).expect("serialise");
        assert!(!line.contains('\n'), "one record, one line: {line}");
        let back: Event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(same(&event, &back), "{line}");
        assert_eq!(event.step(), back.step());
    }
    let step3 = every_kind()
        .into_iter()
        .find(|e| matches!(e, Event::Snapshot(s) if s.step == 3))
        .expect("the step-3 snapshot");
    let snapshot = serde_json::to_string(&step3).expect("serialise");
    assert!(
        snapshot.contains(r#""loss":"NaN""#) && snapshot.contains(r#""-inf""#),
        "{snapshot}"
    );
}

#[test]
fn a_record_kind_from_a_newer_version_is_unknown_not_an_error() {
    let event: Event =
        serde_json::from_str(r#"{"kind":"telemetry","step":5,"bars":[1,2]}"#).expect("parse");
    assert_eq!(event, Event::Unknown);
    assert_eq!(event.step(), None);
}

#[test]
fn parse_record_reads_what_serde_writes_and_refuses_what_serde_refuses() {
    for event in every_kind() {
        let line = serde_json::to_string(&event).expect("serialise");
        let back = parse_record(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(same(&event, &back), "{line}");
    }
    // The tag anywhere, escaped or not; unknown kinds are Unknown.
    let moved = r#"{"step":7,"control":{"control":"pause"},"kind":"con\u0074rol"}"#;
    let Ok(Event::Control(c)) = parse_record(moved.as_bytes()) else {
        panic!("{moved}")
    };
    assert_eq!((c.step, c.control), (7, Control::Pause));
    assert_eq!(
        parse_record(br#"{"kind":"telemetry","step":"x","bars":[[1]]}"#),
        Ok(Event::Unknown)
    );
    // A second tag, no tag, not an object, trailing bytes: errors, as for serde's derived parse.
    for bad in [
        &br#"{"kind":"marker","kind":"marker","step":1,"marker":"epoch","label":"e"}"#[..],
        br#"{"kind":"marker","step":1,"marker":"epoch","label":"e","kind":"probe"}"#,
        br#"{"step":1,"marker":"epoch","label":"e"}"#,
        br#"[{"kind":"end"}]"#,
        br#"{"kind":"end","step":1,"reason":"quit","elapsed_s":1} x"#,
        br#"{"kind":7}"#,
        b"",
    ] {
        assert!(
            parse_record(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(serde_json::from_slice::<Event>(bad).is_err());
    }
}

/// Format 1.4: an external producer may send a header with only what it knows.
#[test]
fn a_producer_header_needs_only_names_channels_optimizer_and_conventions() {
    let conventions = serde_json::to_string(&Conventions::bntop(1e-5)).expect("json");
    let line = format!(
        r#"{{"kind":"header","format":"bntop","version_major":1,"version_minor":4,"started_unix_ms":5,
        "producer":{{"name":"bntop-torch","controls":["set_mode"]}},
        "config":{{"optimizer":{{"kind":"adamw_or_anything","name":"AdamW","lr":0.001,"momentum":0,
        "weight_decay":0.01,"weight_decay_mode":"decoupled"}}}},
        "layers":[{{"name":"fc.bn","channels":10,"kind":"bn1d"}}],"conventions":{conventions}}}"#
    )
    .replace('\n', "");
    let Event::Header(h) = parse_record(line.as_bytes()).expect("a minimal producer header") else {
        panic!("not a header")
    };
    assert_eq!(h.config.optimizer.kind, OptimizerKind::Other);
    assert_eq!(h.config.optimizer.name.as_deref(), Some("AdamW"));
    assert_eq!(h.config.seed, None);
    assert!(h.config.bn_momentum.is_nan());
    assert!(h.config.layer_metrics);
    assert_eq!(h.data, None);
    assert_eq!((h.layers[0].kind, h.layers[0].kernel), (BnKind::Bn1d, 0));
    let producer = h.producer.as_ref().expect("producer");
    assert_eq!(producer.world_size, 1);
    assert!(producer.handles("set_mode"));
    assert!(!producer.handles("fold_check"));
    // Without a list, every control is handled (the built-in engine).
    let all = Producer {
        controls: None,
        ..producer.clone()
    };
    assert!(all.handles("fold_check"));
}

#[test]
fn producer_strings_and_control_lists_are_bounded() {
    let Some(Event::Header(base)) = every_kind().into_iter().nth(1) else {
        panic!("the producer header")
    };
    let mut long_name = base.as_ref().clone();
    if let Some(p) = long_name.producer.as_mut() {
        p.model = "M".repeat(limits::MAX_TEXT + 1);
    }
    let mut many = base.as_ref().clone();
    if let Some(p) = many.producer.as_mut() {
        p.controls = Some(vec!["pause".into(); limits::MAX_CONTROL_NAMES + 1]);
    }
    let mut feeds = base.as_ref().clone();
    feeds.layers[0].feeds_from = Some("x".repeat(limits::MAX_TEXT + 1));
    assert!(limits::check(&Event::Header(base), None).is_ok());
    for bad in [long_name, many, feeds] {
        assert!(limits::check(&Event::Header(Box::new(bad)), None).is_err());
    }
}

/// `Control::name` is the `"control"` tag serde writes, for every kind of control.
#[test]
fn control_names_are_the_wire_tags() {
    let every = [
        Control::SetMode {
            layer: Some(1),
            mode: BnMode::Eval,
        },
        Control::SetMomentum {
            layer: None,
            momentum: 0.1,
        },
        Control::SetMomentumCumulative { layer: None },
        Control::SetLr { lr: 0.1 },
        Control::SetDataOrder {
            order: DataOrder::Clips,
        },
        Control::FoldCheck,
        Control::PreciseBn,
        Control::ApplyPreciseBn { layer: None },
        Control::PhantomProbe,
        Control::Pause,
        Control::Resume,
        Control::Step,
        Control::ResetRunningStats { layer: Some(0) },
        Control::Quit,
        Control::SaveCheckpoint,
        Control::RestoreCheckpoint { from: Some(9) },
        Control::Restart { from: None },
    ];
    for control in every {
        let json = serde_json::to_value(&control).expect("json");
        assert_eq!(json["control"].as_str(), Some(control.name()), "{json}");
    }
}

/// Format 1.5's D0 and EMA fit go out only when known, and a 1.4 snapshot (without them) reads
/// as not known: NaN and `None`.
#[test]
fn published_estimates_are_optional_and_absent_from_1_4_snapshots() {
    let step3 = every_kind()
        .into_iter()
        .find_map(|e| match e {
            Event::Snapshot(s) if s.step == 3 => Some(s),
            _ => None,
        })
        .expect("the step-3 snapshot");
    let line = serde_json::to_string(&step3.layers[0]).expect("serialise");
    assert!(
        !line.contains("noise_floor") && !line.contains("ema"),
        "{line}"
    );
    let line = serde_json::to_string(&step3.layers[2]).expect("serialise");
    assert!(
        line.contains(r#""noise_floor":0.0625"#)
            && line.contains(r#""ema":{"steps":400,"lag":"NaN","noise":0.01"#)
            && line.contains(r#""best_momentum":"inf""#),
        "{line}"
    );
    let old = r#"{"kind":"snapshot","step":9,"epoch":0,"time_s":0.1,"loss":2.0,"batch_accuracy":0.1,
        "lr":0.05,"layers":[{"mode":"train","momentum":0.1,"batch_mean":[0.5],"summary":{"drift":0.1,
        "r_mean":1,"r_min":1,"r_max":1,"d_mean_abs":0.1,"d_max_abs":0.1,"weight_norm":2,
        "angular_update":0.01,"effective_lr":0.01,"max_abs_cos":1e-5,"relu_active":0.5,
        "radial_fraction":-0.01}}]}"#
        .replace('\n', "");
    let Ok(Event::Snapshot(s)) = parse_record(old.as_bytes()) else {
        panic!("a 1.4 snapshot reads: {old}")
    };
    assert!(s.layers[0].summary.noise_floor.is_nan());
    assert_eq!(s.layers[0].ema, None);
    assert_eq!(s.layers[0].batch_mean, vec![0.5]);
}
