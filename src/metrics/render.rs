//! The `/metrics` body, pre-rendered and pre-compressed in pieces (the kube-state-metrics
//! layout). Lines are taken in blocks of [`BLOCK_LINES`](super::chunk::BLOCK_LINES) in store order; for every block and
//! per-line family the renderer keeps a *chunk*: that family's sample text for those lines,
//! deflated on its own (a raw deflate segment that starts with an empty window and ends
//! byte-aligned, so segments concatenate into one valid stream: pigz's trick) and as an LZ4
//! block. The text itself is not kept: it is ≈ 20× the segments. A body is a list of pieces
//! (`body.rs`): family headers, chunks, the registry's families. Gzip hands out the segments
//! inside one gzip member whose CRC-32 is combined from the segments' CRCs; identity
//! decompresses the LZ4 blocks while it sends. A render re-renders only lines that changed or
//! went stale and recompresses only chunks whose text changed; scrapes never render or
//! compress. Split bodies (`?part=K&parts=N`) keep chunks of their own, built from these
//! (`render_split.rs`). See docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc};
use prometheus::proto::MetricFamily;

use super::account_polls;
use super::body::{CorruptBlock, Parts, Piece};
use super::catalog::{self, LINE_FAMILY_COUNT};
use super::chunk::{join_chunks, BlockTools, Chunk, FamilyParts, Segment, Slot, BLOCK_LINES};
use super::encode::{write_header, Header};
use super::exporter_self::SelfMetrics;
use super::line::{self, Fragments, Scratch, Settings};
use super::negotiate::Format;
use super::proto;
use super::render_split::Split;
use super::split::SplitPart;
use crate::config::Global;
use crate::store::{LineState, Store, StoreView};

/// Default gzip level. Exposition text is very repetitive; with the zlib-rs backend level 2
/// compresses about as well as 3 to 6 and is the fastest (level 1 switches to a quicker
/// algorithm that compresses much less). Figures from `cargo bench --bench render`.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;

/// Blocks whose lines are rendered under one hold of the store's read lock, so that a full
/// render neither holds the lock long nor keeps every line's fragments in memory at once.
const WINDOW_BLOCKS: usize = 8;

/// gzip member header: no name, no mtime, unknown OS (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A final, empty, fixed-Huffman deflate block: ends the stream of segments.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// A small text kept as text too: family headers and the tail of a body.
#[derive(Debug)]
struct Labelled {
    text: Bytes,
    segment: Segment,
}

impl Labelled {
    fn new(text: Vec<u8>, compress: &mut Compress) -> Labelled {
        let segment = Segment::new(&text, compress);
        Labelled { text: text.into(), segment }
    }
}

/// One rendering of `/metrics` in both formats, cheap to clone and to serve.
#[derive(Clone, Debug)]
pub struct Exposition {
    text: Bodies,
    openmetrics: Bodies,
    /// Every part of each part count being rendered, in ascending order of the count.
    splits: Arc<[SplitBodies]>,
}

#[derive(Clone, Debug)]
struct Bodies {
    identity: Parts,
    gzip: Parts,
}

impl Bodies {
    fn get(&self, gzip: bool) -> &Parts {
        if gzip {
            &self.gzip
        } else {
            &self.identity
        }
    }
}

/// The parts of one part count: `text[k]`, `openmetrics[k]` for part `k`.
#[derive(Debug)]
struct SplitBodies {
    parts: u32,
    text: Vec<Bodies>,
    openmetrics: Vec<Bodies>,
}

impl Exposition {
    fn bodies(&self, format: Format) -> &Bodies {
        match format {
            Format::Text => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        }
    }

    /// The body for a negotiated format, gzipped or not, as pieces to send one after another.
    pub fn parts(&self, format: Format, gzip: bool) -> &Parts {
        self.bodies(format).get(gzip)
    }

    /// One part of a split body, like [`Exposition::parts`]; `None` while parts of that count
    /// are not rendered (see [`Renderer::set_splits`]). One part is the whole body.
    pub fn part(&self, split: SplitPart, format: Format, gzip: bool) -> Option<&Parts> {
        if split.parts() == 1 {
            return Some(self.parts(format, gzip));
        }
        let bodies = self.splits.iter().find(|s| s.parts == split.parts())?;
        let bodies = match format {
            Format::Text => &bodies.text,
            Format::OpenMetrics => &bodies.openmetrics,
        };
        bodies.get(split.part() as usize).map(|b| b.get(gzip))
    }

    /// Whether the parts of `parts` parts are rendered.
    pub fn has_split(&self, parts: u32) -> bool {
        parts == 1 || self.splits.iter().any(|s| s.parts == parts)
    }

    /// The body for a negotiated format, gzipped or not, in one slice (a copy; tests and
    /// tools). An error means the renderer's own segments are corrupt.
    pub fn body(&self, format: Format, gzip: bool) -> Result<Bytes, CorruptBlock> {
        self.parts(format, gzip).flatten()
    }
}

impl Default for Exposition {
    /// Valid empty bodies, for the time before the first render.
    fn default() -> Self {
        let mut compress = Compress::new(Compression::new(DEFAULT_GZIP_LEVEL), false);
        let eof = Labelled::new(b"# EOF\n".to_vec(), &mut compress);
        let empty = Crc::new();
        Exposition {
            text: Bodies { identity: Parts::default(), gzip: gzip_parts(Vec::new(), &empty, 0) },
            openmetrics: Bodies {
                identity: Parts::new(vec![Piece::Raw(eof.text.clone())]),
                gzip: gzip_parts(vec![eof.segment.deflated.clone()], &eof.segment.crc, eof.text.len() as u64),
            },
            splits: Arc::new([]),
        }
    }
}

/// The gzip member around deflate segments whose text has `crc` and `len`.
fn gzip_parts(segments: Vec<Bytes>, crc: &Crc, len: u64) -> Parts {
    let mut trailer = Vec::with_capacity(10);
    trailer.extend_from_slice(&FINAL_BLOCK);
    trailer.extend_from_slice(&crc.sum().to_le_bytes());
    trailer.extend_from_slice(&(len as u32).to_le_bytes());
    let mut pieces = Vec::with_capacity(segments.len() + 2);
    pieces.push(Piece::Raw(Bytes::from_static(&GZIP_HEADER)));
    pieces.extend(segments.into_iter().map(Piece::Raw));
    pieces.push(Piece::Raw(trailer.into()));
    Parts::new(pieces)
}

/// One line's series in text format 0.0.4, with HELP and TYPE (the body of `/probe`).
pub fn render_line_text(state: &LineState, global: &Global, now: SystemTime) -> String {
    let settings = Settings { stale_after: global.stale_after, expose_msisdn: global.expose_msisdn };
    let fragments = line::render(state, settings, now, &mut Scratch::default());
    let mut out = Vec::with_capacity(4 * fragments.size() + 2048);
    for (index, family) in catalog::line_families().iter().enumerate() {
        if fragments.has(index) {
            write_header(&mut out, Format::Text, &Header::of(family));
            fragments.write_family(index, family.name, &mut out);
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Renders `/metrics` incrementally. Owned by one task (the background renderer).
pub struct Renderer {
    gzip_level: u32,
    settings: Option<Settings>,
    /// Store generation and time of the last scan over the lines.
    generation: Option<u64>,
    scanned_at: Option<SystemTime>,
    /// The earliest instant after which a fresh reading turns stale.
    next_stale: Option<SystemTime>,
    /// Store order: what each line's samples were rendered from.
    slots: Vec<Slot>,
    /// `blocks[b][family]`: lines `b * BLOCK_LINES ..` of the slots.
    blocks: Vec<Vec<Chunk>>,
    families: Vec<FamilyParts>,
    /// Family headers, `[format][family]`, compressed once.
    headers: [Vec<Labelled>; 2],
    /// Families whose chunks changed since they were last joined.
    dirty: [bool; LINE_FAMILY_COUNT],
    tools: BlockTools,
    rerendered: usize,
    /// Scans so far: `Slot::changed_at` counts in them.
    scans: u32,
    /// The part counts being rendered besides the whole body (`set_splits`).
    splits: Vec<Split>,
    /// `# EOF`, the tail of every OpenMetrics part but part 0.
    eof: Labelled,
}

impl Renderer {
    /// `gzip_level` is flate2's 0 (store) to 9 (best); values above 9 are taken as 9.
    pub fn new(gzip_level: u32) -> Renderer {
        let gzip_level = gzip_level.min(9);
        let mut compress = Compress::new(Compression::new(gzip_level), false);
        let headers = [Format::Text, Format::OpenMetrics].map(|format| {
            catalog::line_families()
                .iter()
                .map(|family| {
                    let mut text = Vec::new();
                    write_header(&mut text, format, &Header::of(family));
                    Labelled::new(text, &mut compress)
                })
                .collect()
        });
        let eof = Labelled::new(b"# EOF\n".to_vec(), &mut compress);
        Renderer {
            gzip_level,
            settings: None,
            generation: None,
            scanned_at: None,
            next_stale: None,
            slots: Vec::new(),
            blocks: Vec::new(),
            families: (0..LINE_FAMILY_COUNT).map(|_| FamilyParts::default()).collect(),
            headers,
            dirty: [false; LINE_FAMILY_COUNT],
            tools: BlockTools::new(gzip_level),
            rerendered: 0,
            scans: 0,
            splits: Vec::new(),
            eof,
        }
    }

    /// The part counts to render split bodies of from now on, besides the whole body (counts
    /// of 1 and repeats are ignored). A count already rendered keeps its chunks; a new one is
    /// built in full by the next render; a count left out is dropped with its chunks.
    pub fn set_splits(&mut self, counts: &[u32]) {
        self.splits.retain(|split| counts.contains(&split.parts()));
        for &parts in counts {
            if parts > 1 && !self.splits.iter().any(|s| s.parts() == parts) {
                self.splits.push(Split::new(parts));
            }
        }
        self.splits.sort_by_key(Split::parts);
    }

    /// Brings the chunks up to date with `store` at `now` and assembles both bodies.
    pub fn render(
        &mut self,
        store: &Store,
        global: &Global,
        now: SystemTime,
        self_metrics: &SelfMetrics,
    ) -> Exposition {
        self.update(store, global, now);
        for split in &mut self.splits {
            split.sync(&self.slots, &self.blocks, self.scans, self.gzip_level, &mut self.tools);
        }
        let mut families = self_metrics.registry().gather();
        // Read after the scan and before the journal (see `account_polls`); small: a few
        // series per account, in part 0 with the exporter's own.
        let accounts = store.view().account_polls().clone();
        families.extend(account_polls::families(&accounts));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let tails = [Format::Text, Format::OpenMetrics].map(|format| self.tail(format, &families));
        let [text_headers, openmetrics_headers] = &self.headers;
        let splits = self
            .splits
            .iter()
            .map(|split| {
                let bodies = |headers: &[Labelled], tail: &Labelled, rest: Option<&Labelled>| -> Vec<Bodies> {
                    (0..split.parts() as usize)
                        .map(|k| assemble(split.families(k), headers, if k == 0 { Some(tail) } else { rest }))
                        .collect()
                };
                SplitBodies {
                    parts: split.parts(),
                    text: bodies(text_headers, &tails[0], None),
                    openmetrics: bodies(openmetrics_headers, &tails[1], Some(&self.eof)),
                }
            })
            .collect();
        Exposition {
            text: assemble(&self.families, text_headers, Some(&tails[0])),
            openmetrics: assemble(&self.families, openmetrics_headers, Some(&tails[1])),
            splits,
        }
    }

    /// How many lines the last `render` re-rendered (0 when it reused every chunk).
    pub fn rerendered(&self) -> usize {
        self.rerendered
    }

    /// Lines in the last render.
    pub fn lines(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held by the chunks (their deflate segments, LZ4 blocks and line offsets).
    pub fn cache_size(&self) -> usize {
        self.blocks.iter().flatten().map(Chunk::size).sum::<usize>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.splits.iter().map(Split::size).sum::<usize>()
    }

    /// gzip level in use.
    pub fn gzip_level(&self) -> u32 {
        self.gzip_level
    }

    fn update(&mut self, store: &Store, global: &Global, now: SystemTime) {
        self.rerendered = 0;
        let settings = Settings { stale_after: global.stale_after, expose_msisdn: global.expose_msisdn };
        if self.settings != Some(settings) {
            self.slots.clear();
            self.blocks.clear();
            self.families.iter_mut().for_each(|f| *f = FamilyParts::default());
            self.dirty = [false; LINE_FAMILY_COUNT];
            self.settings = Some(settings);
            self.generation = None;
        }
        loop {
            // Read before the lines: a write landing in between is seen now and scanned again
            // next time, never missed.
            let generation = store.generation();
            let unchanged = self.generation == Some(generation)
                && self.scanned_at.is_some_and(|at| now >= at)
                && self.next_stale.is_none_or(|at| now <= at);
            if unchanged {
                return;
            }
            if self.scan(store, settings, now) {
                self.generation = Some(generation);
                self.scanned_at = Some(now);
                return;
            }
            // A reload changed the set of lines mid-scan: scan again over the new one, so that
            // no body ever mixes the two.
            self.generation = None;
        }
    }

    /// Re-renders lines whose config, version or freshness changed, rebuilds the chunks
    /// whose text changed, and follows the store's order. Works through the lines a window of
    /// blocks at a time, taking the store's read lock once per window. False when the set of
    /// lines changed while it worked.
    fn scan(&mut self, store: &Store, settings: Settings, now: SystemTime) -> bool {
        let (lines, layout) = {
            let view = store.view();
            (view.len(), view.layout())
        };
        self.next_stale = None;
        self.scans = self.scans.wrapping_add(1).max(1);
        let blocks = lines.div_ceil(BLOCK_LINES);
        if self.blocks.len() > blocks {
            for block in self.blocks.drain(blocks..) {
                mark_nonempty(&block, &mut self.dirty);
            }
        }
        self.slots.truncate(lines);
        for window in (0..blocks).step_by(WINDOW_BLOCKS) {
            let window = window..(window + WINDOW_BLOCKS).min(blocks);
            // The window is read under one hold of the lock: which lines changed, then their
            // rendering and the new chunks.
            let view = store.view();
            if view.layout() != layout {
                return false;
            }
            let mut jobs: Vec<BlockJob> = Vec::new();
            for b in window {
                let first = b * BLOCK_LINES;
                let count = BLOCK_LINES.min(lines - first);
                let mut changed = Vec::new();
                for j in 0..count {
                    let p = first + j;
                    let Some(state) = view.at(p) else { return false };
                    let fresh = self.track_freshness(state, settings, now);
                    let same = self.slots.get(p).is_some_and(|s| {
                        Arc::ptr_eq(&s.line, &state.line) && s.version == state.version && s.fresh == fresh
                    });
                    if same {
                        continue;
                    }
                    changed.push(j);
                    let slot = Slot { line: state.line.clone(), version: state.version, fresh, changed_at: self.scans };
                    if p < self.slots.len() {
                        self.slots[p] = slot;
                    } else {
                        self.slots.push(slot);
                    }
                }
                self.rerendered += changed.len();
                let old_count = self.blocks.get(b).map_or(0, |chunks| chunks[0].ends.len());
                if !changed.is_empty() || old_count != count {
                    jobs.push(BlockJob { block: b, count, changed, built: None });
                }
            }
            self.build(&mut jobs, &view, settings, now);
            drop(view);
            for job in jobs {
                let Some(chunks) = job.built else { continue };
                if job.block == self.blocks.len() {
                    self.blocks.push(Vec::new());
                }
                let old = std::mem::replace(&mut self.blocks[job.block], Vec::with_capacity(LINE_FAMILY_COUNT));
                for (family, chunk) in chunks.into_iter().enumerate() {
                    match chunk {
                        Some(mut chunk) => {
                            self.dirty[family] = true;
                            chunk.built_at = self.scans;
                            self.blocks[job.block].push(chunk);
                        }
                        None => self.blocks[job.block].push(old.get(family).map(Chunk::share).unwrap_or_default()),
                    }
                }
            }
        }
        for family in 0..LINE_FAMILY_COUNT {
            if std::mem::take(&mut self.dirty[family]) {
                self.join_family(family);
            }
        }
        true
    }

    /// Whether `state`'s reading is fresh at `now`, noting when it turns stale.
    fn track_freshness(&mut self, state: &LineState, settings: Settings, now: SystemTime) -> bool {
        let fresh = state.fresh_reading(now, settings.stale_after).is_some();
        if fresh {
            let stale_at = state.last_success.and_then(|at| at.checked_add(settings.stale_after));
            self.next_stale = match (self.next_stale, stale_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        fresh
    }

    /// Builds the chunks of `jobs`, on several threads when there is much to do (a full
    /// render).
    fn build(&mut self, jobs: &mut [BlockJob], view: &StoreView<'_>, settings: Settings, now: SystemTime) {
        let changed: usize = jobs.iter().map(|j| j.changed.len()).sum();
        let cx = BuildContext { blocks: &self.blocks, view, settings, now };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        if threads < 2 || changed < 4 * BLOCK_LINES {
            for job in jobs.iter_mut() {
                job.built = Some(cx.build_block(job, &mut self.tools));
            }
            return;
        }
        let level = self.gzip_level;
        let per_thread = jobs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            for part in jobs.chunks_mut(per_thread) {
                let cx = &cx;
                scope.spawn(move || {
                    let mut tools = BlockTools::new(level);
                    for job in part {
                        job.built = Some(cx.build_block(job, &mut tools));
                    }
                });
            }
        });
        // Chunks live long and are freed by this thread: copied here, their LZ4 blocks come
        // from this thread's malloc arena (glibc returns freed memory to the arena it came
        // from), as their segments do once `join_family` copies them into one run.
        for chunk in jobs.iter_mut().filter_map(|j| j.built.as_mut()).flatten().flatten() {
            chunk.segment.lz4 = Bytes::copy_from_slice(&chunk.segment.lz4);
        }
    }

    /// Rejoins family `index` over every block: its text pieces and one deflate run.
    fn join_family(&mut self, index: usize) {
        self.families[index] = join_chunks(self.blocks.iter_mut().map(|block| &mut block[index]).collect());
    }

    /// What follows the per-line families in `format`: the registry's families, then `# EOF`
    /// in OpenMetrics.
    fn tail(&mut self, format: Format, registry: &[MetricFamily]) -> Labelled {
        let mut tail = Vec::new();
        proto::write_families(&mut tail, format, registry);
        if format == Format::OpenMetrics {
            tail.extend_from_slice(b"# EOF\n");
        }
        Labelled::new(tail, &mut self.tools.compress)
    }
}

/// Both bodies of one format: per-line families, each contiguous (header, then every block's
/// chunk), then `tail` (the registry's families, `# EOF`).
fn assemble(families: &[FamilyParts], headers: &[Labelled], tail: Option<&Labelled>) -> Bodies {
    let mut identity = Vec::new();
    let mut segments = Vec::new();
    let mut crc = Crc::new();
    let mut len = 0;
    for (family, header) in families.iter().zip(headers) {
        if family.len == 0 {
            continue;
        }
        identity.push(Piece::Raw(header.text.clone()));
        identity.extend(family.pieces.iter().cloned());
        segments.push(header.segment.deflated.clone());
        segments.push(family.deflated.clone());
        crc.combine(&header.segment.crc);
        crc.combine(&family.crc);
        len += header.text.len() as u64 + family.len;
    }
    if let Some(tail) = tail {
        identity.push(Piece::Raw(tail.text.clone()));
        segments.push(tail.segment.deflated.clone());
        crc.combine(&tail.segment.crc);
        len += tail.text.len() as u64;
    }
    Bodies { identity: Parts::new(identity), gzip: gzip_parts(segments, &crc, len) }
}

/// A block whose lines changed: which, then the new chunks (`None` for a family whose text
/// stayed the same).
struct BlockJob {
    block: usize,
    count: usize,
    /// Lines of the block (0-based within it) to re-render; empty when it only shrank or grew.
    changed: Vec<usize>,
    built: Option<Vec<Option<Chunk>>>,
}

/// What building a block reads.
struct BuildContext<'a> {
    blocks: &'a [Vec<Chunk>],
    view: &'a StoreView<'a>,
    settings: Settings,
    now: SystemTime,
}

impl BuildContext<'_> {
    /// New chunks for `job` (`None` for a family whose text stayed the same).
    fn build_block(&self, job: &BlockJob, tools: &mut BlockTools) -> Vec<Option<Chunk>> {
        match self.try_build_block(job, &job.changed, true, tools) {
            Ok(chunks) => chunks,
            Err(err) => {
                // Cannot happen short of memory corruption; rendering every line of the
                // block again needs nothing of the old chunks.
                tracing::error!(error = %err, block = job.block, "re-rendering a block whose samples are unreadable");
                let every: Vec<usize> = (0..job.count).collect();
                self.try_build_block(job, &every, false, tools).unwrap_or_default()
            }
        }
    }

    /// Re-rendered lines' samples come from their fragments; every other line's are copied
    /// from the block's old chunk, decompressed (only when `use_old`).
    fn try_build_block(
        &self,
        job: &BlockJob,
        changed: &[usize],
        use_old: bool,
        tools: &mut BlockTools,
    ) -> Result<Vec<Option<Chunk>>, CorruptBlock> {
        let first = job.block * BLOCK_LINES;
        let mut rendered: Vec<Option<Fragments>> = Vec::new();
        rendered.resize_with(job.count, || None);
        for &j in changed {
            if let Some(state) = self.view.at(first + j) {
                rendered[j] = Some(line::render(state, self.settings, self.now, &mut tools.scratch));
            }
        }
        let old = self.blocks.get(job.block).filter(|_| use_old);
        let mut out = Vec::with_capacity(LINE_FAMILY_COUNT);
        for (index, family) in catalog::line_families().iter().enumerate() {
            let previous = old.and_then(|chunks| chunks.get(index));
            tools.old_text.clear();
            if let Some(previous) = previous {
                previous.segment.text_into(&mut tools.old_text)?;
            }
            let mut text = Vec::with_capacity(tools.old_text.len() + 256);
            let mut ends = Vec::with_capacity(job.count);
            for (j, fragments) in rendered.iter().enumerate() {
                match (fragments, previous) {
                    (Some(fragments), _) => fragments.write_family(index, family.name, &mut text),
                    (None, Some(previous)) => {
                        let start = j.checked_sub(1).and_then(|i| previous.ends.get(i)).map_or(0, |&e| e as usize);
                        let end = previous.ends.get(j).map_or(start, |&e| e as usize);
                        text.extend_from_slice(tools.old_text.get(start..end).unwrap_or_default());
                    }
                    (None, None) => {}
                }
                ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            }
            let same = previous.is_some_and(|p| tools.old_text == text && *p.ends == *ends);
            out.push((!same).then(|| Chunk {
                segment: Segment::new(&text, &mut tools.compress),
                ends: ends.into(),
                built_at: 0,
            }));
        }
        Ok(out)
    }
}

/// Notes the families that `chunks` (a block being dropped) had samples in.
fn mark_nonempty(chunks: &[Chunk], changed: &mut [bool; LINE_FAMILY_COUNT]) {
    for (index, chunk) in chunks.iter().enumerate() {
        if !chunk.is_empty() {
            changed[index] = true;
        }
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").field("gzip_level", &self.gzip_level).field("lines", &self.slots.len()).finish()
    }
}
