//! The one page cap and loop counter of every paged listing (1NCE, airalo, emnify, Hologram,
//! MTS, http_json). Each driver still decides from its own answer whether another page follows;
//! the pager only numbers the pages and says when a listing has become absurd.

use crate::error::PollError;

/// Past this many pages a listing is taken to be broken (an operator that always says "more"):
/// at 100 SIMs a page, ten million SIMs.
pub const MAX_PAGES: u32 = 100_000;

/// Numbers the pages of one listing.
#[derive(Debug)]
pub struct Pager {
    /// The listing as errors name it (`GET /v1/sims`), never with its query.
    what: String,
    taken: u32,
}

impl Pager {
    pub fn new(what: impl Into<String>) -> Pager {
        Pager { what: what.into(), taken: 0 }
    }

    /// The next page's ordinal (1 first), or `bad_response` once [`MAX_PAGES`] were taken.
    pub fn next_page(&mut self) -> Result<u32, PollError> {
        if self.taken >= MAX_PAGES {
            return Err(PollError::BadResponse(format!("{}: still more pages after {MAX_PAGES}", self.what)));
        }
        self.taken += 1;
        Ok(self.taken)
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
}
