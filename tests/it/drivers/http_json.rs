//! `http_json` against "TinyIoT", a small JSON API no built-in driver knows (the mock's
//! `/http_json`, fixtures in `tests/fixtures/http_json/`): OAuth2 client credentials, JSONPath
//! fields with units (kilobytes as text with spaces, a decimal comma, Unix seconds, add-ons
//! summed through a filter), an unlimited line, discovery through the listing request.

use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, user_of, Built, Fault, MockOperator};

/// A TinyIoT account; `lines` are appended.
pub fn config(base_url: &str, secret: &str, lines: &str) -> String {
    format!(
        r#"accounts:
  tiny:
    driver: http_json
    base_url: {base_url}
    auth:
      oauth2: {{token_path: /oauth/token, client_id: "{}", client_secret: "{secret}"}}
    request: {{path: "/api/v2/lines/{{iccid}}"}}
    fields:
      data_remaining: {{path: "$.line.usage.left_kb", unit: KiB}}
      data_quota: {{path: "$.line.usage.limit_kb", unit: KiB}}
      unlimited: "$.line.usage.unlimited"
      sms_remaining: "$.line.addons[?@.kind == 'sms'].left"
      voice_remaining: {{path: "$.line.addons[?@.kind == 'voice'].left", unit: min}}
      balance: "$.line.credit.value"
      currency: "$.line.credit.cur"
      quota_expiry: "$.line.valid_until"
      plan: "$.line.tariff"
    list:
      path: "/api/v2/lines?page={{page}}"
      items: "$.lines[*]"
      id: "$.iccid"
      iccid: "$.iccid"
      msisdn: "$.msisdn"
      facts: {{name: "$.name", state: "$.state"}}
      total_pages: "$.meta.pages"
lines:
{lines}"#,
        user_of("http_json")
    )
}

const LINES: &str = "  - {name: gw-1, account: tiny, iccid: \"8935711001000000001\"}\n  - {name: gw-2, account: tiny, iccid: \"8935711001000000002\"}\n";

pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 12.5, currency: Currency::EUR }),
        data_remaining: Some(ByteSize(1 << 30)),
        data_quota: Some(ByteSize(2 << 30)),
        voice_remaining: Some(Duration::from_secs(15 * 60)),
        sms_remaining: Some(42),
        quota_expiry: Some(at("2026-12-31T00:00:00Z")),
        plan: Some("Tiny 2G".into()),
    }
}

#[tokio::test]
async fn an_api_no_driver_knows_is_read_through_jsonpath_fields() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock.base_url("http_json"), secret_of("http_json"), LINES));
    assert_eq!(built.reading("gw-1").await, main_reading());
    let unlimited = built.reading("gw-2").await;
    assert_eq!(
        unlimited,
        Reading {
            balance: Some(Money { amount: -3.1, currency: Currency::EUR }),
            quota_expiry: Some(at("2027-01-31T23:59:59Z")),
            plan: Some("Tiny Unlimited".into()),
            ..Reading::default()
        },
        "unlimited: data absent; no add-ons: SMS and voice absent"
    );
    assert_eq!(mock.count("http_json", "/oauth/token"), 1);
    let line = mock.requests("http_json").into_iter().find(|r| r.path.starts_with("/api/v2/lines/")).unwrap();
    assert_eq!(line.path, "/api/v2/lines/8935711001000000001");
}

#[tokio::test]
async fn a_line_the_api_does_not_know_is_a_config_error() {
    let mock = MockOperator::start().await;
    let lines = "  - {name: ghost, account: tiny, iccid: \"8935711001000000999\"}\n";
    let built = Built::new(&config(&mock.base_url("http_json"), secret_of("http_json"), lines));
    let err = built.poll("ghost", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "config", "{err}");
    assert!(err.to_string().contains("/api/v2/lines/{iccid}"), "the path is shown as its template: {err}");
}

#[tokio::test]
async fn the_listing_request_discovers_every_page() {
    let mock = MockOperator::start().await;
    mock.set_lines("http_json", 120);
    let built = Built::new(&config(&mock.base_url("http_json"), secret_of("http_json"), LINES));
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.len(), 120);
    assert_eq!(mock.count("http_json", "/api/v2/lines"), 3, "50 a page, meta.pages = 3");
    let tenth = found.iter().find(|l| l.id == "8970101000000000010").unwrap();
    assert!(tenth.labels.contains(&("state".into(), "suspended".into())), "{:?}", tenth.labels);
    assert_eq!(tenth.msisdn.as_deref(), Some("+79160000010"));
}

#[tokio::test]
async fn wrong_types_are_bad_responses_that_name_the_field() {
    let mock = MockOperator::start().await;
    mock.fault("http_json", "/api/v2/lines/8935711001000000001", Fault::Fixture(200, "wrong-types"));
    let built = Built::new(&config(&mock.base_url("http_json"), secret_of("http_json"), LINES));
    let err = built.poll("gw-1", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "bad_response");
    assert!(err.to_string().contains("field `data"), "{err}");
}

#[test]
fn the_worked_examples_in_the_drivers_doc_load() {
    let doc = std::fs::read_to_string(crate::support::repo().join("docs/DRIVERS.md")).unwrap();
    let section = doc.split("### `http_json`").nth(1).expect("an http_json section");
    let section = section.split("\n### ").next().unwrap_or(section);
    let blocks: Vec<&str> = section.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap_or("")).collect();
    assert_eq!(blocks.len(), 2, "two worked examples");
    for var in ["ESIMGO_API_KEY", "TELNYX_API_KEY"] {
        std::env::set_var(var, "placeholder-key");
    }
    for (i, block) in blocks.iter().enumerate() {
        let config =
            esim_exporter::config::parse(&format!("example-{}.yaml", i + 1), block, esim_exporter::drivers::REGISTRY)
                .unwrap_or_else(|e| panic!("example {} does not load:\n{e}", i + 1));
        assert!(config.accounts.iter().any(|a| a.driver.name == "http_json"));
    }
}
