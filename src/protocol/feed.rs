//! What passes between a source of events (live training, a replayed or followed session, later a
//! remote server) and a dashboard, beside the recorded events themselves. None of this is written
//! to a session: it is about the viewing, not the run.
use super::controls::Control;
use super::events::Event;

#[derive(Clone, Debug, PartialEq)]
pub enum Feed {
    Event(Event),
    /// Forget the run so far: a replay jumped, or a followed file was truncated. The events of the
    /// new position follow.
    Reset,
    Replay(ReplayStatus),
    Recording(RecordingStatus),
    /// A remote viewer's connection to its server (`attach`): lost and being retried, or back.
    Link(LinkStatus),
}

#[derive(Clone, Debug, PartialEq)]
pub enum LinkStatus {
    Connected,
    /// The stream stopped without the run's end record; the next attempt is `retry_in_ms` away.
    Lost {
        attempts: u32,
        retry_in_ms: u64,
        reason: String,
    },
}

/// Where a replay stands, for the header.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayStatus {
    pub file: String,
    pub playing: bool,
    /// Multiple of the recorded run time.
    pub speed: f64,
    pub step: u64,
    pub last_step: u64,
    /// Watching a file that may still grow.
    pub following: bool,
    /// The whole file is indexed (a large file indexes in the background).
    pub indexed: bool,
    pub skipped_lines: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecordingStatus {
    pub path: Option<String>,
    pub active: bool,
    pub bytes: u64,
    pub error: Option<String>,
}

/// What a dashboard asks of its source.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Run(Control),
    Replay(ReplayCommand),
    /// Start or pause writing the session file.
    SetRecording(bool),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplayCommand {
    PlayPause,
    Faster,
    Slower,
    StepForward,
    StepBack,
    ToStart,
    ToEnd,
    Seek(u64),
    /// The next (or previous) applied control (not single steps, not rejected ones).
    NextMark,
    PrevMark,
    /// The next (or previous) epoch marker.
    NextEpoch,
    PrevEpoch,
}

/// Records a dashboard's feed holds from a file or a server before the reader waits for the
/// dashboard. Few: one record within the limits (`limits`) can take a few hundred KB parsed, and
/// a dashboard slower than its reader would otherwise hold thousands of them.
pub const READ_FEED_CAPACITY: usize = 64;

pub const MIN_REPLAY_SPEED: f64 = 0.25;
pub const MAX_REPLAY_SPEED: f64 = 64.0;
