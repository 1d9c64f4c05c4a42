//! The one page cap and loop counter of every paged listing (1NCE, airalo, emnify, Hologram,
//! MTS, http_json). Each driver still decides from its own answer whether another page follows;
//! the pager only numbers the pages and says when a listing has become absurd.

use std::future::Future;

use crate::drivers::contract::{DiscoveredLine, PollContext};
use crate::error::PollError;

/// Past this many pages a listing is taken to be broken (an operator that always says "more"):
/// at 100 SIMs a page, ten million SIMs.
pub const MAX_PAGES: u32 = 100_000;

/// Past this many SIMs a listing is taken to be broken: far beyond any fleet this exporter is
/// sized for (100,000 lines), and it bounds what a listing holds in memory.
pub const MAX_SIMS: usize = 1_000_000;

/// One page of a numbered listing (`?page=N`), as its driver read it.
pub struct NumberedPage {
    /// The page's SIMs that make lines (items without an ICCID already left out).
    pub lines: Vec<DiscoveredLine>,
    /// How many items the page held, lines or not: the short-page rule counts these.
    pub items: usize,
    /// The listing's page count when the answer says it (`X-Total-Pages`, `meta.last_page`).
    pub pages: Option<u64>,
}

impl NumberedPage {
    /// A page of `items`, those that make lines turned into them by `into_line`.
    pub fn of<T>(
        items: Vec<T>,
        into_line: impl FnMut(T) -> Option<DiscoveredLine>,
        pages: Option<u64>,
    ) -> NumberedPage {
        let count = items.len();
        NumberedPage { lines: items.into_iter().filter_map(into_line).collect(), items: count, pages }
    }
}

/// What a page that repeats the one before means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRepeat {
    /// The operator ignores the page number: `bad_response` (1NCE, airalo).
    Fail,
    /// A page past the end is the last page again, by design (emnify): the listing is complete.
    End,
}

/// Numbers the pages of one listing.
#[derive(Debug)]
pub struct Pager {
    /// The listing as errors name it (`GET /v1/sims`), never with its query.
    what: String,
    taken: u32,
    /// The SIMs of the last page, to tell an operator that answers the same page again.
    last_page: Option<(usize, u64)>,
}

impl Pager {
    pub fn new(what: impl Into<String>) -> Pager {
        Pager { what: what.into(), taken: 0, last_page: None }
    }

    /// The next page's ordinal (1 first), or `bad_response` once [`MAX_PAGES`] were taken.
    pub fn next_page(&mut self) -> Result<u32, PollError> {
        if self.taken >= MAX_PAGES {
            return Err(PollError::BadResponse(format!("{}: still more pages after {MAX_PAGES}", self.what)));
        }
        self.taken += 1;
        Ok(self.taken)
    }

    /// Every line of a numbered listing: pages 1, 2, … read by `fetch` until the page count
    /// says the last one came or, when the answer gives none, a page shorter than `page_size`.
    /// Bounded like every listing ([`MAX_PAGES`], [`MAX_SIMS`]); a page that repeats the one
    /// before is handled as `on_repeat` says. `noun` names the items in the poll's notes.
    pub async fn numbered<Fut>(
        mut self,
        page_size: u64,
        on_repeat: OnRepeat,
        noun: &str,
        cx: &PollContext,
        mut fetch: impl FnMut(u32) -> Fut,
    ) -> Result<Vec<DiscoveredLine>, PollError>
    where
        Fut: Future<Output = Result<NumberedPage, PollError>>,
    {
        let mut found = Vec::new();
        loop {
            let page = self.next_page()?;
            let NumberedPage { lines, items, pages } = fetch(page).await?;
            let of = pages.map_or("?".into(), |t| t.to_string());
            cx.note(format!("{} page {page} of {of}: {items} {noun}", self.what));
            let before = found.len();
            found.extend(lines);
            self.check_size(&found)?;
            if self.repeats(&found[before..]) {
                if on_repeat == OnRepeat::End {
                    found.truncate(before);
                    return Ok(found);
                }
                return Err(self.repeat_error());
            }
            let more = match pages {
                Some(pages) => u64::from(page) < pages,
                None => items as u64 >= page_size,
            };
            if !more {
                return Ok(found);
            }
        }
    }

    /// Checks a page's SIMs once they are added to `found` (the listing so far, `on_page` of
    /// them from this page): the same non-empty page twice in a row means the operator ignores
    /// the page number, and more than [`MAX_SIMS`] means the listing never ends. Both are a
    /// `bad_response` rather than a walk to the discover timeout holding every SIM.
    pub fn check_page(&mut self, found: &[DiscoveredLine], on_page: usize) -> Result<(), PollError> {
        self.check_size(found)?;
        if self.repeats(&found[found.len().saturating_sub(on_page)..]) {
            return Err(self.repeat_error());
        }
        Ok(())
    }

    fn check_size(&self, found: &[DiscoveredLine]) -> Result<(), PollError> {
        if found.len() > MAX_SIMS {
            return Err(PollError::BadResponse(format!(
                "{}: more than {MAX_SIMS} SIMs; the listing never ends",
                self.what
            )));
        }
        Ok(())
    }

    /// Whether `page` (non-empty) holds the same SIMs as the page before; if not, it becomes
    /// the page the next one is compared with.
    fn repeats(&mut self, page: &[DiscoveredLine]) -> bool {
        // FNV-1a over the ids: stable, and a page of 1,000 ids costs nothing.
        let fingerprint = page
            .iter()
            .flat_map(|l| l.id.bytes().chain([0]))
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let this = (page.len(), fingerprint);
        if !page.is_empty() && self.last_page == Some(this) {
            return true;
        }
        self.last_page = Some(this);
        false
    }

    fn repeat_error(&self) -> PollError {
        PollError::BadResponse(format!(
            "{}: page {} repeats page {} (the operator ignores the page number)",
            self.what,
            self.taken,
            self.taken - 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_pages_from_one_and_stops_after_the_cap() {
        let mut pager = Pager::new("GET /v1/sims");
        assert_eq!(pager.next_page().unwrap(), 1);
        assert_eq!(pager.next_page().unwrap(), 2);
        pager.taken = MAX_PAGES - 1;
        assert_eq!(pager.next_page().unwrap(), MAX_PAGES);
        let err = pager.next_page().unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_response");
        assert!(err.to_string().contains("GET /v1/sims: still more pages after 100000"), "{err}");
    }

    fn sims(ids: std::ops::Range<u32>) -> Vec<DiscoveredLine> {
        let line = |i| DiscoveredLine {
            id: format!("8900{i:015}"),
            msisdn: None,
            iccid: None,
            labels: Vec::new(),
            options: crate::drivers::contract::DriverOptions::none(),
        };
        ids.map(line).collect()
    }

    /// Finding 14 of issue 14: a listing that answered the same page forever ran to the
    /// discover timeout holding 420,000 SIMs.
    #[test]
    fn the_same_page_twice_and_endless_listings_are_bad_responses() {
        let mut pager = Pager::new("GET /v1/sims");
        let mut found = Vec::new();
        for page in 0..3 {
            pager.next_page().unwrap();
            found.extend(sims(page * 10..page * 10 + 10));
            pager.check_page(&found, 10).expect("distinct pages");
        }
        pager.next_page().unwrap();
        found.extend(sims(20..30));
        let err = pager.check_page(&found, 10).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_response");
        assert!(err.to_string().contains("page 4 repeats page 3"), "{err}");

        let mut pager = Pager::new("GET /v1/sims");
        let mut many = sims(0..(MAX_SIMS as u32 + 1));
        pager.next_page().unwrap();
        assert!(pager.check_page(&many, 1).unwrap_err().to_string().contains("more than 1000000 SIMs"));
        many.truncate(5);
        let mut pager = Pager::new("GET /v1/sims");
        pager.next_page().unwrap();
        pager.check_page(&many, 0).expect("an empty last page is no repeat");
        pager.next_page().unwrap();
        pager.check_page(&many, 0).expect("two empty pages are no repeat");
    }
}
