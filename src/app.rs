//! The running exporter: config source, current config, store, scheduler, self metrics and
//! the pre-rendered /metrics body. Startup and reload go through one path, [`App::apply`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::config::{self, Config, ConfigError};
use crate::drivers::kit::session_store::SessionStore;
use crate::drivers::onboarding::LoginBoard;
use crate::drivers::{BuildContext, BuildError};
use crate::error::PollError;
use crate::metrics::exporter_self::StorageFile;
use crate::metrics::{Exposition, Renderer, SelfMetrics, SplitDemand, SplitPart, SplitUnavailable};
use crate::poll::discovery::{Discovery, Listed};
use crate::poll::{Plan, Scheduler, Shard};
use crate::reading::Reading;
use crate::store::journal::Journal;
use crate::store::{persist, Store};

/// Where the config comes from; reload reads it again.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// The demo fleet compiled into the binary (`config/demo.yaml`).
    Embedded,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(path) => config::load(path, crate::drivers::REGISTRY),
            ConfigSource::Embedded => {
                config::parse("embedded:config/demo.yaml", crate::cli::EMBEDDED_DEMO_CONFIG, crate::drivers::REGISTRY)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Embedded => "embedded config/demo.yaml".to_string(),
        }
    }
}

/// Why a reload (or the first load) failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The reload's thread panicked or the runtime is shutting down; the old config runs.
    #[error("the reload did not finish: {0}")]
    Aborted(String),
}

/// What `/probe` returns.
pub struct ProbeOutput {
    pub result: Result<Reading, PollError>,
    pub duration: Duration,
    pub notes: Vec<String>,
    /// The line's series after the poll, in text format.
    pub exposition: String,
}

impl ProbeOutput {
    /// The `debug=true` view: the poll's notes and outcome, never secrets.
    pub fn debug_text(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text.push_str(note);
            text.push('\n');
        }
        match &self.result {
            Ok(reading) => text.push_str(&format!("poll succeeded in {:?}: {reading:?}\n", self.duration)),
            Err(e) => text.push_str(&format!("poll failed in {:?} ({}): {e}\n", self.duration, e.reason())),
        }
        text.push('\n');
        text.push_str(&self.exposition);
        text
    }
}

pub struct App {
    source: ConfigSource,
    pub store: Arc<Store>,
    pub scheduler: Scheduler,
    pub self_metrics: Arc<SelfMetrics>,
    config: ArcSwap<Config>,
    exposition: ArcSwap<Exposition>,
    /// The part counts `/metrics?part=K&parts=N` asked for: the renderer builds their parts.
    splits: SplitDemand,
    clock: SharedClock,
    shard: Option<Shard>,
    /// `--storage.path`: where readings and counters persist across restarts.
    storage: Option<PathBuf>,
    /// Its journal: changes made durable before each render is published.
    journal: Option<Journal>,
    /// One snapshot save at a time (the minute's saver and shutdown may meet).
    save_lock: std::sync::Mutex<()>,
    /// Driver sessions (tokens) kept across reloads for accounts whose credentials stay.
    sessions: Arc<SessionStore>,
    /// Accounts waiting for a person to log in (`esim_account_needs_login`, the status page).
    pub logins: Arc<LoginBoard>,
    /// Lines of accounts with `discover:`, and the tasks that list them.
    discovery: Discovery,
    /// Where listing tasks report; a task of `start` applies what they found.
    listings: tokio::sync::mpsc::UnboundedSender<Listed>,
    /// One reload at a time: SIGHUP and POST /-/reload may race.
    reload_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    last_reload_ok: AtomicBool,
    /// Renders that cannot wait for the next tick (a reload changed the exporter's own series).
    kick: Arc<RenderKick>,
    /// Saved state is restored once, with the first plan (see `run_plan`).
    restore_pending: AtomicBool,
}

impl App {
    /// Loads the config and starts polling. Must run inside a tokio runtime.
    pub fn start(
        source: ConfigSource,
        clock: SharedClock,
        shard: Option<Shard>,
        storage: Option<PathBuf>,
    ) -> Result<Arc<App>, ApplyError> {
        let config = source.load()?;
        let store = Arc::new(Store::new());
        let self_metrics = Arc::new(SelfMetrics::new());
        self_metrics.set_shard(shard.map(|s| (s.index(), s.count())));
        let scheduler = Scheduler::start(store.clone(), clock.clone(), self_metrics.registry());
        let logins = crate::metrics::login_gauge::login_board(self_metrics.registry()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot register esim_account_needs_login; going on without it");
            LoginBoard::default()
        });
        let (listings, mut listed) = tokio::sync::mpsc::unbounded_channel();
        let app = Arc::new(App {
            source,
            store,
            scheduler,
            self_metrics,
            config: ArcSwap::from_pointee(Config::empty()),
            exposition: ArcSwap::from_pointee(Exposition::default()),
            splits: SplitDemand::default(),
            clock,
            shard,
            journal: storage.as_deref().map(Journal::beside),
            save_lock: std::sync::Mutex::new(()),
            storage,
            sessions: Arc::new(SessionStore::default()),
            logins: Arc::new(logins),
            discovery: Discovery::new(),
            listings,
            reload_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            last_reload_ok: AtomicBool::new(true),
            restore_pending: AtomicBool::new(true),
            kick: Arc::new(RenderKick::default()),
        });
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            while let Some(listing) = listed.recv().await {
                let Some(app) = weak.upgrade() else { return };
                app.discovery.listed(listing, |plan| app.run_plan(plan, false));
            }
        });
        app.apply(config)?;
        app.self_metrics.reload_succeeded(app.now());
        // The config's parse tree and the restore's buffers are gone: give their pages back.
        crate::heap::release_free_memory();
        Ok(app)
    }

    /// Restores saved readings and counters: the snapshot, then the journal's later changes.
    /// A snapshot that cannot be read is moved aside (never overwritten) and the exporter
    /// starts without it (the journal still replays onto the lines).
    fn restore_state(&self) {
        let (Some(path), Some(journal)) = (&self.storage, &self.journal) else { return };
        match persist::restore(&self.store, path) {
            Ok(lines) => tracing::info!(path = %path.display(), lines, "restored saved readings"),
            Err(e) => {
                let aside = path.with_extension(format!("corrupt-{}", crate::clock::unix_seconds(self.now()) as u64));
                let moved = std::fs::rename(path, &aside);
                tracing::warn!(error = %e, moved_to = %aside.display(), moved = moved.is_ok(), "cannot restore saved readings; starting without them");
            }
        }
        match journal.replay(&self.store) {
            Ok(r) if r.skipped > 0 => {
                tracing::warn!(path = %journal.path().display(), applied = r.applied, skipped = r.skipped, "skipped unreadable journal records (a torn last record is normal after a crash)")
            }
            Ok(r) => {
                tracing::debug!(path = %journal.path().display(), applied = r.applied, "replayed the storage journal")
            }
            Err(e) => tracing::warn!(error = %e, "cannot replay the storage journal"),
        }
        self.store.recount_accounts();
        journal.mark_current(&self.store);
    }

    /// Saves readings and counters to `--storage.path`, if set: rotates the journal, writes
    /// the snapshot, and drops the rotated journal once the snapshot holds what it held.
    pub fn save_state(&self) {
        let (Some(path), Some(journal)) = (&self.storage, &self.journal) else { return };
        let _one_at_a_time = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let saved = journal
            .rotate()
            .map_err(|e| format!("cannot rotate the journal {}: {e}", journal.path().display()))
            .and_then(|()| persist::save(&self.store, path).map_err(|e| e.to_string()))
            .and_then(|()| journal.snapshot_written().map_err(|e| format!("cannot remove the old journal: {e}")));
        if let Err(e) = &saved {
            tracing::error!(error = %e, "cannot save readings");
        }
        self.self_metrics.storage_saved(StorageFile::Snapshot, saved.is_ok(), self.now());
    }

    /// Makes every change since the last call durable (`--storage.path`), before a render that
    /// may show it is published. A failure is logged and counted, and the render is published
    /// anyway: a full disk must not stop the metrics.
    fn journal_changes(&self) {
        let Some(journal) = &self.journal else { return };
        match journal.append_changes(&self.store) {
            Ok(0) => {}
            Ok(_) => self.self_metrics.storage_saved(StorageFile::Journal, true, self.now()),
            Err(e) => {
                tracing::error!(error = %e, path = %journal.path().display(), "cannot append to the storage journal");
                self.self_metrics.storage_saved(StorageFile::Journal, false, self.now());
            }
        }
    }

    /// Saves state every `period` until `stop` fires (the final save is `shutdown`'s).
    pub fn spawn_saver(self: &Arc<Self>, period: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.storage.is_none() {
            return;
        }
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Some(app) = app.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || app.save_state()).await;
            }
        });
    }

    /// Makes `config` the running one: build drivers, then swap store lines, schedule and
    /// config. Nothing changes when building fails, so a bad reload leaves the old config.
    fn apply(&self, config: Config) -> Result<(), BuildError> {
        let cx = BuildContext {
            clock: self.clock.clone(),
            requests: self.self_metrics.clone(),
            sessions: self.sessions.clone(),
            logins: self.logins.clone(),
            token_dir: self.storage.as_deref().map(crate::drivers::kit::token_file::dir_beside),
        };
        // An account that waits for a person is not polled until its token file changes (the
        // driver's latch), so a reload may end its lock-out without risking failed logins.
        let relogged = config.accounts.iter().filter(|a| self.logins.is_waiting(&a.name)).map(|a| a.name.clone());
        let plan = Plan::build(&config, &cx, self.shard)?.with_relogged(relogged.collect());
        self.logins.retain(|account| config.accounts.iter().any(|a| a.name == account));
        for warning in &config.warnings {
            tracing::warn!(source = %self.source.describe(), "{warning}");
        }
        // Discovered lines join the configured ones; the scheduler also updates the store's
        // set of lines (before it sees the plan).
        let config = Arc::new(config);
        let lister = self.scheduler.lister();
        self.discovery
            .apply(config.clone(), plan, self.shard, &lister, &self.listings, |plan| self.run_plan(plan, true));
        self.config.store(config);
        Ok(())
    }

    /// Hands the scheduler a plan: a config's (`reload`: lock-outs end) or the same config's
    /// with other discovered lines.
    fn run_plan(&self, plan: Plan, reload: bool) {
        self.self_metrics.set_line_counts(plan.planned().iter().map(|p| &*p.line));
        if self.restore_pending.swap(false, Ordering::AcqRel) {
            // Saved readings go into the store before the scheduler sees the first plan: it
            // tells lines that have polled before (they keep their phase) from lines that
            // never did (they poll at once).
            self.store.apply_plan(&plan.lines());
            self.restore_state();
        }
        if reload {
            self.scheduler.apply(plan);
        } else {
            self.scheduler.update(plan);
        }
    }

    /// Re-reads the config source; on failure the old config keeps running.
    ///
    /// Reading, parsing and resolving the file and building the plan run on a blocking-pool
    /// thread, not on the runtime worker that took the request: at 10,000 lines that is
    /// 100–200 ms of CPU, during which every task queued on that worker (polls that already
    /// hold a request token, scrapes) would wait. (The soak's bursts over the rate were
    /// suspected of this and turned out to have another cause: docs/RELIABILITY.md.)
    pub async fn reload(self: &Arc<Self>) -> Result<(), ApplyError> {
        let _guard = self.reload_lock.lock().await;
        let app = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            // The new config is built while the old one runs: start from as little as possible.
            crate::heap::release_free_memory();
            let result = match app.source.load() {
                Ok(config) => app.apply(config).map_err(ApplyError::from),
                Err(e) => Err(ApplyError::from(e)),
            };
            // Whatever happened, a parse of the whole file was allocated and freed.
            crate::heap::release_free_memory();
            result
        })
        .await
        .unwrap_or_else(|join| Err(ApplyError::Aborted(join.to_string())));
        match &result {
            Ok(()) => {
                self.self_metrics.reload_succeeded(self.now());
                self.last_reload_ok.store(true, Ordering::Release);
                tracing::info!(source = %self.source.describe(), lines = self.config().lines.len(), "config reloaded");
            }
            Err(e) => {
                self.self_metrics.reload_failed();
                self.last_reload_ok.store(false, Ordering::Release);
                tracing::error!(source = %self.source.describe(), error = %e, "config reload failed; keeping the previous config");
            }
        }
        self.render_fresh().await;
        result
    }

    /// Renders now, after what just changed, and waits (a few seconds at most) until the
    /// exposition shows it: the next scrape after a reload sees its outcome and line counts.
    async fn render_fresh(&self) {
        if !self.is_ready() {
            return;
        }
        let wanted = self.kick.wanted.fetch_add(1, Ordering::AcqRel) + 1;
        self.kick.notify.notify_one();
        let mut rendered = self.kick.rendered.subscribe();
        let _ = tokio::time::timeout(RENDER_FRESH_WAIT, rendered.wait_for(|done| *done >= wanted)).await;
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn exposition(&self) -> Arc<Exposition> {
        self.exposition.load_full()
    }

    /// The exposition holding the parts of `split` (`/metrics?part=K&parts=N`). The first
    /// request for a part count has it rendered now and waits for that render (a few seconds
    /// at most); later ones find it in every render.
    pub async fn split_exposition(&self, split: SplitPart) -> Result<Arc<Exposition>, SplitUnavailable> {
        self.splits.note(split.parts(), std::time::Instant::now())?;
        let exposition = self.exposition();
        if exposition.has_split(split.parts()) {
            return Ok(exposition);
        }
        self.render_fresh().await;
        let exposition = self.exposition();
        if exposition.has_split(split.parts()) {
            Ok(exposition)
        } else {
            Err(SplitUnavailable::NotRendered(split.parts()))
        }
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok.load(Ordering::Acquire)
    }

    /// Renders the /metrics body now (also the renderer loop's step).
    pub fn render(&self, renderer: &mut Renderer) {
        let config = self.config();
        renderer.set_splits(&self.splits.current(std::time::Instant::now()));
        let exposition = renderer.render(&self.store, &config.global, self.now(), &self.self_metrics);
        // Persist before expose: the journal is read after the render, so it holds at least
        // every counter value the render shows (see store/journal.rs).
        self.journal_changes();
        self.exposition.store(Arc::new(exposition));
    }

    /// Renders once, then keeps re-rendering every `period` off the request path until the
    /// app is dropped or `stop` fires. Marks the app ready after the first render.
    ///
    /// Every render runs on one dedicated thread: the rendered chunks live long and are
    /// replaced a few at a time, and allocating and freeing them on the same thread keeps them
    /// in one malloc arena instead of spreading free memory over the arenas of whichever
    /// blocking-pool threads ran the renders (hundreds of MB at 100,000 lines).
    pub fn spawn_renderer(
        self: &Arc<Self>,
        period: Duration,
        gzip_level: u32,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let renders = RenderThread::start(Arc::downgrade(self), gzip_level);
        renders.render_now();
        self.ready.store(true, Ordering::Release);
        // The loop holds the app only weakly (through the render thread), so dropping the app
        // ends it; the kick is shared apart from the app for that reason.
        let kicked = self.kick.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = kicked.notify.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let wanted = kicked.wanted.load(Ordering::Acquire);
                if !renders.render().await {
                    return;
                }
                kicked.rendered.send_replace(wanted);
            }
        })
    }

    /// Polls one configured line now (for `/probe`); `None` if no line has that name.
    pub async fn probe(&self, line: &str, timeout: Option<Duration>) -> Option<ProbeOutput> {
        let line_timeout = self.store.get(line)?.line.timeout;
        let timeout = timeout.map_or(line_timeout, |t| t.min(line_timeout));
        let probe = self.scheduler.poll_now(line, timeout).await?;
        let config = self.config();
        let exposition = {
            let view = self.store.view();
            view.get(line)
                .map(|state| crate::metrics::render_line_text(state, &config.global, self.now()))
                .unwrap_or_default()
        };
        Some(ProbeOutput { result: probe.result, duration: probe.duration, notes: probe.notes, exposition })
    }

    /// Stops polling; in-flight polls finish within their timeout.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        self.scheduler.shutdown().await;
        self.save_state();
    }
}

/// Render requests between ticks: `wanted` counts them, `rendered` holds the count that the
/// last finished render started after, so a waiter knows its change is in the exposition.
#[derive(Default)]
struct RenderKick {
    wanted: AtomicU64,
    notify: tokio::sync::Notify,
    rendered: tokio::sync::watch::Sender<u64>,
}

/// How long a reload waits for the render that shows its outcome.
const RENDER_FRESH_WAIT: Duration = Duration::from_secs(5);

/// Renders that re-rendered at least this many lines (and a quarter of the fleet) are full
/// renders (startup, reload, a settings change), after which freed memory goes back to the OS.
const FULL_RENDER_LINES: usize = 4096;

/// Freed memory also goes back to the OS at most this often, from the render thread: a trim
/// takes milliseconds at 100,000 lines, and pages given back are faulted in again when reused.
const RELEASE_PERIOD: Duration = Duration::from_secs(10);

/// The thread that owns the [`Renderer`] and runs every render (see `App::spawn_renderer`).
/// Each request carries what to call with the outcome once the render is done.
struct RenderThread {
    requests: std::sync::mpsc::SyncSender<Done>,
}

/// Called with true after a render, false when the app is gone.
type Done = Box<dyn FnOnce(bool) + Send>;

impl RenderThread {
    fn start(app: std::sync::Weak<App>, gzip_level: u32) -> RenderThread {
        let (requests, incoming) = std::sync::mpsc::sync_channel::<Done>(1);
        let body = move || {
            let mut renderer = Renderer::new(gzip_level);
            let mut last_release = std::time::Instant::now();
            while let Ok(done) = incoming.recv() {
                let Some(app) = app.upgrade() else {
                    done(false);
                    return;
                };
                let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.render(&mut renderer)));
                if rendered.is_err() {
                    tracing::error!("metrics renderer panicked; restarting it");
                    renderer = Renderer::new(gzip_level);
                }
                let full = renderer.rerendered() >= FULL_RENDER_LINES.max(renderer.lines() / 4);
                if full || last_release.elapsed() >= RELEASE_PERIOD {
                    // After a startup or reload render its helper threads' transients are
                    // freed; otherwise the churn of replaced chunks and finished polls leaves
                    // free pages scattered over the arenas, which only a trim hands back.
                    crate::heap::release_free_memory();
                    last_release = std::time::Instant::now();
                }
                drop(app);
                done(true);
            }
        };
        if let Err(e) = std::thread::Builder::new().name("metrics-renderer".into()).spawn(body) {
            // Every request then finds the channel closed: /metrics keeps the empty body and
            // this error says why.
            tracing::error!(error = %e, "cannot start the metrics renderer thread");
        }
        RenderThread { requests }
    }

    /// Renders now and waits for it (startup, before the app is ready).
    fn render_now(&self) -> bool {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        let done: Done = Box::new(move |ok| {
            let _ = done.send(ok);
        });
        self.requests.send(done).is_ok() && finished.recv().unwrap_or(false)
    }

    /// Renders on the thread; false once the app is gone or the thread stopped.
    async fn render(&self) -> bool {
        let (done, finished) = tokio::sync::oneshot::channel();
        let done: Done = Box::new(move |ok| {
            let _ = done.send(ok);
        });
        // The previous render is done, so the one-slot queue is empty and this never waits.
        self.requests.send(done).is_ok() && finished.await.unwrap_or(false)
    }
}
