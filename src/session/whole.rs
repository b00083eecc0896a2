//! Reading a whole session at once, in file order: for a run that is compared against
//! (`--compare`), which must be all there before the dashboard opens.
use std::path::Path;

use super::reader::{Reader, Skipped};
use super::SessionError;
use crate::protocol::Event;

/// Bytes indexed per poll while reading to the end.
const POLL_BUDGET: usize = 64 << 20;

/// Every good record of the file at `path`, in file order, to `visit`; bad lines are skipped and
/// counted in the returned [`Skipped`]. A file without a single good record (empty, not a
/// session) or one this version cannot read is an error: there is nothing to compare with.
pub fn read_all(path: &Path, mut visit: impl FnMut(Event)) -> Result<Skipped, SessionError> {
    let mut reader = Reader::open(path)?;
    while !reader.poll(POLL_BUDGET)?.at_end {}
    let entries = reader.entries().to_vec();
    let mut good = 0usize;
    for entry in &entries {
        // A record that does not parse is counted by the reader; the rest still make a run.
        if let Ok(event) = reader.read(entry) {
            good += 1;
            visit(event);
        }
    }
    if good == 0 {
        let why = reader.skipped().last_problem.as_deref().map_or_else(
            || "it is empty".to_string(),
            |p| format!("last problem: {p}"),
        );
        return Err(SessionError::Input(format!(
            "{}: not a bntop session: no record could be read ({why})",
            path.display()
        )));
    }
    Ok(reader.skipped().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_record_and_refuses_files_without_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/healthy-convergence.jsonl");
        let mut events = Vec::new();
        let skipped = read_all(&path, |e| events.push(e)).map_err(|e| e.to_string());
        assert_eq!(skipped.map(|s| s.lines), Ok(0));
        assert!(matches!(events.first(), Some(Event::Header(_))));
        assert!(matches!(events.last(), Some(Event::End(_))));
        let steps: Vec<u64> = events.iter().filter_map(Event::step).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "file order");
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in [
            ("empty.jsonl", &b""[..]),
            ("junk.jsonl", b"\x00\x01 not json\n{\"kind\":\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write");
            let error = read_all(&path, |_| {})
                .map(|_| ())
                .map_err(|e| e.to_string());
            let message = error.err().unwrap_or_default();
            assert!(message.contains("not a bntop session"), "{name}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}
