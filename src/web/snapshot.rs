//! The rows `/` and `/api/v1/lines` read, shared between requests. A copy of the store is
//! reused while nothing changed; once something did, the first request rebuilds it (at most
//! once per [`REBUILD_INTERVAL`] while polls land, like `/metrics` at its default render
//! interval) while concurrent requests wait for that one copy. Each sort order is computed
//! once per copy, so a page costs a walk over a sorted index, not a sort of the fleet.

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

/// The current copy, and the gate that lets one request build the next.
#[derive(Default)]
pub struct SnapshotCache {
    current: Mutex<Option<Arc<Snapshot>>>,
    building: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    /// A copy that shows the store as of at most [`REBUILD_INTERVAL`] ago. Never built under
    /// the store's write lock nor on a runtime thread; one build serves every request waiting.
    pub async fn get(self: &Arc<Self>, store: &Arc<Store>, config: &Arc<Config>, now: SystemTime) -> Arc<Snapshot> {
        if let Some(snapshot) = self.serving(store, config, now) {
            return snapshot;
        }
        let _gate = self.building.lock().await;
        // Whoever held the gate may just have built what this request needs.
        if let Some(snapshot) = self.serving(store, config, now) {
            return snapshot;
        }
        let (s, c) = (store.clone(), config.clone());
        let snapshot = Arc::new(match tokio::task::spawn_blocking(move || Snapshot::build(&s, &c, now)).await {
            Ok(snapshot) => snapshot,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down: build here rather than fail the request.
            Err(_) => Snapshot::build(store, config, now),
        });
        *self.lock() = Some(snapshot.clone());
        self.drop_when_idle(&snapshot);
        snapshot
    }

    fn serving(&self, store: &Store, config: &Arc<Config>, now: SystemTime) -> Option<Arc<Snapshot>> {
        self.lock().as_ref().filter(|s| s.serves(store, config, now)).cloned()
    }

    /// Forgets `snapshot` after [`KEEP_IDLE`] unless a newer one replaced it by then.
    fn drop_when_idle(self: &Arc<Self>, snapshot: &Arc<Snapshot>) {
        let (cache, built) = (Arc::downgrade(self), Arc::downgrade(snapshot));
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_IDLE).await;
            let Some(cache) = cache.upgrade() else { return };
            let mut current = cache.lock();
            if current.as_ref().is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), built.as_ptr())) {
                *current = None;
            }
        });
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

    #[tokio::test(start_paused = true)]
    async fn a_copy_is_reused_until_the_store_changes_and_then_rebuilt_once_for_everyone() {
        let (store, config) = fleet(50);
        let cache = Arc::new(SnapshotCache::default());
        let first = cache.get(&store, &config, t(10)).await;
        let again = cache.get(&store, &config, t(11)).await;
        assert!(Arc::ptr_eq(&first, &again), "nothing changed: the same copy");

        record(&store, &config.lines[9].name, 9, 12);
        let soon = cache.get(&store, &config, t(12)).await;
        assert!(Arc::ptr_eq(&first, &soon), "a change within the rebuild interval waits for it");
        tokio::time::advance(REBUILD_INTERVAL).await;
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (cache, store, config) = (cache.clone(), store.clone(), config.clone());
                tokio::spawn(async move { cache.get(&store, &config, t(13)).await })
            })
            .collect();
        let mut rebuilt = Vec::new();
        for w in waiting {
            rebuilt.push(w.await.unwrap());
        }
        assert!(!Arc::ptr_eq(&first, &rebuilt[0]), "the change is shown");
        assert!(rebuilt.iter().all(|s| Arc::ptr_eq(s, &rebuilt[0])), "one build for every waiting request");
        assert_eq!(rebuilt[0].rows()[9].last_attempt, Some(t(12)));
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
