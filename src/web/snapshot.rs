//! The rows `/` and `/api/v1/lines` read, shared between requests. A copy of the store is
//! reused while nothing changed; while requests come and polls land, a refresher task rebuilds
//! it at most once per [`REBUILD_INTERVAL`] (like `/metrics` at its default render interval)
//! with the sort orders pages used, so requests find a copy ready instead of waiting for a
//! build of the fleet. Only the first request after a quiet spell, a reload or a reading
//! turning stale waits, and concurrent requests then wait for that one copy. Each sort order
//! is computed once per copy, so a page costs a walk over a sorted index, not a sort.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::store::Store;

use super::api::{self, LinesQuery, Row, SortKey, Summary};

/// The oldest a copy may be while polls keep changing the store: a 100,000-line fleet records
/// a poll every few milliseconds, and a copy per request would cost every request a fleet.
pub const REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// A copy is forgotten this long after it was built, used or not: it holds the fleet's lines,
/// which after a reload would otherwise outlive their config while nobody looks.
pub const KEEP_IDLE: Duration = Duration::from_secs(30);

/// One copy of every line, with what is derived from all of them.
pub struct Snapshot {
    rows: Vec<Row>,
    summary: Summary,
    /// The store's generation before the copy: a later write makes it out of date.
    generation: u64,
    /// The config it was made with (weak: a reload must free the old config).
    config: Weak<Config>,
    built: tokio::time::Instant,
    /// When the first reading it shows as fresh turns stale; the rows differ from then on.
    fresh_until: Option<SystemTime>,
    /// Row indices per sort key and direction, computed on first use.
    orders: [OnceLock<Vec<u32>>; 2 * SortKey::ALL.len()],
}

impl Snapshot {
    /// Copies the store (in short read locks, see `api::snapshot`); call it off the runtime.
    pub fn build(store: &Store, config: &Arc<Config>, now: SystemTime) -> Snapshot {
        let generation = store.generation();
        let rows = api::snapshot(store, &config.global, now);
        let summary = api::summarize(&rows, now);
        let stale_after = config.global.stale_after;
        let fresh_until =
            rows.iter().filter(|r| r.reading.is_some()).filter_map(|r| r.last_success).min().map(|t| t + stale_after);
        Snapshot {
            rows,
            summary,
            generation,
            config: Arc::downgrade(config),
            built: tokio::time::Instant::now(),
            fresh_until,
            orders: Default::default(),
        }
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The fleet's summary as of `now` (only its timestamp is per request).
    pub fn summary(&self, now: SystemTime) -> Summary {
        Summary { generated_at: crate::clock::unix_seconds(now), ..self.summary.clone() }
    }

    /// Whether this copy still shows what a new one would.
    fn serves(&self, store: &Store, config: &Arc<Config>, now: SystemTime) -> bool {
        let same_config = std::ptr::eq(self.config.as_ptr(), Arc::as_ptr(config));
        let still_fresh = self.fresh_until.is_none_or(|t| now <= t);
        let recent = store.generation() == self.generation || self.built.elapsed() < REBUILD_INTERVAL;
        same_config && still_fresh && recent
    }

    /// Whether this copy may be shown while a newer one is built: the same config, no reading
    /// turned stale since, and young enough.
    fn may_serve_while_refreshing(&self, config: &Arc<Config>, now: SystemTime) -> bool {
        let same_config = std::ptr::eq(self.config.as_ptr(), Arc::as_ptr(config));
        let still_fresh = self.fresh_until.is_none_or(|t| now <= t);
        same_config && still_fresh && self.built.elapsed() < SERVE_WHILE_REFRESHING
    }

    /// The slots of the sort orders pages asked of this copy.
    fn orders_used(&self) -> Vec<usize> {
        (0..self.orders.len()).filter(|&slot| self.orders[slot].get().is_some()).collect()
    }

    /// Sorts the orders of `slots` now (off the runtime, before the copy is shown).
    fn prepare_orders(&self, slots: &[usize]) {
        for &slot in slots {
            let (sort, descending) = (SortKey::ALL[slot / 2].1, slot % 2 == 1);
            self.order(sort, descending);
        }
    }

    /// The matching rows of one page in the query's order, and how many matched in all.
    pub fn page(&self, query: &LinesQuery) -> (Vec<&Row>, usize) {
        let mut matching = self.order(query.sort, query.descending).iter().map(|&i| &self.rows[i as usize]);
        if !query.filters() {
            let page = matching.by_ref().skip(query.offset).take(query.limit).collect();
            return (page, self.rows.len());
        }
        let mut page = Vec::with_capacity(query.limit.min(self.rows.len()));
        let mut total = 0;
        for row in matching.filter(|r| query.keeps(r)) {
            if total >= query.offset && page.len() < query.limit {
                page.push(row);
            }
            total += 1;
        }
        (page, total)
    }

    fn order(&self, sort: SortKey, descending: bool) -> &[u32] {
        let slot = SortKey::ALL.iter().position(|(_, k)| *k == sort).unwrap_or(0) * 2 + usize::from(descending);
        self.orders[slot].get_or_init(|| {
            let query = LinesQuery { sort, descending, ..LinesQuery::default() };
            let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
            order.sort_by(|&a, &b| query.compare(&self.rows[a as usize], &self.rows[b as usize]));
            order
        })
    }
}

/// A copy already built may still be served while the refresher brings a newer one: requests
/// then never wait for a build of the fleet. Beyond this age a request waits for a new copy.
pub const SERVE_WHILE_REFRESHING: Duration = Duration::from_secs(3);

/// Who asks for copies: what the refresher copies, and since when nobody asked.
struct Demand {
    store: Arc<Store>,
    config: Arc<Config>,
    /// The wall time of the last request and the instant it came, to tell the wall time later.
    now: SystemTime,
    at: tokio::time::Instant,
}

/// The current copy, and the gate that lets one build run at a time. While requests come, a
/// refresher task rebuilds the copy once per [`REBUILD_INTERVAL`] when the store changed, so a
/// request finds a copy ready (≈ 1 ms at 100,000 lines instead of a build's 80–130 ms); it
/// stops, and forgets the copy, [`KEEP_IDLE`] after the last request.
#[derive(Default)]
pub struct SnapshotCache {
    current: Mutex<Option<Arc<Snapshot>>>,
    building: tokio::sync::Mutex<()>,
    demand: Mutex<Option<Demand>>,
    refreshing: std::sync::atomic::AtomicBool,
    builds: std::sync::atomic::AtomicU64,
}

impl SnapshotCache {
    /// A copy that shows the store as of at most [`REBUILD_INTERVAL`] ago, or, while the
    /// refresher builds the next, one of at most [`SERVE_WHILE_REFRESHING`] (same config, no
    /// reading turned stale since). Never built under the store's write lock nor on a runtime
    /// thread; one build serves every request waiting.
    pub async fn get(self: &Arc<Self>, store: &Arc<Store>, config: &Arc<Config>, now: SystemTime) -> Arc<Snapshot> {
        self.note_demand(store, config, now);
        if let Some(snapshot) = self.serving(store, config, now) {
            return snapshot;
        }
        if let Some(snapshot) = self.lock().as_ref().filter(|s| s.may_serve_while_refreshing(config, now)).cloned() {
            return snapshot;
        }
        self.rebuild(store, config, now).await
    }

    /// Builds a new copy unless one that serves appeared while waiting for the gate.
    async fn rebuild(&self, store: &Arc<Store>, config: &Arc<Config>, now: SystemTime) -> Arc<Snapshot> {
        let _gate = self.building.lock().await;
        if let Some(snapshot) = self.serving(store, config, now) {
            return snapshot;
        }
        // The sort orders pages asked of the last copy are sorted before this one is shown.
        let wanted = self.lock().as_ref().map(|s| s.orders_used()).unwrap_or_default();
        let (s, c) = (store.clone(), config.clone());
        let build = move || {
            let snapshot = Snapshot::build(&s, &c, now);
            snapshot.prepare_orders(&wanted);
            snapshot
        };
        let snapshot = Arc::new(match tokio::task::spawn_blocking(build).await {
            Ok(snapshot) => snapshot,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: build here rather than fail the request.
            Err(_) => Snapshot::build(store, config, now),
        });
        self.builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.lock() = Some(snapshot.clone());
        snapshot
    }

    fn serving(&self, store: &Store, config: &Arc<Config>, now: SystemTime) -> Option<Arc<Snapshot>> {
        self.lock().as_ref().filter(|s| s.serves(store, config, now)).cloned()
    }

    /// Remembers the request and starts the refresher if it is not running.
    fn note_demand(self: &Arc<Self>, store: &Arc<Store>, config: &Arc<Config>, now: SystemTime) {
        let demand = Demand { store: store.clone(), config: config.clone(), now, at: tokio::time::Instant::now() };
        *self.demand.lock().unwrap_or_else(|p| p.into_inner()) = Some(demand);
        if !self.refreshing.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tokio::spawn(Self::refresh(Arc::downgrade(self)));
        }
    }

    /// Keeps the copy current while requests come; forgets it once they stop.
    async fn refresh(cache: Weak<SnapshotCache>) {
        loop {
            tokio::time::sleep(REBUILD_INTERVAL).await;
            let Some(cache) = cache.upgrade() else { return };
            let asked = {
                let mut demand = cache.demand.lock().unwrap_or_else(|p| p.into_inner());
                match demand.as_ref() {
                    Some(d) if d.at.elapsed() < KEEP_IDLE => {
                        Some((d.store.clone(), d.config.clone(), d.now + d.at.elapsed()))
                    }
                    _ => {
                        // Idle: the copy and the config it holds go; the next request starts over.
                        *demand = None;
                        None
                    }
                }
            };
            let Some((store, config, now)) = asked else {
                *cache.lock() = None;
                cache.refreshing.store(false, std::sync::atomic::Ordering::Release);
                return;
            };
            if cache.serving(&store, &config, now).is_none() {
                cache.rebuild(&store, &config, now).await;
            }
        }
    }

    /// How many copies were built (tests).
    pub fn builds(&self) -> u64 {
        self.builds.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        // The slot is one assignment: a panic elsewhere cannot leave it half-written.
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::error::PollError;
    use crate::reading::{Currency, Money, Reading};
    use crate::store::PollOutcome;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    /// `n` demo lines over two operators, most polled: balances and data repeat so that sorts
    /// have ties, some lines fail and some never polled.
    fn fleet(n: usize) -> (Arc<Store>, Arc<Config>) {
        let mut yaml = String::from("global: {stale_after: 1h, alert: {balance_below: 50}}\nlines:\n");
        for i in 0..n {
            yaml.push_str(&format!("  - {{name: l{:05}, driver: demo, operator: op{}}}\n", (i * 7919) % n, i % 2));
        }
        let config = Arc::new(crate::config::parse("t.yaml", &yaml, crate::drivers::REGISTRY).unwrap());
        let store = Arc::new(Store::new());
        store.apply_plan(&config.lines);
        for (i, line) in config.lines.iter().enumerate().filter(|(i, _)| i % 10 != 9) {
            record(&store, &line.name, i, 0);
        }
        (store, config)
    }

    fn record(store: &Store, name: &str, i: usize, at: u64) {
        let result = if i % 7 == 3 {
            Err(PollError::Unavailable("down".into()))
        } else {
            Ok(Reading {
                balance: (!i.is_multiple_of(5)).then_some(Money { amount: (i % 97) as f64, currency: Currency::RUB }),
                data_remaining: Some(ByteSize((i % 13) as u64 * 1_000_000)),
                ..Reading::default()
            })
        };
        store.record(name, PollOutcome { at: t(at), duration: Duration::from_millis(100), result });
    }

    #[test]
    fn pages_from_the_cached_orders_equal_sorting_the_rows_each_time() {
        let (store, config) = fleet(300);
        let snapshot = Snapshot::build(&store, &config, t(10));
        let queries = ["", "q=l001", "operator=op1", "state=failing", "state=low", "state=pending", "q=nothing"];
        for (name, _) in SortKey::ALL {
            for sort in [name.to_string(), format!("-{name}")] {
                for filter in queries {
                    for (offset, limit) in [(0, 1000), (0, 7), (95, 20), (299, 5), (400, 5)] {
                        let text = format!("sort={sort}&{filter}&offset={offset}&limit={limit}");
                        let params: HashMap<String, String> =
                            url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
                        let query = LinesQuery::parse(&params).unwrap();
                        let names = |rows: Vec<&Row>| rows.iter().map(|r| r.line.name.clone()).collect::<Vec<_>>();
                        let (cached, cached_total) = snapshot.page(&query);
                        let (sorted, sorted_total) = query.page(snapshot.rows());
                        assert_eq!((names(cached), cached_total), (names(sorted), sorted_total), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_copy_is_taken_in_chunks_without_missing_or_repeating_a_line() {
        let (store, config) = fleet(2 * 4096 + 17);
        let rows = api::snapshot(&store, &config.global, t(10));
        let names: Vec<&str> = rows.iter().map(|r| r.line.name.as_str()).collect();
        let expected: Vec<&str> = config.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, expected);
    }

    /// `n` requests at once; their copies.
    async fn at_once(
        n: usize,
        cache: &Arc<SnapshotCache>,
        store: &Arc<Store>,
        config: &Arc<Config>,
        now: SystemTime,
    ) -> Vec<Arc<Snapshot>> {
        let asking: Vec<_> = (0..n)
            .map(|_| {
                let (cache, store, config) = (cache.clone(), store.clone(), config.clone());
                tokio::spawn(async move { cache.get(&store, &config, now).await })
            })
            .collect();
        let mut copies = Vec::new();
        for a in asking {
            copies.push(a.await.unwrap());
        }
        copies
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_is_reused_until_the_store_changes_and_the_refresher_rebuilds_it_once() {
        let (store, config) = fleet(50);
        let cache = Arc::new(SnapshotCache::default());
        let first = at_once(8, &cache, &store, &config, t(10)).await;
        assert!(first.iter().all(|s| Arc::ptr_eq(s, &first[0])), "one build for every waiting request");
        let first = first[0].clone();
        assert!(Arc::ptr_eq(&first, &cache.get(&store, &config, t(11)).await), "nothing changed: the same copy");
        assert_eq!(cache.builds(), 1);

        record(&store, &config.lines[9].name, 9, 12);
        let soon = cache.get(&store, &config, t(12)).await;
        assert!(Arc::ptr_eq(&first, &soon), "a change within the rebuild interval waits for the refresher");
        // The refresher wakes once per interval and builds the next copy off the runtime.
        tokio::time::advance(REBUILD_INTERVAL).await;
        for _ in 0..100 {
            if cache.builds() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.builds(), 2, "the refresher built the changed store");
        let rebuilt = at_once(8, &cache, &store, &config, t(13)).await;
        assert!(!Arc::ptr_eq(&first, &rebuilt[0]), "the change is shown");
        assert!(rebuilt.iter().all(|s| Arc::ptr_eq(s, &rebuilt[0])));
        assert_eq!(rebuilt[0].rows()[9].last_attempt, Some(t(12)));
        assert_eq!(cache.builds(), 2, "requests found the refresher's copy ready: no build of their own");
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_refresher_builds_requests_get_the_copy_before_and_sorted_orders_carry_over() {
        let (store, config) = fleet(50);
        let cache = Arc::new(SnapshotCache::default());
        let first = cache.get(&store, &config, t(10)).await;
        let by_balance = LinesQuery { sort: SortKey::ALL[5].1, descending: true, ..LinesQuery::default() };
        first.page(&by_balance);
        record(&store, &config.lines[9].name, 9, 12);
        // Past the rebuild interval but before the refresher ran: served at once, not waited for.
        tokio::time::advance(REBUILD_INTERVAL + Duration::from_millis(1)).await;
        let meanwhile = cache.get(&store, &config, t(12));
        let meanwhile = tokio::time::timeout(Duration::from_millis(1), meanwhile).await;
        assert!(meanwhile.is_ok_and(|s| Arc::ptr_eq(&s, &first) || cache.builds() == 2));
        for _ in 0..100 {
            if cache.builds() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let next = cache.get(&store, &config, t(13)).await;
        assert!(!Arc::ptr_eq(&next, &first));
        assert_eq!(next.orders_used(), first.orders_used(), "the order pages used is sorted before the copy is shown");
        // Too old to show while refreshing: a request waits for a copy of its own.
        record(&store, &config.lines[8].name, 8, 14);
        tokio::time::advance(SERVE_WHILE_REFRESHING).await;
        let late = cache.get(&store, &config, t(20)).await;
        assert_eq!(late.rows()[8].last_attempt, Some(t(14)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_config_or_a_reading_turning_stale_rebuilds_at_once() {
        let (store, config) = fleet(20);
        let cache = Arc::new(SnapshotCache::default());
        let first = cache.get(&store, &config, t(10)).await;
        assert_eq!(
            first.summary(t(10)).low_balance,
            cache.get(&store, &config, t(10)).await.summary(t(10)).low_balance
        );

        let reloaded = Arc::new(
            crate::config::parse("t.yaml", "lines:\n  - {name: x, driver: demo}\n", crate::drivers::REGISTRY).unwrap(),
        );
        let other = cache.get(&store, &reloaded, t(11)).await;
        assert!(!Arc::ptr_eq(&first, &other), "another config: another copy");

        let fresh = cache.get(&store, &config, t(12)).await;
        assert!(fresh.rows().iter().any(|r| r.reading.is_some()));
        let later = cache.get(&store, &config, t(3601)).await;
        assert!(!Arc::ptr_eq(&fresh, &later), "past stale_after the readings leave the rows");
        assert!(later.rows().iter().all(|r| r.reading.is_none()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_is_forgotten_after_a_while() {
        let (store, config) = fleet(5);
        let cache = Arc::new(SnapshotCache::default());
        let first = Arc::downgrade(&cache.get(&store, &config, t(10)).await);
        tokio::time::sleep(KEEP_IDLE + Duration::from_secs(1)).await;
        assert!(first.upgrade().is_none(), "its rows no longer hold the fleet's lines");
    }
}
