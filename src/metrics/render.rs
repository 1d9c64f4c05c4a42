//! The `/metrics` body: a cache of pre-rendered fragments per line and per family (the
//! kube-state-metrics layout), re-rendered only for lines that changed or went stale, then
//! assembled family by family in catalogue order, followed by the registry's families, in
//! both formats, plain and gzipped.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::catalog;
use super::encode::{write_header, Header};
use super::exporter_self::SelfMetrics;
use super::line::{self, Fragments, Scratch, Settings};
use super::negotiate::Format;
use super::proto;
use crate::config::{Global, Line};
use crate::store::{LineState, Store, StoreView};

/// Default gzip level. Exposition text is very repetitive: level 1 already gets most of the
/// ratio of higher levels at a fraction of their time (see `docs/PERFORMANCE.md`).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// One rendering of `/metrics` in every form a scrape may ask for; cloning is cheap.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub text: Bytes,
    pub text_gzip: Bytes,
    pub openmetrics: Bytes,
    pub openmetrics_gzip: Bytes,
}

impl Exposition {
    /// The body for a negotiated format, gzipped or not.
    pub fn body(&self, format: Format, gzip: bool) -> Bytes {
        match (format, gzip) {
            (Format::Text, false) => self.text.clone(),
            (Format::Text, true) => self.text_gzip.clone(),
            (Format::OpenMetrics, false) => self.openmetrics.clone(),
            (Format::OpenMetrics, true) => self.openmetrics_gzip.clone(),
        }
    }
}

impl Default for Exposition {
    /// Valid empty bodies, for the time before the first render.
    fn default() -> Self {
        let openmetrics = b"# EOF\n".to_vec();
        Exposition {
            text: Bytes::new(),
            text_gzip: gzip(&[], DEFAULT_GZIP_LEVEL).into(),
            openmetrics_gzip: gzip(&openmetrics, DEFAULT_GZIP_LEVEL).into(),
            openmetrics: openmetrics.into(),
        }
    }
}

/// One line's series in text format 0.0.4, with HELP and TYPE (the body of `/probe`).
pub fn render_line_text(state: &LineState, global: &Global, now: SystemTime) -> String {
    let settings = Settings { stale_after: global.stale_after, expose_msisdn: global.expose_msisdn };
    let fragments = line::render(state, settings, now, &mut Scratch::default());
    let mut out = Vec::with_capacity(fragments.size() + 2048);
    write_line_families(&mut out, Format::Text, std::slice::from_ref(&fragments));
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends every per-line family that has a series: its header, then each line's fragment.
fn write_line_families<'a>(out: &mut Vec<u8>, format: Format, lines: impl IntoIterator<Item = &'a Fragments> + Clone) {
    for (index, family) in catalog::line_families().iter().enumerate() {
        let before = out.len();
        write_header(out, format, &Header::of(family));
        let after_header = out.len();
        for fragments in lines.clone() {
            out.extend_from_slice(fragments.family(index));
        }
        if out.len() == after_header {
            out.truncate(before);
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
        }
    }

    /// Brings the cache up to date with `store` at `now` and assembles every body.
    pub fn render(
        &mut self,
        store: &Store,
        global: &Global,
        now: SystemTime,
        self_metrics: &SelfMetrics,
    ) -> Exposition {
        self.update(store, global, now);
        let families = self_metrics.registry().gather();
        let text = self.assemble(Format::Text, &families);
        let openmetrics = self.assemble(Format::OpenMetrics, &families);
        Exposition {
            text_gzip: gzip(&text, self.gzip_level).into(),
            openmetrics_gzip: gzip(&openmetrics, self.gzip_level).into(),
            text: text.into(),
            openmetrics: openmetrics.into(),
        }
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
        let mut by_name: Option<std::collections::HashMap<String, Entry>> = None;
        let mut entries = Vec::with_capacity(view.len());
        self.next_stale = None;
        for state in view.lines() {
            let name = &state.line.name;
            let cached = match &mut by_name {
                None if old.as_slice().first().is_some_and(|e| e.line.name == *name) => old.next(),
                None => {
                    let mut map: std::collections::HashMap<String, Entry> =
                        old.by_ref().map(|e| (e.line.name.clone(), e)).collect();
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

    /// The whole body in `format`: per-line families (a header only when a line has a series
    /// there), then the registry's families, then `# EOF` for OpenMetrics.
    fn assemble(&self, format: Format, families: &[prometheus::proto::MetricFamily]) -> Vec<u8> {
        let lines_size: usize = self.entries.iter().map(|e| e.fragments.size()).sum();
        let mut out = Vec::with_capacity(lines_size + 64 * 1024);
        write_line_families(&mut out, format, self.entries.iter().map(|e| &e.fragments));
        proto::write_families(&mut out, format, families);
        if format == Format::OpenMetrics {
            out.extend_from_slice(b"# EOF\n");
        }
        out
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").field("gzip_level", &self.gzip_level).field("lines", &self.entries.len()).finish()
    }
}

/// Gzips a body. Compressing into a `Vec` has no IO that could fail.
fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 8 + 64), Compression::new(level));
    encoder.write_all(data).expect("compressing into a Vec cannot fail");
    encoder.finish().expect("compressing into a Vec cannot fail")
}
