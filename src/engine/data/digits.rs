//! The embedded default set: the UCI / scikit-learn optical digits, 1797 8x8 images as gzip'd
//! CSV (64 intensities in 0..=16, row-major, then the label).

use std::path::Path;

use super::read::maybe_gunzip;
use super::split::split;
use super::{DataError, DataSet, Images, CLASSES};

/// Built into the binary so `bntop` runs with no download and no flags.
const DIGITS_CSV_GZ: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/digits.csv.gz"));

const SIDE: usize = 8;
const PIXELS: usize = SIDE * SIDE;
const MAX_INTENSITY: u8 = 16;

/// The real UCI / scikit-learn digits set embedded in the binary, split 80/20 by the seeded
/// shuffle (1437 train, 360 held-out).
pub fn embedded_digits() -> Result<DataSet, DataError> {
    let origin = Path::new("assets/digits.csv.gz (embedded)");
    let csv = maybe_gunzip(DIGITS_CSV_GZ.to_vec(), origin)?;
    let all = parse_csv(&csv, origin)?;
    let (train, heldout) = split(&all, origin)?;
    Ok(DataSet::unstandardised(
        "digits",
        "embedded".into(),
        train,
        heldout,
    ))
}

/// One image a line: 64 integers in 0..=16, then the label; blank lines are skipped.
fn parse_csv(csv: &[u8], origin: &Path) -> Result<Images, DataError> {
    let text = std::str::from_utf8(csv)
        .map_err(|e| DataError::new(origin, format!("not UTF-8 text: {e}")))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |problem: String| DataError::new(origin, format!("line {}: {problem}", index + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != PIXELS + 1 {
            return Err(at(format!(
                "expected {} comma-separated values (64 pixels and a label), found {}",
                PIXELS + 1,
                fields.len()
            )));
        }
        for (column, field) in fields[..PIXELS].iter().enumerate() {
            match field.parse::<u8>() {
                Ok(v) if v <= MAX_INTENSITY => pixels.push(f32::from(v) / f32::from(MAX_INTENSITY)),
                _ => {
                    return Err(at(format!(
                        "column {}: pixel {field:?} is not an integer in 0..={MAX_INTENSITY}",
                        column + 1
                    )))
                }
            }
        }
        let label = fields[PIXELS];
        match label.parse::<u8>() {
            Ok(v) if usize::from(v) < CLASSES => labels.push(v),
            _ => {
                return Err(at(format!(
                    "label {label:?} is out of range 0..={}",
                    CLASSES - 1
                )))
            }
        }
    }
    Ok(Images {
        channels: 1,
        height: SIDE,
        width: SIDE,
        pixels,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_images(images: &Images) -> Vec<(u8, Vec<u32>)> {
        let mut all: Vec<_> = (0..images.len())
            .map(|i| {
                let bits = images.image(i).iter().map(|x| x.to_bits()).collect();
                (images.labels[i], bits)
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn embedded_digits_load_and_split() {
        let data = embedded_digits().unwrap();
        assert_eq!(
            (data.name.as_str(), data.source.as_str()),
            ("digits", "embedded")
        );
        assert_eq!(data.classes, 10);
        assert!(data.channel_mean.is_empty() && data.channel_std.is_empty());
        assert_eq!((data.train.len(), data.heldout.len()), (1437, 360));
        for part in [&data.train, &data.heldout] {
            assert_eq!((part.channels, part.height, part.width), (1, 8, 8));
            assert_eq!(part.pixels.len(), part.len() * 64);
            assert!(part.pixels.iter().all(|x| (0.0..=1.0).contains(x)));
            for class in 0..10 {
                assert!(part.labels.contains(&class), "class {class} missing");
            }
        }
        // Both ends of the 0..=16 scale occur, so the 1/16 scaling really spans [0, 1].
        assert!(data.train.pixels.contains(&0.0) && data.train.pixels.contains(&1.0));
    }

    #[test]
    fn embedded_split_is_deterministic_and_a_partition() {
        let data = embedded_digits().unwrap();
        let again = embedded_digits().unwrap();
        assert_eq!((&data.train, &data.heldout), (&again.train, &again.heldout));

        // No image is duplicated in the file, so disjoint content means disjoint splits.
        let csv = maybe_gunzip(DIGITS_CSV_GZ.to_vec(), Path::new("x")).unwrap();
        let whole = sorted_images(&parse_csv(&csv, Path::new("x")).unwrap());
        let train = sorted_images(&data.train);
        let heldout = sorted_images(&data.heldout);
        assert!(train
            .iter()
            .all(|image| heldout.binary_search(image).is_err()));
        let mut rejoined = [train, heldout].concat();
        rejoined.sort();
        assert_eq!(rejoined, whole);
    }

    #[test]
    fn first_digit_decodes_exactly() {
        let csv = maybe_gunzip(DIGITS_CSV_GZ.to_vec(), Path::new("x")).unwrap();
        let all = parse_csv(&csv, Path::new("x")).unwrap();
        assert_eq!(all.len(), 1797);
        // Line 1 starts 0,0,5,13,9,1 and ends with label 0.
        assert_eq!(
            &all.image(0)[..6],
            &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0, 9.0 / 16.0, 1.0 / 16.0]
        );
        assert_eq!(all.labels[0], 0);
    }

    fn line(pixel: &str, label: &str) -> String {
        let mut fields = vec!["0"; PIXELS];
        fields[10] = pixel;
        fields.push(label);
        fields.join(",") + "\n"
    }

    fn parse_error(csv: &str) -> String {
        parse_csv(csv.as_bytes(), Path::new("d.csv"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let good = line("3", "1");
        let short = "1,2,3\n";
        assert_eq!(
            parse_error(&(good.clone() + short)),
            "d.csv: line 2: expected 65 comma-separated values (64 pixels and a label), found 3"
        );
        assert_eq!(
            parse_error(&(good.clone() + &line("17", "1"))),
            "d.csv: line 2: column 11: pixel \"17\" is not an integer in 0..=16"
        );
        assert_eq!(
            parse_error(&(good.clone() + &line("x", "1"))),
            "d.csv: line 2: column 11: pixel \"x\" is not an integer in 0..=16"
        );
        assert_eq!(
            parse_error(&(good.clone() + &line("0", "10"))),
            "d.csv: line 2: label \"10\" is out of range 0..=9"
        );
    }
}
