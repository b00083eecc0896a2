//! Every snapshot the engine publishes carries its layer metrics, even when another CPU-bound
//! process competes for the cores (FORMAT.md: a snapshot is "the complete state at one step").
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use bntop::protocol::Event;

/// Threads that spin until dropped: one per core, so the engine's threads share every core.
struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(
                                x.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn every_snapshot_carries_its_layers_under_cpu_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hog = CpuHog::start();
    let out = Command::new(env!("CARGO_BIN_EXE_bntop"))
        .args(["train", "--headless", "--json", "--steps", "400"])
        .args(["--data", "digits", "--widths", "16,32,64,128"])
        .current_dir(dir.path())
        .output()
        .expect("run bntop");
    drop(hog);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshots: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| match serde_json::from_str(line) {
            Ok(Event::Snapshot(s)) => Some(s),
            Ok(_) => None,
            Err(e) => panic!("bad JSON line {line}: {e}"),
        })
        .collect();
    assert!(snapshots.len() >= 100, "{} snapshots", snapshots.len());
    let without: Vec<u64> = (snapshots.iter())
        .filter(|s| s.layers.len() != 4)
        .map(|s| s.step)
        .collect();
    assert!(
        without.is_empty(),
        "{} of {} snapshots without their 4 layers, at steps {:?}",
        without.len(),
        snapshots.len(),
        &without[..without.len().min(20)]
    );
    for s in &snapshots {
        for (i, layer) in s.layers.iter().enumerate() {
            let channels = [16, 32, 64, 128][i];
            assert_eq!(
                (
                    layer.batch_mean.len(),
                    layer.out_var.len(),
                    layer.relu_active.len()
                ),
                (channels, channels, channels),
                "step {} layer {i}",
                s.step
            );
        }
    }
}
