//! A recording read to its end through the session reader and folded into the dashboard's own
//! [`RunState`], so the plot shows the numbers the dashboard shows (history, D0, θ*), plus what
//! the state does not keep for a figure: every applied control with its kind, and θ* over time.
use std::path::Path;

use crate::protocol::{Control, Event};
use crate::session::whole;
use crate::ui::history::Series;
use crate::ui::state::{RunState, SERIES_CAPACITY};

/// One applied control on the time axis.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlMarker {
    pub step: u64,
    /// The control's wire name (`set_lr`, `set_mode`, ...): what the marker is labelled by.
    pub kind: &'static str,
    /// The dashboard's words for it ("block2 -> EVAL").
    pub label: String,
}

/// A recording as the plot needs it.
pub struct Recording {
    /// The file name, for titles and legends.
    pub name: String,
    pub state: RunState,
    /// θ* at the learning rate of each snapshot (it moves with `set_lr`); empty without one.
    pub theta_star: Series,
    /// Applied controls, in file order (rejected ones changed nothing and are left out, and so is
    /// quit).
    pub markers: Vec<ControlMarker>,
    /// Lines the reader skipped as bad.
    pub skipped_lines: u64,
}

impl Recording {
    /// Reads `path` to its end. A file with no snapshot is an error: there is nothing to draw.
    pub fn read(path: &Path) -> Result<Recording, String> {
        let mut recording = Recording {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            state: RunState::new(),
            theta_star: Series::new(SERIES_CAPACITY),
            markers: Vec::new(),
            skipped_lines: 0,
        };
        // A bad record is counted by the reader; the plot goes on without it.
        let skipped = whole::read_all(path, |event| recording.apply(&event));
        recording.skipped_lines = skipped.map_err(|e| e.to_string())?.lines;
        if recording.state.snapshots == 0 {
            return Err(format!(
                "{}: no snapshots to plot (not a bntop recording?)",
                path.display()
            ));
        }
        Ok(recording)
    }

    fn apply(&mut self, event: &Event) {
        if let Event::Control(control) = event {
            // Quit only ends the run, which the axis shows already.
            if control.rejected.is_none() && control.control != Control::Quit {
                self.markers.push(ControlMarker {
                    step: control.step,
                    kind: control.control.name(),
                    label: self.state.describe(&control.control),
                });
            }
        }
        self.state.apply(event);
        if let (Event::Snapshot(s), Some(theta)) = (event, self.state.theta_star()) {
            self.theta_star.push(s.step, theta as f32);
        }
    }

    /// The last step of the run.
    pub fn last_step(&self) -> u64 {
        self.state.step
    }
}
