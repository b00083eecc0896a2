//! JSON encoding of floats that round-trips non-finite values.
//!
//! serde_json writes NaN and ±∞ as `null` and cannot read them back, but a diverging run is exactly
//! when a user needs to see them. Finite values stay plain JSON numbers; NaN, +∞ and -∞ are written
//! as the strings "NaN", "inf" and "-inf". Use with `#[serde(with = "...")]` on every `f32` and
//! `f64` field of a record.
//!
//! Values are read with a visitor, straight into the float: an array of numbers costs 4 bytes per
//! `f32` while it is parsed, not a buffered enum per element, and [`vec`] refuses an array longer
//! than [`MAX_CHANNELS`] as soon as it gets there.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::limits::MAX_CHANNELS;

/// `f32` or `f64`: what the encoding needs of a float.
pub trait WireFloat: Copy {
    const NAN: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    fn is_finite(self) -> bool;
    fn is_nan(self) -> bool;
    fn is_positive(self) -> bool;
    fn from_f64(x: f64) -> Self;
    fn from_u64(x: u64) -> Self;
    fn from_i64(x: i64) -> Self;
    /// A finite value as a plain number, in the type's own precision (an f32 keeps its shortest
    /// f32 spelling).
    fn serialize_finite<S: Serializer>(self, s: S) -> Result<S::Ok, S::Error>;
}

macro_rules! wire_float {
    ($t:ty, $serialize:ident) => {
        impl WireFloat for $t {
            const NAN: Self = <$t>::NAN;
            const INFINITY: Self = <$t>::INFINITY;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn is_positive(self) -> bool {
                self > 0.0
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn from_u64(x: u64) -> Self {
                x as $t
            }
            fn from_i64(x: i64) -> Self {
                x as $t
            }
            fn serialize_finite<S: Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
                s.$serialize(self)
            }
        }
    };
}

wire_float!(f32, serialize_f32);
wire_float!(f64, serialize_f64);

fn serialize_one<F: WireFloat, S: Serializer>(x: F, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() {
        x.serialize_finite(s)
    } else if x.is_nan() {
        s.serialize_str("NaN")
    } else if x.is_positive() {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

/// One float as it appears on the wire: a number, or one of the three non-finite spellings.
struct FloatVisitor<F>(PhantomData<F>);

impl<F: WireFloat> Visitor<'_> for FloatVisitor<F> {
    type Value = F;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<F, E> {
        Ok(F::from_f64(x))
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<F, E> {
        Ok(F::from_u64(x))
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<F, E> {
        Ok(F::from_i64(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<F, E> {
        match s {
            "NaN" => Ok(F::NAN),
            "inf" => Ok(F::INFINITY),
            "-inf" => Ok(F::NEG_INFINITY),
            other => Err(E::custom(format!(
                "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{}\"",
                other.chars().take(40).collect::<String>().escape_debug()
            ))),
        }
    }
}

fn deserialize_one<'de, F: WireFloat, D: Deserializer<'de>>(d: D) -> Result<F, D::Error> {
    d.deserialize_any(FloatVisitor(PhantomData))
}

/// One element of an array, read with the same visitor.
struct Element<F>(F);

impl<'de, F: WireFloat> Deserialize<'de> for Element<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_one(d).map(Element)
    }
}

/// The default of a number a recording from an older version does not have.
pub fn nan() -> f32 {
    f32::NAN
}

/// `skip_serializing_if` for an optional number whose absence reads back as NaN.
pub fn is_nan(x: &f32) -> bool {
    x.is_nan()
}

/// `#[serde(with = "float_encoding::scalar")]` for an `f32` or `f64` field.
pub mod scalar {
    use super::*;

    pub fn serialize<F: WireFloat, S: Serializer>(x: &F, s: S) -> Result<S::Ok, S::Error> {
        serialize_one(*x, s)
    }

    pub fn deserialize<'de, F: WireFloat, D: Deserializer<'de>>(d: D) -> Result<F, D::Error> {
        deserialize_one(d)
    }
}

/// `#[serde(with = "float_encoding::vec")]` for a `Vec<f32>` (or `Vec<f64>`) field: at most
/// [`MAX_CHANNELS`] values.
pub mod vec {
    use super::*;

    pub fn serialize<F: WireFloat, S: Serializer>(xs: &[F], s: S) -> Result<S::Ok, S::Error> {
        struct One<F>(F);
        impl<F: WireFloat> Serialize for One<F> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_one(self.0, s)
            }
        }
        let mut seq = s.serialize_seq(Some(xs.len()))?;
        for &x in xs {
            seq.serialize_element(&One(x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, F: WireFloat, D: Deserializer<'de>>(d: D) -> Result<Vec<F>, D::Error> {
        d.deserialize_seq(ArrayVisitor(PhantomData))
    }

    struct ArrayVisitor<F>(PhantomData<F>);

    impl<'de, F: WireFloat> Visitor<'de> for ArrayVisitor<F> {
        type Value = Vec<F>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an array of at most {MAX_CHANNELS} numbers")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<F>, A::Error> {
            let mut xs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_CHANNELS));
            while let Some(Element(x)) = seq.next_element()? {
                if xs.len() == MAX_CHANNELS {
                    return Err(de::Error::custom(format!(
                        "an array of more than {MAX_CHANNELS} values"
                    )));
                }
                xs.push(x);
            }
            Ok(xs)
        }
    }
}

/// `#[serde(default, with = "float_encoding::option_vec")]` for an `Option<Vec<f32>>` field.
pub mod option_vec {
    use super::*;

    pub fn serialize<F: WireFloat, S: Serializer>(
        xs: &Option<Vec<F>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match xs {
            Some(xs) => super::vec::serialize(xs, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, F: WireFloat, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<F>>, D::Error> {
        struct Array<F>(Vec<F>);
        impl<'de, F: WireFloat> Deserialize<'de> for Array<F> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::vec::deserialize(d).map(Array)
            }
        }
        Ok(Option::<Array<F>>::deserialize(d)?.map(|a| a.0))
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

    #[derive(Serialize, Deserialize, Debug)]
    struct Wide {
        #[serde(with = "super::scalar")]
        x: f64,
        #[serde(with = "super::vec")]
        xs: Vec<f64>,
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
        let absent: Sample = serde_json::from_str(r#"{"x":1,"xs":[]}"#).expect("parse");
        assert_eq!(absent.maybe, None);
        let null: Sample = serde_json::from_str(r#"{"x":1,"xs":[],"maybe":null}"#).expect("parse");
        assert_eq!(null.maybe, None);
    }

    #[test]
    fn f64_values_round_trip_exactly_and_non_finite_ones_as_strings() {
        let w = Wide {
            x: f64::NEG_INFINITY,
            xs: vec![0.1, 1e300, f64::NAN, f64::INFINITY, -5e-324],
        };
        let json = serde_json::to_string(&w).expect("serialise");
        assert_eq!(
            json,
            r#"{"x":"-inf","xs":[0.1,1e+300,"NaN","inf",-5e-324]}"#
        );
        let back: Wide = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.x, f64::NEG_INFINITY);
        assert_eq!(back.xs[0].to_bits(), 0.1f64.to_bits());
        assert_eq!(back.xs[1], 1e300);
        assert!(back.xs[2].is_nan());
        assert_eq!(back.xs[4].to_bits(), (-5e-324f64).to_bits());
        // Integers are numbers too, also beyond what an f64 holds exactly.
        let ints: Wide =
            serde_json::from_str(r#"{"x":-3,"xs":[18446744073709551615]}"#).expect("parse");
        assert_eq!((ints.x, ints.xs[0]), (-3.0, u64::MAX as f64));
    }

    #[test]
    fn every_finite_f32_pattern_sampled_round_trips_exactly() {
        // A deterministic sweep over the bit space, dense enough to hit subnormals, tiny and huge values.
        let xs: Vec<f32> = (0..200_000u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .filter(|x| x.is_finite())
            .collect();
        let n = xs.len();
        for chunk in xs.chunks(super::MAX_CHANNELS) {
            let s = Sample {
                x: 0.1,
                xs: chunk.to_vec(),
                maybe: None,
            };
            let back: Sample = serde_json::from_str(&serde_json::to_string(&s).expect("serialise"))
                .expect("parse");
            assert_eq!(back.xs.len(), chunk.len());
            for (a, b) in chunk.iter().zip(&back.xs) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a:e} came back as {b:e}");
            }
            assert_eq!(back.maybe, None);
        }
        assert!(n > 100_000);
    }

    #[test]
    fn unknown_spelling_is_an_error_not_a_silent_zero() {
        let err = serde_json::from_str::<Sample>(r#"{"x":"nan?","xs":[]}"#).expect_err("must fail");
        assert!(err.to_string().contains("nan?"), "{err}");
        for bad in [
            r#"{"x":null,"xs":[]}"#,
            r#"{"x":[1],"xs":[]}"#,
            r#"{"x":1,"xs":[true]}"#,
        ] {
            assert!(serde_json::from_str::<Sample>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_array_longer_than_the_limit_is_refused_while_it_is_read() {
        let at_limit = format!(
            r#"{{"x":0,"xs":[{}]}}"#,
            vec!["1"; super::MAX_CHANNELS].join(",")
        );
        let s: Sample = serde_json::from_str(&at_limit).expect("at the limit");
        assert_eq!(s.xs.len(), super::MAX_CHANNELS);
        let over = at_limit.replacen('[', "[2,", 1);
        let err = serde_json::from_str::<Sample>(&over).expect_err("over the limit");
        assert!(err.to_string().contains("more than"), "{err}");
        let over_maybe = format!(
            r#"{{"x":0,"xs":[],"maybe":[{}]}}"#,
            vec!["1"; super::MAX_CHANNELS + 1].join(",")
        );
        assert!(serde_json::from_str::<Sample>(&over_maybe).is_err());
    }
}
