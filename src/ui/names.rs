//! Layer names in a narrow column: `layer4.0.downsample.1` as `l4.0.downsamp.1`. Letters are
//! dropped first (from the left, each run keeping its first letter), then whole leading
//! segments behind `…`; a number is never cut while a shorter form exists.

/// `name` in at most `width` characters.
pub fn shorten(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let mut segments: Vec<String> = name.split('.').map(String::from).collect();
    // Letters of every segment but the last, then of the last.
    let last = segments.len() - 1;
    for i in (0..last).chain([last]) {
        let over = joined_len(&segments).saturating_sub(width);
        if over == 0 {
            break;
        }
        segments[i] = squeeze(&segments[i], over);
    }
    if joined_len(&segments) <= width {
        return segments.join(".");
    }
    // Then leading segments, behind an ellipsis.
    while segments.len() > 1 && joined_len(&segments) + 1 > width {
        segments.remove(0);
    }
    let tail = segments.join(".");
    let room = width.saturating_sub(1);
    if tail.chars().count() <= room {
        return format!("…{tail}");
    }
    // One segment longer than the column even without letters: its end, from a boundary
    // between a digit and a non-digit when there is one.
    let chars: Vec<char> = tail.chars().collect();
    let mut start = chars.len() - room;
    while start < chars.len() && chars[start].is_ascii_digit() && chars[start - 1].is_ascii_digit()
    {
        start += 1;
    }
    if start == chars.len() {
        start = chars.len() - room;
    }
    let end: String = chars[start..].iter().collect();
    format!("…{end}")
}

fn joined_len(segments: &[String]) -> usize {
    segments.iter().map(|s| s.chars().count()).sum::<usize>() + segments.len() - 1
}

/// `segment` with up to `over` letters dropped: each run of letters keeps its first.
fn squeeze(segment: &str, mut over: usize) -> String {
    let chars: Vec<char> = segment.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let letter = chars[i].is_alphabetic();
        let run_end = (i..chars.len())
            .find(|&j| chars[j].is_alphabetic() != letter)
            .unwrap_or(chars.len());
        let run = &chars[i..run_end];
        let keep = if letter {
            // A run cut to one or two letters reads better as its initial ("la1" -> "l1").
            let keep = run.len() - over.min(run.len() - 1);
            let keep = if keep < 3 { 1 } else { keep };
            over = over.saturating_sub(run.len() - keep);
            keep
        } else {
            run.len()
        };
        out.extend(&run[..keep]);
        i = run_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every digit run of `short` is a whole digit run of `name`.
    fn numbers_whole(name: &str, short: &str) -> bool {
        let runs = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_ascii_digit())
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect()
        };
        let whole = runs(name);
        runs(short).iter().all(|r| whole.contains(r))
    }

    #[test]
    fn letters_go_first_then_leading_segments_and_numbers_stay_whole() {
        assert_eq!(shorten("layer3.1.bn2", 12), "layer3.1.bn2");
        assert_eq!(shorten("layer1.0.downsample.1", 18), "l1.0.downsample.1");
        assert_eq!(shorten("layer4.0.downsample.1", 15), "l4.0.downsamp.1");
        assert_eq!(shorten("layer4.0.downsample.1", 8), "l4.0.d.1");
        assert_eq!(shorten("layer3.1.bn2", 7), "l3.1.b2");
        assert_eq!(shorten("layer3.1.bn2", 5), "…1.b2");
        assert_eq!(shorten("encoder.layers.11.norm", 9), "e.l.11.n");
        for name in [
            "layer4.0.downsample.1",
            "model.backbone.stage12.block345.bn",
            "features.denseblock4.denselayer16.norm2",
            "x1234567890y",
            "bn",
        ] {
            for width in 3..=name.len() {
                let short = shorten(name, width);
                assert!(short.chars().count() <= width, "{name} {width}: {short}");
                assert!(numbers_whole(name, &short), "{name} {width}: {short}");
            }
        }
    }
}
