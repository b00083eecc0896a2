//! The network's shape as a runtime value: one conv -> BN -> ReLU block per width, the first at
//! stride 1 and the rest at stride 2 (`--widths 16,32,64,128`), then a global average pool and the
//! linear classifier. Each stride-2 block doubles how far a unit sees: three blocks see 9x9 pixels
//! before the pool, four 17x17, so the default follows the image size.
use std::fmt;
use std::str::FromStr;

use super::conv::ConvGeometry;

pub const KERNEL: usize = 3;
pub const PADDING: usize = 1;
pub const MAX_BLOCKS: usize = 8;
/// Channels of one block, at most: wider is far beyond what a CPU trains interactively.
pub const MAX_WIDTH: usize = 512;

/// Block names as the protocol and the dashboard show them.
const NAMES: [&str; MAX_BLOCKS] = [
    "block1", "block2", "block3", "block4", "block5", "block6", "block7", "block8",
];

/// Images up to this size (each side) get three blocks by default; larger ones four.
const SMALL_IMAGE: usize = 16;

/// One conv -> BN -> ReLU block as the rest of bntop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    pub name: &'static str,
    pub channels: usize,
    pub stride: usize,
}

impl BlockSpec {
    /// This block's convolution on `batch` images of `in_channels` x `height` x `width`.
    pub fn geometry(
        &self,
        in_channels: usize,
        batch: usize,
        height: usize,
        width: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            in_channels,
            batch,
            height,
            width,
            kernel: KERNEL,
            stride: self.stride,
            padding: PADDING,
        }
    }
}

/// The channel count of each block, in order: 1 to [`MAX_BLOCKS`] blocks of 1 to [`MAX_WIDTH`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widths(Vec<usize>);

impl Widths {
    pub fn new(widths: Vec<usize>) -> Result<Widths, String> {
        if widths.is_empty() || widths.len() > MAX_BLOCKS {
            return Err(format!(
                "{} blocks: the network has 1 to {MAX_BLOCKS}",
                widths.len()
            ));
        }
        if let Some((i, w)) =
            (widths.iter().enumerate()).find(|(_, &w)| !(1..=MAX_WIDTH).contains(&w))
        {
            return Err(format!(
                "block {} has {w} channels: each block has 1 to {MAX_WIDTH}",
                i + 1
            ));
        }
        Ok(Widths(widths))
    }

    /// 16,32,64 for images up to 16x16 (the 8x8 digits learn in seconds with it); one more block,
    /// 128 wide, for larger ones (MNIST, CIFAR-10), so a unit sees most of the image.
    pub fn default_for(height: usize, width: usize) -> Widths {
        if height.max(width) <= SMALL_IMAGE {
            Widths(vec![16, 32, 64])
        } else {
            Widths(vec![16, 32, 64, 128])
        }
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// Channels of the last block: the classifier's input features.
    pub fn features(&self) -> usize {
        self.0.last().copied().unwrap_or(0)
    }

    /// The blocks, named block1, block2, ...: the first at stride 1, the rest at stride 2.
    pub fn blocks(&self) -> impl Iterator<Item = BlockSpec> + '_ {
        (self.0.iter().zip(NAMES).enumerate()).map(|(i, (&channels, name))| BlockSpec {
            name,
            channels,
            stride: if i == 0 { 1 } else { 2 },
        })
    }
}

impl FromStr for Widths {
    type Err = String;

    /// Comma-separated channel counts, e.g. `16,32,64,128`.
    fn from_str(text: &str) -> Result<Widths, String> {
        let widths = text
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                format!("{text:?} is not comma-separated channel counts, e.g. 16,32,64,128")
            })?;
        Widths::new(widths)
    }
}

impl fmt::Display for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&texts.join(","))
    }
}

/// Each block with its convolution, for a batch of `batch` images of `[channels, height, width]`:
/// every block's input is the previous block's output.
pub fn block_geometries(
    widths: &Widths,
    [channels, height, width]: [usize; 3],
    batch: usize,
) -> impl Iterator<Item = (BlockSpec, ConvGeometry)> + '_ {
    widths
        .blocks()
        .scan((channels, height, width), move |(c, h, w), spec| {
            let geometry = spec.geometry(*c, batch, *h, *w);
            (*c, *h, *w) = (spec.channels, geometry.out_height(), geometry.out_width());
            Some((spec, geometry))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_widths_and_gives_strides_and_names() {
        let widths: Widths = "16,32,64,128".parse().expect("valid");
        let blocks: Vec<BlockSpec> = widths.blocks().collect();
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.name, b.channels, b.stride))
                .collect::<Vec<_>>(),
            [
                ("block1", 16, 1),
                ("block2", 32, 2),
                ("block3", 64, 2),
                ("block4", 128, 2)
            ]
        );
        assert_eq!(widths.to_string(), "16,32,64,128");
        assert_eq!(widths.features(), 128);
        assert_eq!(
            " 8 , 4".parse::<Widths>().expect("spaces").as_slice(),
            [8, 4]
        );
        let one: Widths = "7".parse().expect("one block");
        assert_eq!(one.blocks().map(|b| b.stride).collect::<Vec<_>>(), [1]);
        let most = vec![MAX_WIDTH; MAX_BLOCKS];
        assert_eq!(
            Widths::new(most.clone()).expect("the largest").as_slice(),
            most
        );
    }

    #[test]
    fn rejects_bad_widths_with_a_reason() {
        for (text, reason) in [
            ("", "comma-separated"),
            ("16,,32", "comma-separated"),
            ("16,32,", "comma-separated"),
            ("16;32", "comma-separated"),
            ("16,-32", "comma-separated"),
            ("16,3.5", "comma-separated"),
            ("16,0,64", "block 2 has 0 channels"),
            ("16,513", "block 2 has 513 channels"),
            ("99999999999999999999999", "comma-separated"),
            ("1,2,3,4,5,6,7,8,9", "9 blocks"),
        ] {
            let err = text.parse::<Widths>().expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
        assert!(Widths::new(Vec::new()).is_err());
    }

    #[test]
    fn default_has_three_blocks_for_digits_and_four_for_larger_images() {
        assert_eq!(Widths::default_for(8, 8).as_slice(), [16, 32, 64]);
        assert_eq!(Widths::default_for(16, 16).as_slice(), [16, 32, 64]);
        assert_eq!(Widths::default_for(28, 28).as_slice(), [16, 32, 64, 128]);
        assert_eq!(Widths::default_for(32, 32).as_slice(), [16, 32, 64, 128]);
    }

    #[test]
    fn geometries_chain_through_the_blocks() {
        let widths: Widths = "16,32,64,128".parse().expect("valid");
        let chain: Vec<_> = block_geometries(&widths, [1, 28, 28], 64)
            .map(|(spec, g)| (g.in_channels, g.height, spec.channels, g.out_height()))
            .collect();
        assert_eq!(
            chain,
            [
                (1, 28, 16, 28),
                (16, 28, 32, 14),
                (32, 14, 64, 7),
                (64, 7, 128, 4)
            ]
        );
    }
}
