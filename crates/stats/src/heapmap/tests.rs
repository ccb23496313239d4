//! Golden heap maps of hand-built heaps whose every byte is known.

use std::string::{String, ToString};
use std::vec::Vec;

use freespace_core::{BlockInfo, BlockState, Inspect};

use super::*;

/// A heap that is exactly this list of blocks.
pub(crate) struct Blocks(pub Vec<BlockInfo>);

impl Inspect for Blocks {
    fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
        for &b in &self.0 {
            visit(b);
        }
    }
}

/// Blocks laid end to end from `base`: `(gap before, len, state)`.
pub(crate) fn laid_out(base: usize, parts: &[(usize, usize, BlockState)]) -> Blocks {
    let mut at = base;
    let mut blocks = Vec::new();
    for &(gap, len, state) in parts {
        at += gap;
        blocks.push(BlockInfo {
            addr: at,
            len,
            state,
        });
        at += len;
    }
    Blocks(blocks)
}

use BlockState::{Free, Meta, Used};

/// Line 0 (256 B): `mm###.....#+###.`; line 1: free to 0x164, used to 0x170;
/// 14 empty lines; line 16: `m###############`; line 17: one used cell.
fn golden_heap() -> Blocks {
    laid_out(
        0x10000,
        &[
            (0, 32, Meta),
            (0, 48, Used),
            (0, 80, Free),
            (0, 24, Used),
            (0, 8, Free),
            (0, 48, Used),
            (0, 116, Free),
            (0, 12, Used),
            (4096 - 368, 16, Meta),
            (0, 240, Used),
            (0, 16, Used),
        ],
    )
}

#[test]
fn ascii_map_of_a_known_heap() {
    let map = AsciiMap::new(16, 16).display(&golden_heap()).to_string();
    assert_eq!(
        map,
        "+0x0000 |mm###.....#+###.|\n\
         +0x0100 |......+         |\n\
         \x20 ~ 14 lines (3584 B) with no block\n\
         +0x1000 |m###############|\n\
         +0x1100 |#               |\n"
    );
}

#[test]
fn ascii_map_without_offsets() {
    let map = AsciiMap::new(32, 8).with_offsets(false);
    assert_eq!(
        map.display(&golden_heap()).to_string(),
        "m#+..+#+\n...+    \n\
         \x20 ~ 14 lines (3584 B) with no block\n\
         ########\n#       \n"
    );
}

#[test]
fn fitted_map_is_one_line_over_the_span() {
    let heap = laid_out(0x4000, &[(0, 16, Meta), (0, 240, Used), (256, 512, Free)]);
    let map = AsciiMap::fitted(&heap, 16);
    assert_eq!(map.cell_bytes(), 64);
    // 0..256 used (with a 16-byte header), 256..512 no block, 512.. free.
    assert_eq!(map.display(&heap).to_string(), "####    ........\n");
}

#[test]
fn lines_wider_than_one_walk_chunk() {
    let heap = laid_out(0, &[(0, 70, Used), (0, 30, Free), (0, 3, Meta)]);
    let text = AsciiMap::new(1, 100)
        .with_offsets(false)
        .display(&heap)
        .to_string();
    let mut expect = "#".repeat(70) + &".".repeat(30) + "\n";
    expect += "mmm";
    expect += &" ".repeat(97);
    expect += "\n";
    assert_eq!(text, expect);
}

#[test]
fn cell_characters_follow_the_legend() {
    assert_eq!(cell_char([0, 0, 0]), ' ');
    assert_eq!(cell_char([0, 0, 5]), 'm');
    assert_eq!(cell_char([9, 1, 0]), '#');
    assert_eq!(cell_char([8, 2, 0]), '+');
    assert_eq!(cell_char([1, 9, 7]), '.');
    assert_eq!(cell_char([usize::MAX, 0, 0]), '#', "no overflow");
}

#[test]
fn an_empty_heap() {
    let empty = Blocks(Vec::new());
    assert_eq!(
        AsciiMap::new(8, 8).display(&empty).to_string(),
        "(no blocks)\n"
    );
    let mut svg = String::new();
    SvgMap::new(64).render(&empty, &mut svg).unwrap();
    assert!(svg.contains(">no blocks</text>"));
}

#[test]
fn blocks_at_the_top_of_the_address_space_do_not_overflow() {
    let top = usize::MAX - 63;
    let heap = laid_out(top, &[(0, 32, Used), (0, 31, Free)]);
    assert_eq!(
        AsciiMap::new(16, 4).display(&heap).to_string(),
        "+0x00 |##..|\n"
    );
    let mut svg = String::new();
    SvgMap::new(16).render(&heap, &mut svg).unwrap();
    assert!(svg.ends_with("</svg>\n"));
}

/// The `width` attributes of the block rectangles drawn at height `y`.
fn widths_at(svg: &str, y: &str) -> Vec<(String, f64)> {
    svg.lines()
        .filter(|l| l.starts_with("<rect x=") && l.contains(&std::format!(" y=\"{y}\"")))
        .filter(|l| !l.contains(SVG_COLOURS[3].1))
        .map(|l| {
            let attr = |name: &str| {
                let at = l.find(&std::format!(" {name}=\"")).unwrap() + name.len() + 3;
                l[at..at + l[at..].find('"').unwrap()].to_string()
            };
            (attr("fill"), attr("width").parse().unwrap())
        })
        .collect()
}

#[test]
fn svg_map_of_a_known_heap() {
    let heap = golden_heap();
    let mut svg = String::new();
    SvgMap::new(256)
        .title("golden <heap> & co")
        .render(&heap, &mut svg)
        .unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.ends_with("</svg>\n"));
    assert!(svg.contains(">golden &lt;heap&gt; &amp; co</text>"));
    assert!(svg.contains(">~ 3584 B with no block</text>"));
    for (name, colour) in SVG_COLOURS {
        assert!(svg.contains(&std::format!("fill=\"{colour}\"")), "{name}");
        assert!(
            svg.contains(&std::format!(">{name}</text>")),
            "legend: {name}"
        );
    }
    // Row 0 is covered end to end: its rectangles fill the 720 pixels, each
    // block in its colour and in proportion to its length.
    let row0 = widths_at(&svg, "56.0");
    let lens = [32, 48, 80, 24, 8, 48, 16];
    assert_eq!(row0.len(), lens.len());
    for ((fill, width), (len, state)) in row0
        .iter()
        .zip(lens.iter().zip([Meta, Used, Free, Used, Free, Used, Free]))
    {
        assert_eq!(fill, SVG_COLOURS[kind(state)].1);
        assert!(
            (width - *len as f64 * 720.0 / 256.0).abs() < 0.01,
            "{width} for {len}"
        );
    }
    // Rows: 0, 1, the gap line, 16, 17.
    assert_eq!(svg.matches("font-family=\"monospace\"").count(), 4);
    assert!(svg.contains(">+0x1100</text>"));
}

#[test]
fn fitted_svg_rows() {
    let heap = laid_out(0, &[(0, 1000, Used), (0, 24, Free)]);
    let map = SvgMap::fitted(&heap, 10);
    assert_eq!(map.row_bytes(), 112); // 1024 / 10 = 102.4, up to a multiple of 16
    let mut svg = String::new();
    map.render(&heap, &mut svg).unwrap();
    assert_eq!(svg.matches("font-family=\"monospace\"").count(), 10);
}
