//! JSON encoding of floats that round-trips non-finite values.
//!
//! serde_json writes NaN and ±∞ as `null` and cannot read them back, but a diverging run is exactly
//! when a user needs to see them. Finite values stay plain JSON numbers; NaN, +∞ and -∞ are written
//! as the strings "NaN", "inf" and "-inf". Use with `#[serde(with = "...")]` on f32 fields.

use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// One float as it appears on the wire: a number, or one of the three non-finite spellings.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Wire<'a> {
    Number(f32),
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
}

fn to_wire(x: f32) -> Wire<'static> {
    if x.is_finite() {
        Wire::Number(x)
    } else if x.is_nan() {
        Wire::Text("NaN".into())
    } else if x > 0.0 {
        Wire::Text("inf".into())
    } else {
        Wire::Text("-inf".into())
    }
}

fn from_wire<E: serde::de::Error>(w: Wire<'_>) -> Result<f32, E> {
    match w {
        Wire::Number(x) => Ok(x),
        Wire::Text(s) => match s.as_ref() {
            "NaN" => Ok(f32::NAN),
            "inf" => Ok(f32::INFINITY),
            "-inf" => Ok(f32::NEG_INFINITY),
            other => Err(E::custom(format!(
                "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{other}\""
            ))),
        },
    }
}

/// `#[serde(with = "float_encoding::scalar")]` for an `f32` field.
/// The default of a number a recording from an older version does not have.
pub fn nan() -> f32 {
    f32::NAN
}

pub mod scalar {
    use super::*;

    pub fn serialize<S: Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
        to_wire(*x).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        from_wire(Wire::deserialize(d)?)
    }
}

/// `#[serde(with = "float_encoding::vec")]` for a `Vec<f32>` field.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(xs: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(xs.len()))?;
        for &x in xs {
            seq.serialize_element(&to_wire(x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Vec::<Wire>::deserialize(d)?
            .into_iter()
            .map(from_wire)
            .collect()
    }
}

/// `#[serde(default, with = "float_encoding::option_vec")]` for an `Option<Vec<f32>>` field.
pub mod option_vec {
    use super::*;

    pub fn serialize<S: Serializer>(xs: &Option<Vec<f32>>, s: S) -> Result<S::Ok, S::Error> {
        match xs {
            Some(xs) => super::vec::serialize(xs, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
        let wire: Option<Vec<Wire>> = Option::deserialize(d)?;
        wire.map(|ws| ws.into_iter().map(from_wire).collect())
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug)]
    struct Sample {
        #[serde(with = "super::scalar")]
        x: f32,
        #[serde(with = "super::vec")]
        xs: Vec<f32>,
        #[serde(default, with = "super::option_vec")]
        maybe: Option<Vec<f32>>,
    }

    fn same_bits(a: f32, b: f32) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    #[test]
    fn non_finite_values_round_trip_as_strings() {
        let s = Sample {
            x: f32::NAN,
            xs: vec![1.5, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0],
            maybe: Some(vec![f32::NAN]),
        };
        let json = serde_json::to_string(&s).expect("serialise");
        assert_eq!(
            json,
            r#"{"x":"NaN","xs":[1.5,"inf","-inf","NaN",-0.0],"maybe":["NaN"]}"#
        );
        let back: Sample = serde_json::from_str(&json).expect("parse");
        assert!(back.x.is_nan());
        for (a, b) in s.xs.iter().zip(&back.xs) {
            assert!(same_bits(*a, *b), "{a} != {b}");
        }
        assert!(back.maybe.expect("present")[0].is_nan());
    }

    #[test]
    fn every_finite_f32_pattern_sampled_round_trips_exactly() {
        // A deterministic sweep over the bit space, dense enough to hit subnormals, tiny and huge values.
        let xs: Vec<f32> = (0..200_000u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .filter(|x| x.is_finite())
            .collect();
        let s = Sample {
            x: 0.1,
            xs: xs.clone(),
            maybe: None,
        };
        let back: Sample =
            serde_json::from_str(&serde_json::to_string(&s).expect("serialise")).expect("parse");
        assert_eq!(back.xs.len(), xs.len());
        for (a, b) in xs.iter().zip(&back.xs) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
        }
        assert_eq!(back.maybe, None);
    }

    #[test]
    fn unknown_spelling_is_an_error_not_a_silent_zero() {
        let err = serde_json::from_str::<Sample>(r#"{"x":"nan?","xs":[]}"#).expect_err("must fail");
        assert!(err.to_string().contains("nan?"), "{err}");
    }
}
