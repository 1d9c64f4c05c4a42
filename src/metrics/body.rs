//! A `/metrics` body as a list of shared pieces. The renderer keeps each block's samples
//! twice compressed and never as text (see `render.rs`): as a raw deflate segment, which gzip
//! sends as it is, and as an LZ4 block, which identity decompresses while it sends, a frame at
//! a time. At 100,000 lines the text is ≈ 285 MiB, the segments ≈ 15 MiB and the LZ4 blocks
//! ≈ 28 MiB. LZ4 rather than inflating the deflate segments: it decompresses at ≈ 9 GB/s
//! against zlib-rs's ≈ 3.5 GB/s, which keeps an identity scrape at the speed of a static file.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Decompressed bytes handed to the connection per frame: large enough that a frame costs few
/// syscalls, small enough that a slow client holds little memory.
const FRAME_BYTES: usize = 256 * 1024;

/// One piece of a body.
#[derive(Clone, Debug)]
pub(super) enum Piece {
    /// Sent as it is (headers, the exporter's own families, gzip framing and segments).
    Raw(Bytes),
    /// An LZ4 block sent as the `len` bytes of text it holds.
    Lz4 { block: Bytes, len: u32 },
}

impl Piece {
    /// Bytes this piece puts on the wire.
    fn len(&self) -> u64 {
        match self {
            Piece::Raw(bytes) => bytes.len() as u64,
            Piece::Lz4 { len, .. } => u64::from(*len),
        }
    }
}

/// A block did not decompress to the text it was made from: the renderer's own data is
/// corrupt, so the response is cut off rather than sent wrong.
#[derive(Debug, thiserror::Error)]
#[error("a pre-compressed /metrics block did not decompress to its {expected} bytes of text")]
pub struct CorruptBlock {
    expected: usize,
}

/// Decompresses `block` onto the end of `out`, checking that it holds exactly `len` bytes.
pub(super) fn decompress_into(block: &[u8], len: usize, out: &mut Vec<u8>) -> Result<(), CorruptBlock> {
    let start = out.len();
    out.resize(start + len, 0);
    match lz4_flex::block::decompress_into(block, &mut out[start..]) {
        Ok(written) if written == len => Ok(()),
        _ => {
            out.truncate(start);
            Err(CorruptBlock { expected: len })
        }
    }
}

/// `text` as an LZ4 block, in an allocation of its own size (the compressor's buffer is
/// sized for the worst case, ≈ 10× what this text needs, and blocks live long).
pub(super) fn compress(text: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&lz4_flex::block::compress(text))
}

/// A body: its pieces in order and the length they put on the wire.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    pieces: Arc<[Piece]>,
    len: u64,
}

impl Parts {
    pub(super) fn new(pieces: Vec<Piece>) -> Parts {
        let pieces: Vec<Piece> = pieces.into_iter().filter(|p| p.len() > 0).collect();
        let len = pieces.iter().map(Piece::len).sum();
        Parts { pieces: pieces.into(), len }
    }

    /// Length in bytes, as sent.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in one slice, decompressed: a fresh copy on every call (tests, tools; `/metrics`
    /// sends the pieces through [`PartsBody`] instead).
    pub fn flatten(&self) -> Result<Bytes, CorruptBlock> {
        let mut out = Vec::with_capacity(self.len as usize);
        let mut frames = Frames::new(self.clone());
        while let Some(frame) = frames.next_frame() {
            out.extend_from_slice(&frame?);
        }
        Ok(out.into())
    }
}

/// Frames ready ahead of the connection when decompressing on a thread of its own.
const FRAMES_AHEAD: usize = 4;

/// The frames of a [`Parts`]: raw pieces as they are (no copy), runs of LZ4 pieces
/// decompressed together into frames of about [`FRAME_BYTES`].
#[derive(Debug)]
struct Frames {
    parts: Parts,
    next: usize,
}

impl Frames {
    fn new(parts: Parts) -> Frames {
        Frames { parts, next: 0 }
    }

    fn next_frame(&mut self) -> Option<Result<Bytes, CorruptBlock>> {
        let pieces = &self.parts.pieces;
        // The run of LZ4 pieces from here that fits a frame (at least one piece).
        let (mut end, mut total) = (self.next, 0);
        while let Some(Piece::Lz4 { len, .. }) = pieces.get(end) {
            let len = *len as usize;
            if end > self.next && total + len > FRAME_BYTES {
                break;
            }
            total += len;
            end += 1;
        }
        if end == self.next {
            let Piece::Raw(bytes) = pieces.get(self.next)? else { unreachable!("an LZ4 piece starts a run") };
            self.next += 1;
            return Some(Ok(bytes.clone()));
        }
        let mut frame = Vec::with_capacity(total);
        for piece in &pieces[self.next..end] {
            if let Piece::Lz4 { block, len } = piece {
                if let Err(err) = decompress_into(block, *len as usize, &mut frame) {
                    self.next = pieces.len();
                    return Some(Err(err));
                }
            }
        }
        self.next = end;
        Some(Ok(frame.into()))
    }
}

#[derive(Debug)]
enum Source {
    /// Frames made as the connection asks for them.
    Inline(Frames),
    /// Frames made by a blocking thread, up to [`FRAMES_AHEAD`] in advance.
    Ahead(tokio::sync::mpsc::Receiver<Result<Bytes, CorruptBlock>>),
}

/// An HTTP body that sends a [`Parts`] with an exact length.
#[derive(Debug)]
pub struct PartsBody {
    source: Source,
    remaining: u64,
}

impl From<Parts> for PartsBody {
    /// Frames are made inline, on the connection's task.
    fn from(parts: Parts) -> PartsBody {
        let remaining = parts.len;
        PartsBody { source: Source::Inline(Frames::new(parts)), remaining }
    }
}

impl PartsBody {
    /// The body `/metrics` sends. When it has LZ4 pieces (identity) and a tokio runtime is
    /// running, a blocking thread decompresses a few frames ahead, so that decompressing
    /// (≈ 40 ms for 100,000 lines) overlaps with the kernel copying the previous frames to the
    /// socket instead of adding to it. A client that goes away drops the receiver, which stops the
    /// thread at its next frame.
    pub fn streaming(parts: Parts) -> PartsBody {
        let compressed = parts.pieces.iter().any(|p| matches!(p, Piece::Lz4 { .. }));
        let runtime = tokio::runtime::Handle::try_current();
        let (true, Ok(runtime)) = (compressed, runtime) else { return PartsBody::from(parts) };
        let remaining = parts.len;
        let (sender, receiver) = tokio::sync::mpsc::channel(FRAMES_AHEAD);
        runtime.spawn_blocking(move || {
            let mut frames = Frames::new(parts);
            while let Some(frame) = frames.next_frame() {
                if sender.blocking_send(frame).is_err() {
                    break;
                }
            }
        });
        PartsBody { source: Source::Ahead(receiver), remaining }
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = CorruptBlock;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, CorruptBlock>>> {
        let frame = match &mut self.source {
            Source::Inline(frames) => frames.next_frame(),
            Source::Ahead(receiver) => match receiver.poll_recv(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => return Poll::Pending,
            },
        };
        match &frame {
            Some(Ok(bytes)) => self.remaining = self.remaining.saturating_sub(bytes.len() as u64),
            Some(Err(err)) => tracing::error!(error = %err, "cutting off a /metrics response"),
            None => {}
        }
        Poll::Ready(frame.map(|f| f.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Inline(frames) => frames.next >= frames.parts.pieces.len(),
            Source::Ahead(_) => self.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    fn segment(text: &[u8]) -> Piece {
        Piece::Lz4 { block: compress(text), len: text.len() as u32 }
    }

    /// Every frame of `body`, joined.
    pub(crate) fn collect(mut body: PartsBody) -> Result<Vec<u8>, CorruptBlock> {
        let mut out = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let declared = body.size_hint().exact();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.extend_from_slice(frame?.data_ref().expect("data frames only"));
        }
        assert_eq!(declared, Some(out.len() as u64), "Content-Length matches the bytes sent");
        Ok(out)
    }

    #[test]
    fn sends_raw_and_compressed_pieces_in_order_in_bounded_frames() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("sample{{i=\"{i}\"}} {i}\n").into_bytes()).collect();
        let pieces = vec![
            Piece::Raw(Bytes::from_static(b"# HELP a\n")),
            segment(b"a 1\n"),
            segment(&big),
            segment(b"a 2\n"),
            Piece::Raw(Bytes::from_static(b"# EOF\n")),
        ];
        let parts = Parts::new(pieces);
        let mut expected = b"# HELP a\na 1\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"a 2\n# EOF\n");
        assert_eq!(parts.len(), expected.len() as u64);
        assert_eq!(parts.flatten().expect("decompresses").as_ref(), expected.as_slice());
        let mut body = PartsBody::from(parts.clone());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut largest = 0;
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            largest = largest.max(frame.expect("decompresses").data_ref().map_or(0, Bytes::len));
        }
        // One segment larger than a frame goes alone; runs never grow past FRAME_BYTES otherwise.
        assert_eq!(largest, big.len());
        assert_eq!(collect(PartsBody::from(parts)).expect("decompresses"), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streaming_decompresses_ahead_and_sends_the_same_bytes() {
        let pieces: Vec<Piece> =
            (0..2_000).map(|i| segment(format!("series_{i} {i}\n").repeat(50).as_bytes())).collect();
        let parts = Parts::new(pieces);
        let expected = parts.flatten().expect("decompresses");
        let mut body = PartsBody::streaming(parts);
        assert!(matches!(body.source, Source::Ahead(_)));
        let mut sent = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            sent.extend_from_slice(frame.expect("decompresses").data_ref().expect("data"));
        }
        assert!(body.is_end_stream());
        assert_eq!(sent, expected.as_ref());
        // Without LZ4 pieces (gzip) there is nothing to do ahead.
        assert!(matches!(PartsBody::streaming(Parts::new(vec![Piece::Raw(expected)])).source, Source::Inline(_)));
    }

    #[test]
    fn small_segments_share_a_frame() {
        let parts = Parts::new((0..100).map(|i| segment(format!("x {i}\n").as_bytes())).collect());
        let mut body = PartsBody::from(parts);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut frames = 0;
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            frame.expect("decompresses");
            frames += 1;
        }
        assert_eq!(frames, 1);
    }

    #[test]
    fn a_corrupt_segment_cuts_the_body_off_instead_of_sending_wrong_bytes() {
        let Piece::Lz4 { block: good, .. } = segment(b"hello hello hello\n") else { unreachable!() };
        let wrong_len = Piece::Lz4 { block: good.clone(), len: 30 };
        assert!(collect(PartsBody::from(Parts::new(vec![wrong_len]))).is_err());
        let short_len = Piece::Lz4 { block: good.clone(), len: 5 };
        assert!(Parts::new(vec![short_len]).flatten().is_err());
        let garbage = Piece::Lz4 { block: Bytes::from_static(b"\xff\xff\xff"), len: 6 };
        assert!(Parts::new(vec![garbage]).flatten().is_err());
        let truncated = Piece::Lz4 { block: good.slice(..good.len() - 3), len: 18 };
        assert!(Parts::new(vec![truncated]).flatten().is_err());
    }
}
