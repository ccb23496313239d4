//! Heap maps: any [`Inspect`] heap drawn as text ([`AsciiMap`]) or as a
//! picture ([`SvgMap`]).
//!
//! Both cut the heap's address range into rows of equal length, starting
//! at the lowest block address; a row holding no block byte at all (the
//! space between two regions of a heap) is skipped and marked, so a heap
//! whose regions lie gigabytes apart still draws in a few rows.
//!
//! ```text
//!  +0x000 |m######.......++++|      # used  + mixed  . free  m metadata only
//!  +0x100 |........###       |      (blank: no block at these addresses)
//! ```
//!
//! Nothing here allocates: a map is written to any [`fmt::Write`], walking
//! the heap once per row (so a map of a heap other threads are changing is
//! a blend of moments; under a `Locked` each walk takes the lock).
//!
//! ```
//! use freespace_core::{BlockInfo, BlockState, Inspect};
//! use freespace_stats::heapmap::{AsciiMap, SvgMap};
//!
//! struct Heap;
//! impl Inspect for Heap {
//!     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
//!         visit(BlockInfo { addr: 0x100, len: 16, state: BlockState::Meta });
//!         visit(BlockInfo { addr: 0x110, len: 112, state: BlockState::Used });
//!         visit(BlockInfo { addr: 0x180, len: 128, state: BlockState::Free });
//!     }
//! }
//! print!("{}", AsciiMap::new(16, 8).display(&Heap)); // +0x00 |m#######|  +0x80 |........|
//! let mut svg = String::new();
//! SvgMap::new(128).title("a tiny heap").render(&Heap, &mut svg).unwrap();
//! assert!(svg.contains("a tiny heap"));
//! ```

use core::fmt;

use freespace_core::{BlockState, Inspect};

use crate::Fragmentation;

#[cfg(test)]
pub(crate) mod tests;

/// What each character of an [`AsciiMap`] means.
///
/// ```
/// assert!(freespace_stats::ASCII_LEGEND.starts_with("# used"));
/// ```
pub const ASCII_LEGEND: &str = "# used  + mixed  . free  m metadata only  (blank: no block)";

/// Cells counted per heap walk (a stack buffer of this many cells).
const CHUNK: usize = 64;

// ---- walking ------------------------------------------------------------

/// The lowest block address and the end of the highest block, over blocks
/// of non-zero length.
fn span<I: Inspect + ?Sized>(heap: &I) -> Option<(usize, usize)> {
    let mut span: Option<(usize, usize)> = None;
    heap.inspect(&mut |b| {
        if b.len > 0 {
            let end = b.addr.saturating_add(b.len);
            span = Some(match span {
                None => (b.addr, end),
                Some((lo, hi)) => (lo.min(b.addr), hi.max(end)),
            });
        }
    });
    span
}

/// The lowest address at or after `from` that some block covers.
fn next_covered<I: Inspect + ?Sized>(heap: &I, from: usize) -> Option<usize> {
    let mut next: Option<usize> = None;
    heap.inspect(&mut |b| {
        if b.len > 0 && b.addr.saturating_add(b.len) > from {
            let at = b.addr.max(from);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    });
    next
}

/// Index of what a block's bytes are in a cell's `[used, free, meta]`.
fn kind(state: BlockState) -> usize {
    match state {
        BlockState::Used => 0,
        BlockState::Free => 1,
        BlockState::Meta => 2,
    }
}

/// Adds to `cells[i]` the bytes of each kind that lie in
/// `start + i * cell_bytes .. start + (i + 1) * cell_bytes`.
fn accumulate<I: Inspect + ?Sized>(
    heap: &I,
    start: usize,
    cell_bytes: usize,
    cells: &mut [[usize; 3]],
) {
    let end = start.saturating_add(cell_bytes.saturating_mul(cells.len()));
    heap.inspect(&mut |b| {
        let from = b.addr.max(start);
        let to = b.addr.saturating_add(b.len).min(end);
        let mut at = from;
        while at < to {
            let i = (at - start) / cell_bytes;
            let cell_end = start.saturating_add((i + 1).saturating_mul(cell_bytes));
            let upto = cell_end.min(to);
            if let Some(cell) = cells.get_mut(i) {
                cell[kind(b.state)] += upto - at;
            }
            at = upto;
        }
    });
}

/// One cell's character: `#` used (90% or more of its used and free
/// bytes), `.` free (90% or more), `+` mixed, `m` metadata only, blank
/// where no block lies.
fn cell_char([used, free, meta]: [usize; 3]) -> char {
    let (used, free) = (used as u128, free as u128);
    let data = used + free;
    if data == 0 {
        if meta > 0 {
            'm'
        } else {
            ' '
        }
    } else if used * 10 >= data * 9 {
        '#'
    } else if free * 10 >= data * 9 {
        '.'
    } else {
        '+'
    }
}

/// One row of a map: rows are `row_bytes` long from the heap's lowest
/// address; `skipped` rows before this one held no block byte.
#[derive(Debug, Clone, Copy)]
struct Row {
    start: usize,
    skipped: usize,
}

/// The rows of `heap` that hold at least one block byte, in address order.
struct Rows<'a, I: ?Sized> {
    heap: &'a I,
    lo: usize,
    row_bytes: usize,
    /// The next row to yield: its index from `lo`, and rows skipped.
    pending: Option<(usize, usize)>,
}

impl<'a, I: Inspect + ?Sized> Rows<'a, I> {
    fn new(heap: &'a I, lo: usize, row_bytes: usize) -> Self {
        Self {
            heap,
            lo,
            row_bytes: row_bytes.max(1),
            pending: Some((0, 0)),
        }
    }
}

impl<I: Inspect + ?Sized> Iterator for Rows<'_, I> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let (index, skipped) = self.pending.take()?;
        // `index * row_bytes <= some block address - lo`: no overflow.
        let start = self.lo + index * self.row_bytes;
        let end = start.saturating_add(self.row_bytes);
        if end < usize::MAX {
            self.pending = next_covered(self.heap, end).map(|at| {
                let next = (at - self.lo) / self.row_bytes;
                (next, next - index - 1)
            });
        }
        Some(Row { start, skipped })
    }
}

/// Hex digits of the largest offset in `lo..hi`.
fn offset_digits(lo: usize, hi: usize) -> usize {
    let largest = hi.saturating_sub(lo).saturating_sub(1);
    ((usize::BITS - largest.leading_zeros()) as usize)
        .div_ceil(4)
        .max(1)
}

// ---- ASCII --------------------------------------------------------------

/// A text heap map: one line per `cell_bytes * line_cells` bytes, one
/// character per `cell_bytes` (see [`ASCII_LEGEND`]), each line prefixed
/// with its offset from the heap's lowest block address.
///
/// ```text
/// +0x000 |m###....++####..|
/// +0x100 |.......         |
///   ~ 3 lines (768 B) with no block
/// +0x400 |mm##            |
/// ```
///
/// # Example
///
/// ```
/// use freespace_core::{BlockInfo, BlockState, Inspect};
/// use freespace_stats::AsciiMap;
///
/// struct Heap;
/// impl Inspect for Heap {
///     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
///         visit(BlockInfo { addr: 0x1000, len: 16, state: BlockState::Meta });
///         visit(BlockInfo { addr: 0x1010, len: 48, state: BlockState::Used });
///         visit(BlockInfo { addr: 0x1040, len: 64, state: BlockState::Free });
///     }
/// }
/// let map = AsciiMap::new(16, 4).display(&Heap).to_string();
/// assert_eq!(map, "+0x00 |m###|\n+0x40 |....|\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsciiMap {
    cell_bytes: usize,
    line_cells: usize,
    offsets: bool,
}

impl AsciiMap {
    /// A map of `line_cells` cells per line, `cell_bytes` bytes per cell
    /// (0 counts as 1), with offsets.
    ///
    /// ```
    /// let map = freespace_stats::AsciiMap::new(64, 32);
    /// assert_eq!((map.cell_bytes(), map.line_cells()), (64, 32));
    /// ```
    pub const fn new(cell_bytes: usize, line_cells: usize) -> Self {
        Self {
            cell_bytes: if cell_bytes == 0 { 1 } else { cell_bytes },
            line_cells: if line_cells == 0 { 1 } else { line_cells },
            offsets: true,
        }
    }

    /// A map that puts the heap's whole address span on one line of
    /// `cells` characters (gaps between regions blank), without offsets:
    /// the one-line picture the demo prints after every step.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, BlockState, Inspect};
    /// use freespace_stats::AsciiMap;
    /// struct Heap;
    /// impl Inspect for Heap {
    ///     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
    ///         visit(BlockInfo { addr: 0, len: 300, state: BlockState::Used });
    ///         visit(BlockInfo { addr: 300, len: 100, state: BlockState::Free });
    ///     }
    /// }
    /// let map = AsciiMap::fitted(&Heap, 8);
    /// assert_eq!(map.cell_bytes(), 50);
    /// assert_eq!(map.display(&Heap).to_string(), "######..\n");
    /// ```
    pub fn fitted<I: Inspect + ?Sized>(heap: &I, cells: usize) -> Self {
        let cells = cells.max(1);
        let span = span(heap).map_or(0, |(lo, hi)| hi - lo);
        Self::new(span.div_ceil(cells), cells).with_offsets(false)
    }

    /// The same map with or without the offset column (and its bars).
    ///
    /// ```
    /// let map = freespace_stats::AsciiMap::new(16, 8).with_offsets(false);
    /// # let _ = map;
    /// ```
    pub const fn with_offsets(mut self, offsets: bool) -> Self {
        self.offsets = offsets;
        self
    }

    /// Bytes per character.
    ///
    /// ```
    /// assert_eq!(freespace_stats::AsciiMap::new(0, 1).cell_bytes(), 1);
    /// ```
    pub const fn cell_bytes(&self) -> usize {
        self.cell_bytes
    }

    /// Characters per line.
    ///
    /// ```
    /// assert_eq!(freespace_stats::AsciiMap::new(8, 80).line_cells(), 80);
    /// ```
    pub const fn line_cells(&self) -> usize {
        self.line_cells
    }

    /// Writes the map of `heap` to `out`, every line ending in `\n`; an
    /// empty heap is the line `(no blocks)`.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, Inspect};
    /// struct Empty;
    /// impl Inspect for Empty { fn inspect(&self, _: &mut dyn FnMut(BlockInfo)) {} }
    /// let mut s = String::new();
    /// freespace_stats::AsciiMap::new(16, 16).render(&Empty, &mut s).unwrap();
    /// assert_eq!(s, "(no blocks)\n");
    /// ```
    pub fn render<I, W>(&self, heap: &I, out: &mut W) -> fmt::Result
    where
        I: Inspect + ?Sized,
        W: fmt::Write + ?Sized,
    {
        let Some((lo, hi)) = span(heap) else {
            return out.write_str("(no blocks)\n");
        };
        let line_bytes = self.cell_bytes.saturating_mul(self.line_cells);
        let digits = offset_digits(lo, hi);
        for row in Rows::new(heap, lo, line_bytes) {
            if row.skipped > 0 {
                writeln!(
                    out,
                    "  ~ {} lines ({} B) with no block",
                    row.skipped,
                    row.skipped.saturating_mul(line_bytes)
                )?;
            }
            if self.offsets {
                write!(out, "+{:#0w$x} |", row.start - lo, w = digits + 2)?;
            }
            let mut done = 0;
            while done < self.line_cells {
                let n = CHUNK.min(self.line_cells - done);
                let mut cells = [[0usize; 3]; CHUNK];
                let at = row
                    .start
                    .saturating_add(done.saturating_mul(self.cell_bytes));
                accumulate(heap, at, self.cell_bytes, &mut cells[..n]);
                for cell in &cells[..n] {
                    out.write_char(cell_char(*cell))?;
                }
                done += n;
            }
            if self.offsets {
                out.write_char('|')?;
            }
            out.write_char('\n')?;
        }
        Ok(())
    }

    /// The map of `heap` as a `Display` value, for `format!` and `println!`.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, BlockState, Inspect};
    /// struct One;
    /// impl Inspect for One {
    ///     fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    ///         v(BlockInfo { addr: 64, len: 32, state: BlockState::Free });
    ///     }
    /// }
    /// let map = freespace_stats::AsciiMap::new(8, 4);
    /// assert_eq!(format!("{}", map.display(&One)), "+0x00 |....|\n");
    /// ```
    pub fn display<'a, I: Inspect + ?Sized>(&'a self, heap: &'a I) -> impl fmt::Display + 'a {
        Shown { map: self, heap }
    }
}

struct Shown<'a, I: ?Sized> {
    map: &'a AsciiMap,
    heap: &'a I,
}

impl<I: Inspect + ?Sized> fmt::Display for Shown<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.map.render(self.heap, f)
    }
}

// ---- SVG ----------------------------------------------------------------

/// Fill colours of an [`SvgMap`], by name: used, free, metadata, no block.
///
/// ```
/// let (name, colour) = freespace_stats::SVG_COLOURS[1];
/// assert_eq!((name, colour), ("free", "#a1d99b"));
/// ```
pub const SVG_COLOURS: [(&str, &str); 4] = [
    ("used", "#4c72b0"),
    ("free", "#a1d99b"),
    ("metadata", "#dd8452"),
    ("no block", "#eeeeee"),
];

const LEFT: f64 = 90.0;
const TOP: f64 = 56.0;
const RIGHT: f64 = 20.0;

/// A picture of a heap: hand-written SVG text, one horizontal band per
/// `row_bytes` bytes, every block a rectangle coloured by its state (see
/// [`SVG_COLOURS`]), each row labelled with its offset, a title, a line of
/// [`Fragmentation`] figures and a legend.
///
/// # Example
///
/// ```
/// use freespace_core::{BlockInfo, BlockState, Inspect};
/// use freespace_stats::SvgMap;
///
/// struct Heap;
/// impl Inspect for Heap {
///     fn inspect(&self, visit: &mut dyn FnMut(BlockInfo)) {
///         visit(BlockInfo { addr: 0x1000, len: 16, state: BlockState::Meta });
///         visit(BlockInfo { addr: 0x1010, len: 240, state: BlockState::Used });
///         visit(BlockInfo { addr: 0x1100, len: 256, state: BlockState::Free });
///     }
/// }
/// let mut svg = String::new();
/// SvgMap::new(256).title("two rows").render(&Heap, &mut svg).unwrap();
/// assert!(svg.starts_with("<svg"));
/// assert!(svg.trim_end().ends_with("</svg>"));
/// assert_eq!(svg.matches("fill=\"#4c72b0\"").count(), 2); // the used block + its legend swatch
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SvgMap<'t> {
    row_bytes: usize,
    width: usize,
    row_height: usize,
    title: &'t str,
}

impl SvgMap<'static> {
    /// A picture with `row_bytes` bytes per row (0 counts as 1), 720
    /// pixels of map per row, no title.
    ///
    /// ```
    /// assert_eq!(freespace_stats::SvgMap::new(4096).row_bytes(), 4096);
    /// ```
    pub const fn new(row_bytes: usize) -> Self {
        Self {
            row_bytes: if row_bytes == 0 { 1 } else { row_bytes },
            width: 720,
            row_height: 14,
            title: "",
        }
    }

    /// A picture of about `rows` rows for `heap`: the bytes its walk
    /// covers, divided by `rows`, rounded up to a multiple of 16.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, BlockState, Inspect};
    /// struct Heap;
    /// impl Inspect for Heap {
    ///     fn inspect(&self, v: &mut dyn FnMut(BlockInfo)) {
    ///         v(BlockInfo { addr: 0, len: 64 * 1024, state: BlockState::Free });
    ///     }
    /// }
    /// assert_eq!(freespace_stats::SvgMap::fitted(&Heap, 32).row_bytes(), 2048);
    /// ```
    pub fn fitted<I: Inspect + ?Sized>(heap: &I, rows: usize) -> Self {
        let covered = freespace_core::HeapSummary::of(heap).total_bytes();
        let per_row = covered.div_ceil(rows.max(1));
        Self::new(per_row.div_ceil(16).saturating_mul(16).max(16))
    }
}

impl<'t> SvgMap<'t> {
    /// The same picture with a title (escaped for XML).
    ///
    /// ```
    /// let map = freespace_stats::SvgMap::new(64).title("best fit <after churn>");
    /// # let _ = map;
    /// ```
    pub const fn title<'u>(self, title: &'u str) -> SvgMap<'u> {
        SvgMap {
            row_bytes: self.row_bytes,
            width: self.width,
            row_height: self.row_height,
            title,
        }
    }

    /// The same picture with `px` pixels of map per row (at least 64).
    ///
    /// ```
    /// let map = freespace_stats::SvgMap::new(64).width(400);
    /// # let _ = map;
    /// ```
    pub const fn width(mut self, px: usize) -> Self {
        self.width = if px < 64 { 64 } else { px };
        self
    }

    /// Bytes per row.
    ///
    /// ```
    /// assert_eq!(freespace_stats::SvgMap::new(0).row_bytes(), 1);
    /// ```
    pub const fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Writes the SVG document for `heap` to `out`.
    ///
    /// ```
    /// use freespace_core::{BlockInfo, Inspect};
    /// struct Empty;
    /// impl Inspect for Empty { fn inspect(&self, _: &mut dyn FnMut(BlockInfo)) {} }
    /// let mut svg = String::new();
    /// freespace_stats::SvgMap::new(64).render(&Empty, &mut svg).unwrap();
    /// assert!(svg.contains("no blocks"));
    /// ```
    pub fn render<I, W>(&self, heap: &I, out: &mut W) -> fmt::Result
    where
        I: Inspect + ?Sized,
        W: fmt::Write + ?Sized,
    {
        let span = span(heap);
        let (lo, hi) = span.unwrap_or((0, 0));
        // Lines: one per row, one more before each run of skipped rows.
        let lines = match span {
            None => 1,
            Some(_) => Rows::new(heap, lo, self.row_bytes)
                .map(|r| 1 + usize::from(r.skipped > 0))
                .sum(),
        };
        let pitch = self.row_height as f64 + 4.0;
        let map_w = self.width as f64;
        let w = LEFT + map_w + RIGHT;
        let h = TOP + lines as f64 * pitch + 40.0;
        writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
        )?;
        writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
        out.write_str(r#"<text x="10" y="20" font-size="14" font-weight="bold">"#)?;
        escape(out, self.title)?;
        out.write_str("</text>\n")?;
        let f = Fragmentation::of(heap);
        writeln!(
            out,
            r#"<text x="10" y="40">{} B per row; free {} B in {} blocks, largest {} B; external fragmentation {:.2}; utilisation {:.2}</text>"#,
            self.row_bytes,
            f.free_bytes(),
            f.free_blocks(),
            f.largest_free(),
            f.external(),
            f.utilisation()
        )?;
        let mut y = TOP;
        if span.is_none() {
            writeln!(out, r#"<text x="{LEFT}" y="{}">no blocks</text>"#, y + 11.0)?;
        } else {
            let digits = offset_digits(lo, hi);
            let scale = map_w / self.row_bytes as f64;
            for row in Rows::new(heap, lo, self.row_bytes) {
                if row.skipped > 0 {
                    writeln!(
                        out,
                        r##"<text x="{LEFT}" y="{:.1}" fill="#666">~ {} B with no block</text>"##,
                        y + 11.0,
                        row.skipped.saturating_mul(self.row_bytes)
                    )?;
                    y += pitch;
                }
                writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-family="monospace" font-size="10">+{:#0d$x}</text>"#,
                    LEFT - 6.0,
                    y + self.row_height as f64 - 3.0,
                    row.start - lo,
                    d = digits + 2
                )?;
                writeln!(
                    out,
                    r#"<rect x="{LEFT}" y="{y:.1}" width="{map_w}" height="{}" fill="{}"/>"#,
                    self.row_height, SVG_COLOURS[3].1
                )?;
                self.draw_row(heap, row.start, y, scale, out)?;
                y += pitch;
            }
        }
        // Legend.
        let ly = y + 14.0;
        let mut x = LEFT;
        for (name, colour) in SVG_COLOURS {
            writeln!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}" stroke="#999" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">{name}</text>"##,
                ly - 10.0,
                x + 16.0,
                ly
            )?;
            x += 24.0 + 7.0 * name.len() as f64;
        }
        out.write_str("</svg>\n")
    }

    /// The blocks (or parts of blocks) in `start .. start + row_bytes`.
    fn draw_row<I, W>(&self, heap: &I, start: usize, y: f64, scale: f64, out: &mut W) -> fmt::Result
    where
        I: Inspect + ?Sized,
        W: fmt::Write + ?Sized,
    {
        let end = start.saturating_add(self.row_bytes);
        let mut result = Ok(());
        heap.inspect(&mut |b| {
            let from = b.addr.max(start);
            let to = b.addr.saturating_add(b.len).min(end);
            if from >= to || result.is_err() {
                return;
            }
            let x = LEFT + (from - start) as f64 * scale;
            let width = (to - from) as f64 * scale;
            let colour = SVG_COLOURS[kind(b.state)].1;
            // A white edge marks block boundaries where a block is wide
            // enough to keep some colour inside it.
            let edge = if width >= 3.0 {
                r##" stroke="#fff" stroke-width="0.5""##
            } else {
                ""
            };
            result = writeln!(
                out,
                r#"<rect x="{x:.2}" y="{y:.1}" width="{width:.2}" height="{}" fill="{colour}"{edge}/>"#,
                self.row_height
            );
        });
        result
    }
}

/// Writes `text` with XML's special characters escaped.
fn escape<W: fmt::Write + ?Sized>(out: &mut W, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '&' => out.write_str("&amp;")?,
            '<' => out.write_str("&lt;")?,
            '>' => out.write_str("&gt;")?,
            '"' => out.write_str("&quot;")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}
