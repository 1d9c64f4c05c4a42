//! The pieces a body is made of, shared by the whole body's renderer (`render.rs`) and the
//! split bodies built from it (`render_split.rs`): a [`Segment`] (a text kept only as a raw
//! deflate segment and an LZ4 block), a [`Chunk`] (one family's samples for one block of
//! lines), a family's chunks joined ([`FamilyParts`]), what a line was rendered from
//! ([`Slot`]) and one thread's compression tools ([`BlockTools`]). Both renderers stand on
//! this floor, so neither imports the other's internals.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};

use super::body::{self, CorruptBlock, Piece};
use super::line::Scratch;
use crate::config::Line;

/// Lines per block. Smaller blocks recompress less text when a few lines change (a poll
/// touches about 8 of the 17 per-line families of one line) but compress a little worse,
/// since every segment starts with an empty window; 64 lines make chunks of 5–60 KiB.
pub const BLOCK_LINES: usize = 256;

/// A text kept only compressed: its deflate segment (gzip) and LZ4 block (identity), with the
/// text's length and CRC-32.
#[derive(Debug, Default)]
pub(super) struct Segment {
    pub(super) deflated: Bytes,
    pub(super) lz4: Bytes,
    pub(super) len: u32,
    pub(super) crc: Crc,
}

impl Segment {
    pub(super) fn new(text: &[u8], compress: &mut Compress) -> Segment {
        let deflated = deflate_segment(compress, text);
        let mut crc = Crc::new();
        crc.update(text);
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        Segment { deflated: deflated.into(), lz4: body::compress(text), len, crc }
    }

    pub(super) fn share(&self) -> Segment {
        Segment { deflated: self.deflated.clone(), lz4: self.lz4.clone(), len: self.len, crc: crc_copy(&self.crc) }
    }

    /// The piece that sends this segment's text (identity).
    pub(super) fn piece(&self) -> Piece {
        Piece::Lz4 { block: self.lz4.clone(), len: self.len }
    }

    /// Appends the text to `out`.
    pub(super) fn text_into(&self, out: &mut Vec<u8>) -> Result<(), CorruptBlock> {
        if self.len == 0 {
            // An empty segment (`Segment::default`) has no LZ4 block to decompress.
            return Ok(());
        }
        body::decompress_into(&self.lz4, self.len as usize, out)
    }
}

pub(super) fn crc_copy(crc: &Crc) -> Crc {
    let mut copy = Crc::new();
    copy.combine(crc);
    copy
}

/// `text` as a raw deflate segment: compressed from an empty window (the compressor is reset)
/// and closed with a sync flush, so that it ends on a byte boundary without a final block.
pub(super) fn deflate_segment(compress: &mut Compress, text: &[u8]) -> Vec<u8> {
    compress.reset();
    let mut out = Vec::with_capacity(text.len() / 8 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        // Only our own buffers go in; zlib-rs fails only on misuse of the stream.
        if compress.compress_vec(&text[consumed..], &mut out, FlushCompress::Sync).is_err() {
            tracing::error!("deflate failed on the exposition text");
            return Vec::new();
        }
        // Done once the input is in and the flush fitted (zlib's avail_out != 0 rule).
        if compress.total_in() as usize == text.len() && out.len() < out.capacity() {
            out.shrink_to_fit();
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// One family's samples for one block of lines.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub(super) segment: Segment,
    /// Where each line's samples end in the segment's text (empty in the chunks of a split,
    /// which are always rebuilt from the whole body's).
    pub(super) ends: Box<[u32]>,
    /// The scan that built it (`Renderer::scans`): tells splits which text may have changed.
    pub(super) built_at: u32,
}

impl Chunk {
    pub(super) fn share(&self) -> Chunk {
        Chunk { segment: self.segment.share(), ends: self.ends.clone(), built_at: self.built_at }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.segment.len == 0
    }

    pub(super) fn size(&self) -> usize {
        self.segment.deflated.len() + self.segment.lz4.len() + 4 * self.ends.len() + std::mem::size_of::<Self>()
    }
}

/// One per-line family over every block, as the bodies use it.
#[derive(Debug, Default)]
pub(super) struct FamilyParts {
    /// Non-empty chunks' segments, in block order, as identity pieces.
    pub(super) pieces: Vec<Piece>,
    /// Every block's segment, concatenated (chunks hold slices of it).
    pub(super) deflated: Bytes,
    pub(super) crc: Crc,
    pub(super) len: u64,
}

/// What a line's chunks were rendered from.
pub(super) struct Slot {
    pub(super) line: Arc<Line>,
    pub(super) version: u64,
    pub(super) fresh: bool,
    /// The scan that last changed it (`Renderer::scans`): tells splits which lines moved.
    pub(super) changed_at: u32,
}

/// What building blocks works with: one set per thread.
pub(super) struct BlockTools {
    pub(super) compress: Compress,
    pub(super) scratch: Scratch,
    /// The old chunk's text, decompressed while a block is rebuilt.
    pub(super) old_text: Vec<u8>,
}

impl BlockTools {
    pub(super) fn new(gzip_level: u32) -> BlockTools {
        BlockTools {
            compress: Compress::new(Compression::new(gzip_level), false),
            scratch: Scratch::default(),
            old_text: Vec::new(),
        }
    }
}

/// Joins `chunks` (one family's, in block order) into the family's text pieces and one
/// deflate run.
pub(super) fn join_chunks(mut chunks: Vec<&mut Chunk>) -> FamilyParts {
    let deflated_len = chunks.iter().map(|c| c.segment.deflated.len()).sum();
    let mut deflated = Vec::with_capacity(deflated_len);
    let mut crc = Crc::new();
    let mut len = 0;
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        deflated.extend_from_slice(&chunk.segment.deflated);
        crc.combine(&chunk.segment.crc);
        len += u64::from(chunk.segment.len);
    }
    let deflated = Bytes::from(deflated);
    // Chunks keep slices of the joined run rather than segments of their own: the segments
    // built by a full render's helper threads are freed here, and everything long-lived comes
    // from this thread's malloc arena.
    let mut pieces = Vec::new();
    let mut at = 0;
    for chunk in chunks.iter_mut().filter(|c| !c.is_empty()) {
        let end = at + chunk.segment.deflated.len();
        chunk.segment.deflated = deflated.slice(at..end);
        pieces.push(chunk.segment.piece());
        at = end;
    }
    FamilyParts { pieces, deflated, crc, len }
}
