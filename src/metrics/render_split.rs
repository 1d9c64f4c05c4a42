//! The parts of a split body (`/metrics?part=K&parts=N`, `split.rs`), kept beside the whole
//! body's chunks and built from them.
//!
//! Why this shape: a part is a subsequence of the whole body's lines, but the whole body's
//! chunks interleave every part's lines (store order fixes the whole body byte for byte) and a
//! compressed chunk cannot be cut by line. So each part count that scrapes ask for gets chunks
//! of its own, laid out like the whole body's: each part's lines in store order,
//! [`BLOCK_LINES`] to a block, per family a deflate segment and an LZ4 block, so that a part
//! scrape hands out pre-built pieces exactly as a whole scrape does, and compresses as well.
//! Their text is not rendered again: it is copied out of the whole body's chunks (their LZ4
//! blocks and line ends are the per-line cache; decompressing LZ4 costs a fraction of
//! deflating). A part block is rebuilt only when it holds other lines than before, or for the
//! families whose whole-body chunk was rebuilt around one of its re-rendered lines: the whole
//! body already found which families' text changed, so parts never decompress their own old
//! text to compare. The price is one more compression of the changed text and about the whole
//! body's chunk memory per part count in use (at most `MAX_SPLITS`, dropped when unused);
//! nobody scraping parts pays nothing.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::body::CorruptBlock;
use super::catalog::LINE_FAMILY_COUNT;
use super::chunk::{join_chunks, BlockTools, Chunk, FamilyParts, Segment, Slot, BLOCK_LINES};
use crate::poll::spread::part_of;

/// Lines to gather from which a sync compresses on several threads (as a full render does).
const THREADED_LINES: usize = 4 * BLOCK_LINES;

/// One bit per per-line family.
type Families = u32;
const ALL_FAMILIES: Families = (1 << LINE_FAMILY_COUNT) - 1;
const _: () = assert!(LINE_FAMILY_COUNT <= Families::BITS as usize);

fn has(families: Families, family: usize) -> bool {
    families & (1 << family) != 0
}

/// The chunks of one part count.
pub(super) struct Split {
    parts: u32,
    /// The part of each line, in store order (parts ≤ `MAX_PARTS` fit a byte).
    assign: Vec<u8>,
    /// `blocks[k]`: part `k`'s lines in store order, a block at a time.
    blocks: Vec<Vec<PartBlock>>,
    /// `families[k][family]`: the joined chunks of part `k`.
    families: Vec<Vec<FamilyParts>>,
    /// The renderer's scan this split was last brought up to date with (0: never).
    synced: u32,
}

/// Up to [`BLOCK_LINES`] lines of one part and a chunk per family.
#[derive(Debug)]
struct PartBlock {
    /// Store positions of the lines.
    lines: Box<[u32]>,
    chunks: Vec<Chunk>,
}

impl PartBlock {
    fn new(lines: Box<[u32]>) -> PartBlock {
        PartBlock { lines, chunks: (0..LINE_FAMILY_COUNT).map(|_| Chunk::default()).collect() }
    }
}

/// What one sync rebuilds, shared read-only by its threads.
struct Plan<'a> {
    whole: &'a [Vec<Chunk>],
    assign: &'a [u8],
    /// For each line, the index of its block within its part.
    block_of: &'a [u32],
    /// `rebuild[k][i]`: the families to rebuild of block `i` of part `k`.
    rebuild: &'a [Vec<Families>],
    /// For each whole block, the families whose text a rebuilt part block needs from it.
    needed: &'a [Families],
}

/// A new chunk for block `block` of part `part`, family `family`.
struct Rebuilt {
    part: usize,
    block: usize,
    family: usize,
    chunk: Chunk,
}

/// A part block's text being gathered.
struct Open {
    block: usize,
    text: Vec<u8>,
}

impl Split {
    pub(super) fn new(parts: u32) -> Split {
        let families = (0..parts).map(|_| (0..LINE_FAMILY_COUNT).map(|_| FamilyParts::default()).collect());
        Split {
            parts,
            assign: Vec::new(),
            blocks: (0..parts).map(|_| Vec::new()).collect(),
            families: families.collect(),
            synced: 0,
        }
    }

    pub(super) fn parts(&self) -> u32 {
        self.parts
    }

    /// Part `k`'s joined families, in catalogue order.
    pub(super) fn families(&self, k: usize) -> &[FamilyParts] {
        self.families.get(k).map_or(&[], Vec::as_slice)
    }

    /// Bytes held by the chunks and line lists.
    pub(super) fn size(&self) -> usize {
        let blocks = self.blocks.iter().flatten();
        self.assign.len()
            + blocks.map(|b| 4 * b.lines.len() + b.chunks.iter().map(Chunk::size).sum::<usize>()).sum::<usize>()
    }

    /// Brings the parts up to date with the whole body as scan `scan` left it (`slots` and
    /// `whole`, its blocks). Does nothing when no scan ran since the last sync.
    pub(super) fn sync(&mut self, slots: &[Slot], whole: &[Vec<Chunk>], scan: u32, level: u32, tools: &mut BlockTools) {
        if self.synced == scan && self.synced != 0 {
            return;
        }
        let first = self.synced == 0;
        let changed: Vec<bool> = slots.iter().map(|s| first || s.changed_at > self.synced).collect();
        // The families whose text changed in each whole block since the last sync (a missing
        // chunk counts as changed: never miss text).
        let rebuilt_since = |block: &Vec<Chunk>| -> Families {
            (0..LINE_FAMILY_COUNT)
                .filter(|&f| first || block.get(f).is_none_or(|c| c.built_at > self.synced))
                .fold(0, |mask, f| mask | 1 << f)
        };
        let fresh: Vec<Families> = whole.iter().map(rebuilt_since).collect();
        self.assign_parts(slots, &changed);
        let (block_of, members) = self.members();
        let old_counts: Vec<usize> = self.blocks.iter().map(Vec::len).collect();
        let rebuild = self.relayout(members, &changed, &fresh);
        let mut needed = vec![0; whole.len()];
        for (p, (&k, &i)) in self.assign.iter().zip(&block_of).enumerate() {
            needed[p / BLOCK_LINES] |= rebuild[k as usize][i as usize];
        }
        let plan = Plan { whole, assign: &self.assign, block_of: &block_of, rebuild: &rebuild, needed: &needed };
        let work = rebuild.iter().flatten().filter(|&&r| r != 0).count() * BLOCK_LINES;
        let rebuilt = plan.run(work, level, tools);
        let mut dirty: Vec<Families> = old_counts
            .iter()
            .zip(&self.blocks)
            .map(|(&old, new)| if old == new.len() { 0 } else { ALL_FAMILIES })
            .collect();
        for Rebuilt { part, block, family, chunk } in rebuilt {
            dirty[part] |= 1 << family;
            self.blocks[part][block].chunks[family] = chunk;
        }
        for (k, &families) in dirty.iter().enumerate() {
            for family in (0..LINE_FAMILY_COUNT).filter(|&f| has(families, f)) {
                let chunks = self.blocks[k].iter_mut().map(|b| &mut b.chunks[family]).collect();
                self.families[k][family] = join_chunks(chunks);
            }
        }
        self.synced = scan;
    }

    /// Follows the store: the part of every line that is new or changed (a changed slot may
    /// hold another line than before).
    fn assign_parts(&mut self, slots: &[Slot], changed: &[bool]) {
        self.assign.truncate(slots.len());
        for (p, slot) in slots.iter().enumerate() {
            if p < self.assign.len() && !changed[p] {
                continue;
            }
            let part = u8::try_from(part_of(&slot.line.name, self.parts)).unwrap_or(0);
            match self.assign.get_mut(p) {
                Some(at) => *at = part,
                None => self.assign.push(part),
            }
        }
    }

    /// Each part's lines in store order, and for each line the index of its block in its part.
    fn members(&self) -> (Vec<u32>, Vec<Vec<u32>>) {
        let mut members: Vec<Vec<u32>> = (0..self.parts).map(|_| Vec::new()).collect();
        let mut block_of = Vec::with_capacity(self.assign.len());
        for (p, &k) in self.assign.iter().enumerate() {
            let lines = &mut members[k as usize];
            block_of.push(u32::try_from(lines.len() / BLOCK_LINES).unwrap_or(u32::MAX));
            lines.push(u32::try_from(p).unwrap_or(u32::MAX));
        }
        (block_of, members)
    }

    /// Cuts each part's lines into blocks, keeping the old chunks of every block position
    /// (reused where their text stays), and says which families of which blocks to rebuild:
    /// every family of a block with other lines than before; else, for each re-rendered line,
    /// the families whose whole-body chunk was rebuilt around it (`fresh`, by whole block).
    fn relayout(&mut self, members: Vec<Vec<u32>>, changed: &[bool], fresh: &[Families]) -> Vec<Vec<Families>> {
        let mut rebuild = Vec::with_capacity(members.len());
        for (blocks, lines) in self.blocks.iter_mut().zip(members) {
            let mut old = std::mem::take(blocks).into_iter();
            let mut flags = Vec::new();
            for lines in lines.chunks(BLOCK_LINES) {
                let previous = old.next();
                let moved = previous.as_ref().is_none_or(|b| *b.lines != *lines);
                let touched = lines
                    .iter()
                    .filter(|&&p| changed[p as usize])
                    .fold(0, |mask, &p| mask | fresh.get(p as usize / BLOCK_LINES).copied().unwrap_or(ALL_FAMILIES));
                flags.push(if moved { ALL_FAMILIES } else { touched });
                blocks.push(match previous {
                    Some(PartBlock { chunks, .. }) => PartBlock { lines: lines.into(), chunks },
                    None => PartBlock::new(lines.into()),
                });
            }
            rebuild.push(flags);
        }
        rebuild
    }
}

impl Plan<'_> {
    /// The new chunks of every block to rebuild, family by family: one family at a time, on
    /// several threads when there is much to do.
    fn run(&self, work: usize, level: u32, tools: &mut BlockTools) -> Vec<Rebuilt> {
        if work == 0 {
            return Vec::new();
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        if threads < 2 || work < THREADED_LINES {
            return (0..LINE_FAMILY_COUNT).flat_map(|family| self.family_or_log(family, tools)).collect();
        }
        let next = AtomicUsize::new(0);
        let mut rebuilt: Vec<Rebuilt> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut tools = BlockTools::new(level);
                        let mut out = Vec::new();
                        // Families differ much in size: each thread takes the next one left.
                        loop {
                            let family = next.fetch_add(1, Ordering::Relaxed);
                            if family >= LINE_FAMILY_COUNT {
                                return out;
                            }
                            out.extend(self.family_or_log(family, &mut tools));
                        }
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        // Chunks live long and are freed by the render thread: copied here, their LZ4 blocks
        // come from its malloc arena, as their segments do once joined (see `Renderer::build`).
        for r in &mut rebuilt {
            r.chunk.segment.lz4 = Bytes::copy_from_slice(&r.chunk.segment.lz4);
        }
        rebuilt
    }

    fn family_or_log(&self, family: usize, tools: &mut BlockTools) -> Vec<Rebuilt> {
        self.family(family, tools).unwrap_or_else(|err| {
            // Cannot happen short of memory corruption; the parts keep their old chunks of this
            // family until the whole body's are rebuilt.
            tracing::error!(error = %err, family, "a /metrics block is unreadable; split parts keep their old text");
            Vec::new()
        })
    }

    /// Walks the whole body's chunks of `family` in store order, handing each line's text to
    /// its part's open block; a block is finished when its part's next line belongs to the
    /// next block, or at the end.
    fn family(&self, family: usize, tools: &mut BlockTools) -> Result<Vec<Rebuilt>, CorruptBlock> {
        let mut open: Vec<Option<Open>> = (0..self.rebuild.len()).map(|_| None).collect();
        let mut out = Vec::new();
        let mut whole_text = Vec::new();
        for (b, block) in self.whole.iter().enumerate() {
            let Some(chunk) = block.get(family).filter(|_| has(self.needed[b], family)) else { continue };
            whole_text.clear();
            chunk.segment.text_into(&mut whole_text)?;
            let mut start = 0;
            for (j, &end) in chunk.ends.iter().enumerate() {
                let (p, end) = (b * BLOCK_LINES + j, end as usize);
                let line = whole_text.get(start..end).unwrap_or_default();
                start = end;
                let (Some(&k), Some(&i)) = (self.assign.get(p), self.block_of.get(p)) else { continue };
                let (k, i) = (k as usize, i as usize);
                if !has(self.rebuild[k][i], family) {
                    continue;
                }
                if open[k].as_ref().is_some_and(|o| o.block != i) {
                    out.extend(finish(k, family, open[k].take(), tools));
                }
                open[k].get_or_insert_with(|| Open { block: i, text: Vec::new() }).text.extend_from_slice(line);
            }
        }
        for (k, block) in open.into_iter().enumerate() {
            out.extend(finish(k, family, block, tools));
        }
        Ok(out)
    }
}

/// The chunk of a gathered block. Not compared with the block's old text: a block is gathered
/// only for families whose text changed around one of its lines, so it nearly always differs,
/// and the same text compresses to the same bytes anyway.
fn finish(part: usize, family: usize, open: Option<Open>, tools: &mut BlockTools) -> Option<Rebuilt> {
    let Open { block, text } = open?;
    let segment = if text.is_empty() { Segment::default() } else { Segment::new(&text, &mut tools.compress) };
    Some(Rebuilt { part, block, family, chunk: Chunk { segment, ends: Box::default(), built_at: 0 } })
}
