//! The `/metrics` body: a cache of pre-rendered fragments per line and per family (the
//! kube-state-metrics layout), re-rendered only for lines that changed or went stale, then
//! assembled family by family in catalogue order, followed by the registry's families, in
//! both formats, streamed through gzip.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use prometheus::proto::MetricFamily;

use super::catalog;
use super::encode::{write_header, Header};
use super::exporter_self::SelfMetrics;
use super::line::{self, Fragments, Scratch, Settings};
use super::negotiate::Format;
use super::proto;
use crate::config::{Global, Line};
use crate::store::{LineState, Store, StoreView};

/// Default gzip level. Exposition text is very repetitive; with the zlib-rs backend level 2
/// compresses about 30x, as well as 3 to 6 within 3%, and is the fastest (level 1 switches to
/// a quicker algorithm that only reaches 18x). Figures from `cargo bench --bench render`.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;

/// Uncompressed text is fed to the gzip encoder in chunks of this size.
const CHUNK: usize = 256 * 1024;

/// One rendering of `/metrics`, cheap to clone. Bodies are held gzipped only: a fleet of
/// 100,000 lines renders to about 280 MiB of text but 9 MiB of gzip, and Prometheus always
/// accepts gzip. A client that does not gets the body decompressed once per rendering, on
/// its first request.
#[derive(Clone, Debug)]
pub struct Exposition {
    text_gzip: Bytes,
    openmetrics_gzip: Bytes,
    text: OnceLock<Bytes>,
    openmetrics: OnceLock<Bytes>,
}

impl Exposition {
    fn from_gzip(text_gzip: Bytes, openmetrics_gzip: Bytes) -> Exposition {
        Exposition { text_gzip, openmetrics_gzip, text: OnceLock::new(), openmetrics: OnceLock::new() }
    }

    /// The body for a negotiated format, gzipped or not.
    pub fn body(&self, format: Format, gzip: bool) -> Bytes {
        let (compressed, plain) = match format {
            Format::Text => (&self.text_gzip, &self.text),
            Format::OpenMetrics => (&self.openmetrics_gzip, &self.openmetrics),
        };
        if gzip {
            compressed.clone()
        } else {
            plain.get_or_init(|| gunzip(compressed)).clone()
        }
    }
}

impl Default for Exposition {
    /// Valid empty bodies, for the time before the first render.
    fn default() -> Self {
        let text = GzSink::new(DEFAULT_GZIP_LEVEL, 0);
        let mut openmetrics = GzSink::new(DEFAULT_GZIP_LEVEL, 0);
        openmetrics.buf.extend_from_slice(b"# EOF\n");
        Exposition::from_gzip(text.finish(), openmetrics.finish())
    }
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

/// Exposition text on its way into a gzip encoder: writers append to `buf`, which goes to
/// the encoder whenever it fills, so no uncompressed body is ever held whole.
struct GzSink {
    buf: Vec<u8>,
    encoder: GzEncoder<Vec<u8>>,
}

impl GzSink {
    fn new(level: u32, expected_size: usize) -> GzSink {
        GzSink {
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            encoder: GzEncoder::new(Vec::with_capacity(expected_size), Compression::new(level)),
        }
    }

    fn flush_if_full(&mut self) {
        if self.buf.len() >= CHUNK {
            self.encoder.write_all(&self.buf).expect(INFALLIBLE);
            self.buf.clear();
        }
    }

    fn finish(mut self) -> Bytes {
        self.encoder.write_all(&self.buf).expect(INFALLIBLE);
        self.encoder.finish().expect(INFALLIBLE).into()
    }
}

const INFALLIBLE: &str = "compressing into a Vec cannot fail";

fn gunzip(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() * 16);
    match flate2::read::GzDecoder::new(data).read_to_end(&mut out) {
        Ok(_) => out.into(),
        Err(e) => {
            // Only our own encoder wrote `data`; this would be a bug, not bad input.
            tracing::error!(error = %e, "cannot decompress the rendered body");
            Bytes::new()
        }
    }
}

/// A line's cached fragments and what they were rendered from.
struct Entry {
    line: Arc<Line>,
    version: u64,
    fresh: bool,
    fragments: Fragments,
}

/// Renders `/metrics` incrementally. Owned by one task (the background renderer).
pub struct Renderer {
    gzip_level: u32,
    /// Store order.
    entries: Vec<Entry>,
    settings: Option<Settings>,
    /// Store generation and time of the last scan over the lines.
    generation: Option<u64>,
    scanned_at: Option<SystemTime>,
    /// The earliest instant after which a fresh reading turns stale.
    next_stale: Option<SystemTime>,
    scratch: Scratch,
    rerendered: usize,
    /// Size of the last gzipped body plus a margin, to size the next one's buffer.
    expected_gzip_size: usize,
}

impl Renderer {
    /// `gzip_level` is flate2's 0 (store) to 9 (best); values above 9 are taken as 9.
    pub fn new(gzip_level: u32) -> Renderer {
        Renderer {
            gzip_level: gzip_level.min(9),
            entries: Vec::new(),
            settings: None,
            generation: None,
            scanned_at: None,
            next_stale: None,
            scratch: Scratch::default(),
            rerendered: 0,
            expected_gzip_size: 0,
        }
    }

    /// Brings the cache up to date with `store` at `now` and assembles every body. The two
    /// formats are assembled and compressed on two threads (most of the time is gzip).
    pub fn render(
        &mut self,
        store: &Store,
        global: &Global,
        now: SystemTime,
        self_metrics: &SelfMetrics,
    ) -> Exposition {
        self.update(store, global, now);
        let families = self_metrics.registry().gather();
        let (level, expected) = (self.gzip_level, self.expected_gzip_size);
        let entries = &self.entries;
        let (text, openmetrics) = std::thread::scope(|scope| {
            let openmetrics = scope.spawn(|| assemble(Format::OpenMetrics, entries, &families, level, expected));
            let text = assemble(Format::Text, entries, &families, level, expected);
            // A panic in the other thread is re-raised here, as if it had happened on this one.
            let openmetrics = openmetrics.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (text, openmetrics)
        });
        self.expected_gzip_size = text.len() + text.len() / 8;
        Exposition::from_gzip(text, openmetrics)
    }

    /// How many lines the last `render` re-rendered (0 when it reused every fragment).
    pub fn rerendered(&self) -> usize {
        self.rerendered
    }

    /// Bytes held by the fragment cache.
    pub fn cache_size(&self) -> usize {
        self.entries.iter().map(|e| e.fragments.size() + std::mem::size_of::<Entry>()).sum()
    }

    fn update(&mut self, store: &Store, global: &Global, now: SystemTime) {
        self.rerendered = 0;
        let settings = Settings { stale_after: global.stale_after, expose_msisdn: global.expose_msisdn };
        if self.settings != Some(settings) {
            self.entries.clear();
            self.settings = Some(settings);
            self.generation = None;
        }
        // Read before the view: a write landing in between is seen now and scanned again next
        // time, never missed.
        let generation = store.generation();
        let unchanged = self.generation == Some(generation)
            && self.scanned_at.is_some_and(|at| now >= at)
            && self.next_stale.is_none_or(|at| now <= at);
        if unchanged {
            return;
        }
        self.scan(&store.view(), settings, now);
        self.generation = Some(generation);
        self.scanned_at = Some(now);
    }

    /// Re-renders lines whose version or freshness changed, keeps the others' fragments,
    /// drops lines that left the store, and follows the store's order.
    fn scan(&mut self, view: &StoreView<'_>, settings: Settings, now: SystemTime) {
        let mut old = std::mem::take(&mut self.entries).into_iter();
        // Built only once the order differs from the cached one (a reload added or removed
        // lines); until then entries are matched by position.
        let mut by_name: Option<HashMap<String, Entry>> = None;
        let mut entries = Vec::with_capacity(view.len());
        self.next_stale = None;
        for state in view.lines() {
            let name = &state.line.name;
            let cached = match &mut by_name {
                None if old.as_slice().first().is_some_and(|e| e.line.name == *name) => old.next(),
                None => {
                    let mut map: HashMap<String, Entry> = old.by_ref().map(|e| (e.line.name.clone(), e)).collect();
                    let found = map.remove(name);
                    by_name = Some(map);
                    found
                }
                Some(map) => map.remove(name),
            };
            let fresh = state.fresh_reading(now, settings.stale_after).is_some();
            if fresh {
                let stale_at = state.last_success.and_then(|at| at.checked_add(settings.stale_after));
                self.next_stale = match (self.next_stale, stale_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let entry = match cached {
                Some(e) if e.version == state.version && e.fresh == fresh => e,
                _ => {
                    self.rerendered += 1;
                    Entry {
                        line: state.line.clone(),
                        version: state.version,
                        fresh,
                        fragments: line::render(state, settings, now, &mut self.scratch),
                    }
                }
            };
            entries.push(entry);
        }
        self.entries = entries;
    }
}

/// The gzipped body in `format`: per-line families, each contiguous (header, then every
/// line's samples in store order), then the registry's families, then `# EOF` in OpenMetrics.
fn assemble(format: Format, entries: &[Entry], families: &[MetricFamily], level: u32, expected_size: usize) -> Bytes {
    let mut sink = GzSink::new(level, expected_size);
    for (index, family) in catalog::line_families().iter().enumerate() {
        if !entries.iter().any(|e| e.fragments.has(index)) {
            continue;
        }
        write_header(&mut sink.buf, format, &Header::of(family));
        for entry in entries {
            entry.fragments.write_family(index, family.name, &mut sink.buf);
            sink.flush_if_full();
        }
    }
    proto::write_families(&mut sink.buf, format, families);
    if format == Format::OpenMetrics {
        sink.buf.extend_from_slice(b"# EOF\n");
    }
    sink.finish()
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").field("gzip_level", &self.gzip_level).field("lines", &self.entries.len()).finish()
    }
}
