//! The dashboard on real networks' shapes: ResNet-18 (20 BN layers) and ResNet-50 (53 layers,
//! 26,560 channels, up to 2048 per layer) from an external producer, drawn into ratatui's
//! TestBackend; and the format's limits for them.
use std::time::Instant;

use bntop::protocol::{limits, Event, MAX_LINE};
use bntop::ui::synthetic::{self, NetworkRun};

/// A ResNet-50 snapshot with every per-channel array and 8 ranks passes the limits and fits in a
/// line with room to spare; one rank drift too many does not pass.
#[test]
fn a_resnet50_snapshot_fits_the_limits() {
    let header = synthetic::producer_header(synthetic::resnet50_layers(), 8);
    limits::check_header(&header).expect("ResNet-50 fits");
    let mut run = NetworkRun::new(header.clone(), 3, 1);
    let snapshot = run
        .find(|e| matches!(e, Event::Snapshot(_)))
        .expect("a snapshot");
    limits::check(&snapshot, Some(&header)).expect("within the limits");
    let line = serde_json::to_string(&snapshot).expect("json");
    eprintln!("a ResNet-50 snapshot: {} bytes", line.len());
    assert!(line.len() < MAX_LINE / 2, "{} bytes", line.len());
    let Event::Snapshot(mut s) = snapshot else {
        unreachable!()
    };
    s.layers[0].rank_drift = vec![0.1; limits::MAX_RANKS + 1];
    assert!(limits::check(&Event::Snapshot(s), Some(&header)).is_err());
    let _ = Instant::now();
}
