//! The recordings that ship in sessions/ are what the README says they are: readable without a
//! skipped line, at most 5 MB, with the controls their descriptions mention, and with headers
//! that say how often the lab ran.
use std::path::Path;

use bntop::protocol::{BnMode, Control, DataOrder, EndReason, Event};
use bntop::session::reader::Reader;

mod common;
use common::snapshots;

fn read_all(name: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sessions")
        .join(name);
    let size = std::fs::metadata(&path).expect("shipped session").len();
    assert!(size <= 5_000_000, "{name} is {size} bytes");
    let mut reader = Reader::open(&path).expect("open");
    while !reader.poll(usize::MAX).expect("poll").at_end {}
    let entries = reader.entries().to_vec();
    let events: Vec<Event> = entries
        .iter()
        .map(|e| reader.read(e).expect("read"))
        .collect();
    assert_eq!(reader.skipped().lines, 0, "{name}: {:?}", reader.skipped());
    assert!(matches!(events.first(), Some(Event::Header(h)) if h.recording.is_some()));
    events
}

fn controls(events: &[Event]) -> Vec<Control> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Control(c) if c.rejected.is_none() => Some(c.control.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn eval_mode_recording_switches_block2_to_eval() {
    let events = read_all("eval-mode-phantom-gradient.jsonl");
    let eval = Control::SetMode {
        layer: Some(1),
        mode: BnMode::Eval,
    };
    assert!(controls(&events).contains(&eval));
}

#[test]
fn momentum_recording_lowers_then_raises_block3_momentum() {
    let events = read_all("momentum-lag-vs-noise.jsonl");
    let momenta: Vec<f32> = controls(&events)
        .into_iter()
        .filter_map(|c| match c {
            Control::SetMomentum {
                layer: Some(2),
                momentum,
            } => Some(momentum),
            _ => None,
        })
        .collect();
    assert_eq!(momenta, vec![0.01, 0.5, 0.1]);
    // Format 1.5 with per-channel arrays every 0.12 s: the channel charts have a point at least
    // every 100 steps, and every snapshot carries D0, so a replay shows it.
    let snapshots = snapshots(&events);
    let whole: Vec<u64> = snapshots
        .iter()
        .filter(|s| !s.layers[2].batch_mean.is_empty())
        .map(|s| s.step)
        .collect();
    assert!(whole.windows(2).all(|w| w[1] - w[0] <= 100), "{whole:?}");
    assert!(snapshots
        .iter()
        .filter(|s| s.step > 20)
        .all(|s| s.layers.iter().all(|l| l.summary.noise_floor > 0.0)));
    assert!(snapshots.iter().any(|s| s.layers[2].ema.is_some()));
}

#[test]
fn healthy_recording_runs_to_completion_untouched() {
    let events = read_all("healthy-convergence.jsonl");
    assert!(controls(&events).is_empty());
    assert!(
        matches!(events.last(), Some(Event::End(e)) if e.reason == EndReason::Completed && e.step == 6000)
    );
}

#[test]
fn class_sorted_recording_shows_precise_bn_and_the_probe() {
    let events = read_all("class-sorted-precise-bn.jsonl");
    let controls = controls(&events);
    for wanted in [
        Control::SetDataOrder {
            order: DataOrder::ClassSorted,
        },
        Control::PreciseBn,
        Control::ApplyPreciseBn { layer: None },
        Control::PhantomProbe,
    ] {
        assert!(controls.contains(&wanted), "{wanted:?}");
    }
    let populations: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Population(p) => Some(p),
            _ => None,
        })
        .collect();
    // Block3 under shuffled batches sees the population's variance; under class-sorted ones less.
    let block3 = |order| {
        populations
            .iter()
            .filter(|p| p.order == order && p.step > 0)
            .map(|p| p.layers[2].var_ratio)
            .fold(f64::NAN, f64::max)
    };
    assert!(block3(DataOrder::Shuffled) < 1.01 && block3(DataOrder::Shuffled) > 0.98);
    assert!(block3(DataOrder::ClassSorted) < 0.95);
    let applied_at = events
        .iter()
        .find_map(|e| match e {
            Event::Control(c) if matches!(c.control, Control::ApplyPreciseBn { .. }) => {
                Some(c.step)
            }
            _ => None,
        })
        .expect("apply");
    let after = populations
        .iter()
        .find(|p| p.step == applied_at)
        .expect("the apply's report");
    for l in &after.layers {
        assert!((l.running_var_ratio - 1.0).abs() < 1e-3, "{l:?}");
    }
    assert!(events.iter().any(|e| matches!(e, Event::Probe(_))));
}

/// The three-block MNIST recording (README tour, "Stale running statistics"): until every
/// layer's BN momentum goes from 0.1 to 0.5 at step 1539, the EMA's held-out accuracy wanders far
/// below batch statistics and PreciseBN, which hold, while blocks 2 and 3 drift at 3.5-4 times
/// their floor and the filters turn at the weight-decay equilibrium θ*; afterwards (training does
/// not read the running statistics, so the weights go on as before) the EMA keeps up.
const STALE: &str = "stale-running-stats-mnist.jsonl";
const STALE_SWITCH: u64 = 1539;

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn stale_recording_is_three_blocks_on_mnist_with_one_momentum_switch() {
    let events = read_all(STALE);
    let Some(Event::Header(header)) = events.first() else {
        panic!("no header");
    };
    let widths: Vec<usize> = header.layers.iter().map(|l| l.channels).collect();
    assert_eq!(widths, [16, 32, 64]);
    assert!(header.data.as_ref().is_some_and(|d| d.name == "mnist-10k"));
    assert_eq!(header.config.bn_momentum, 0.1);
    // Every held-out evaluation is three-way.
    assert_eq!(header.config.lab_every, header.config.eval_every);
    let applied: Vec<(u64, Control)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Control(c) if c.rejected.is_none() => Some((c.step, c.control.clone())),
            _ => None,
        })
        .collect();
    let all_at_half = Control::SetMomentum {
        layer: None,
        momentum: 0.5,
    };
    assert_eq!(applied, vec![(STALE_SWITCH, all_at_half)]);
}

#[test]
fn stale_recording_ema_accuracy_wanders_until_the_switch_then_keeps_up() {
    let events = read_all(STALE);
    // (step, batch, EMA, PreciseBN) held-out accuracy.
    let evaluations: Vec<(u64, f64, f64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluation(e) => Some((
                e.step,
                f64::from(e.batch_stats.accuracy),
                f64::from(e.running_stats.accuracy),
                f64::from(e.precise_stats.as_ref().expect("three-way").accuracy),
            )),
            _ => None,
        })
        .collect();
    let phase = |from: u64, to: u64| -> Vec<(u64, f64, f64, f64)> {
        evaluations
            .iter()
            .copied()
            .filter(|e| (from..to).contains(&e.0))
            .collect()
    };
    let at = |step: u64| phase(step, step + 1)[0];
    let near = |x: f64, y: f64| (x - y).abs() < 0.0006;

    // Before the switch: batch statistics and PreciseBN hold, the EMA wanders.
    let before = phase(300, STALE_SWITCH);
    assert_eq!(before.len(), 25);
    for &(step, batch, ema, precise) in &before {
        let holds = batch >= 0.88 && precise >= 0.89 && (batch - precise).abs() < 0.012;
        assert!(holds, "step {step}: {batch} {precise}");
        assert!(ema <= precise + 0.002, "step {step}: {ema} {precise}");
    }
    let ema: Vec<f64> = before.iter().map(|e| e.2).collect();
    let lowest = ema.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ema.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        near(lowest, 0.547) && near(highest, 0.938),
        "{lowest} {highest}"
    );
    let gaps: Vec<f64> = before.iter().map(|e| e.3 - e.2).collect();
    assert!(mean(&gaps) > 0.11, "{}", mean(&gaps));
    let (_, batch, ema, precise) = at(1500);
    assert!(near(batch, 0.946) && near(ema, 0.694) && near(precise, 0.954));
    let (_, _, ema, precise) = at(1050);
    assert!(near(ema, 0.619) && near(precise, 0.952), "{ema} {precise}");

    // After it: the EMA within two points of PreciseBN at every evaluation.
    let after = phase(STALE_SWITCH + 11, u64::MAX);
    assert_eq!(after.len(), 20);
    let gaps: Vec<f64> = after.iter().map(|e| e.3 - e.2).collect();
    assert!(gaps.iter().all(|g| *g < 0.02), "{gaps:?}");
    assert!(mean(&gaps) < 0.01, "{}", mean(&gaps));
    assert!(after.iter().all(|e| e.2 >= 0.93), "{after:?}");
}

#[test]
fn stale_recording_drifts_far_above_the_floor_while_the_filters_turn_at_theta_star() {
    let events = read_all(STALE);
    let snapshots = snapshots(&events);
    // D/D0, mean over the kept snapshots of each phase: blocks 2 and 3 far above their floor
    // with m = 0.1 (block1 much less), near it with m = 0.5.
    let ratio = |layer: usize, from: u64, to: u64| {
        let r: Vec<f64> = snapshots
            .iter()
            .filter(|s| (from..to).contains(&s.step))
            .map(|s| &s.layers[layer].summary)
            .map(|l| f64::from(l.drift) / f64::from(l.noise_floor))
            .collect();
        assert!(r.len() > 300 && r.iter().all(|x| x.is_finite()));
        mean(&r)
    };
    let before: Vec<f64> = (0..3).map(|l| ratio(l, 300, STALE_SWITCH)).collect();
    let after: Vec<f64> = (0..3)
        .map(|l| ratio(l, STALE_SWITCH + 50, u64::MAX))
        .collect();
    assert!(
        before[0] < 2.5 && before[1] > 3.4 && before[2] > 3.6,
        "{before:?}"
    );
    assert!(after.iter().all(|r| *r < 1.8), "{after:?}");

    // The weights never settle: block3 turns at about θ* through the run, with either momentum
    // (0.0054 rad a step on average over steps 1000-2500, θ* = 0.0051).
    let Some(Event::Header(header)) = events.first() else {
        panic!("no header");
    };
    let o = &header.config.optimizer;
    let theta_star = bntop::metrics::weights::theta_star_coupled(
        f64::from(o.lr),
        f64::from(o.weight_decay),
        f64::from(o.momentum),
    );
    let theta: Vec<f64> = snapshots
        .iter()
        .filter(|s| (1000..=2500).contains(&s.step))
        .map(|s| f64::from(s.layers[2].summary.angular_update))
        .collect();
    let theta = mean(&theta);
    assert!(
        (theta / theta_star - 1.0).abs() < 0.1,
        "{theta} vs {theta_star}"
    );
}

/// Every session in sessions/.
fn shipped() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("sessions/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    names
}

/// Does a lab record of this kind answer the control (`population`: PreciseBN, also before
/// applying it; `probe`: the phantom probe)?
fn answers(lab: &Event, control: &Control) -> bool {
    match lab {
        Event::Population(_) => {
            matches!(control, Control::PreciseBn | Control::ApplyPreciseBn { .. })
        }
        Event::Probe(_) => *control == Control::PhantomProbe,
        _ => false,
    }
}

#[test]
fn every_header_says_how_often_the_lab_ran_and_the_records_agree() {
    for name in shipped() {
        let name = name.as_str();
        let events = read_all(name);
        let Some(Event::Header(header)) = events.first() else {
            panic!("{name}: no header");
        };
        let every = header.config.lab_every;
        let last_step = events.iter().filter_map(Event::step).max().unwrap_or(0);
        let mut periodic = std::collections::BTreeMap::<u64, (bool, bool)>::new();
        // The controls applied at each step so far, in file order: an on-demand lab record
        // follows its control.
        let mut applied: Vec<(u64, Control)> = Vec::new();
        for event in &events {
            match event {
                Event::Control(c) if c.rejected.is_none() => {
                    applied.push((c.step, c.control.clone()));
                }
                Event::Population(_) | Event::Probe(_) => {
                    let step = event.step().unwrap_or(0);
                    let on_demand = applied
                        .iter()
                        .any(|(s, control)| *s == step && answers(event, control));
                    if on_demand {
                        continue;
                    }
                    assert!(
                        every > 0 && step % every == 0,
                        "{name}: a {} record at step {step} without a control, but lab_every is {every}",
                        if matches!(event, Event::Probe(_)) { "probe" } else { "population" }
                    );
                    let seen = periodic.entry(step).or_default();
                    match event {
                        Event::Population(p) => {
                            assert_eq!(p.samples, header.config.precise_samples, "{name}");
                            seen.0 = true;
                        }
                        _ => seen.1 = true,
                    }
                }
                _ => {}
            }
        }
        if every > 0 {
            assert!(header.config.precise_samples > 0, "{name}");
            for step in (0..=last_step).step_by(every as usize) {
                assert_eq!(
                    periodic.get(&step),
                    Some(&(true, true)),
                    "{name}: lab_every is {every}, but step {step} has no population and probe"
                );
            }
        } else {
            assert!(periodic.is_empty(), "{name}");
        }
    }
}
