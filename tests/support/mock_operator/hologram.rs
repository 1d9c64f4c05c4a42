//! The Hologram REST API as the mock serves it (`shared/operators/iot.md` §5): HTTP Basic with
//! `apikey:<key>` on every request, the device list newest first in cursor pages (`continues`,
//! `lastid`, `startafter`) with each SIM's usage in its cellular link, the organisation balance;
//! `imsi` a number, plan `data` in bytes, state suffixes, as recorded (iot.md §9).

use super::iot::{self, fleet, fleet_mode, spread, Sim};
use super::{Ctx, MockRequest, Operator, Reply};

pub struct Hologram;

/// The SIMs of the mock organisation outside fleet mode.
pub const SIMS: &[&str] = &["89123400001234567890", "89123400001234567891", "89123400001234567892"];
pub const ORGID: &str = "98765";

impl Operator for Hologram {
    fn name(&self) -> &'static str {
        "hologram"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if !iot::basic_ok(cx, r) {
            return self.expired(cx);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["devices"]) => devices(cx, r),
            ("GET", ["organizations", ORGID, "balance"]) => cx.fixture("balance", ""),
            _ => Reply::json(404, r#"{"success":false,"error":"Not found"}"#),
        }
    }

    fn expired(&self, cx: &Ctx<'_>) -> Reply {
        cx.fixture_with(401, "unauthorized", "", &[])
    }
}

fn device_id(sim: &Sim) -> u64 {
    2_000_000 + sim.index as u64
}

/// The cellular link of `sim`: (state, overage limit, plan name, plan data, used, expires).
fn link(cx: &Ctx<'_>, sim: &Sim) -> (&'static str, i64, &'static str, u64, u64, &'static str) {
    if fleet_mode(cx) {
        let used = spread(&sim.iccid, 0.0, 900_000_000.0) as u64;
        let state = if sim.enabled() { "LIVE" } else { "PAUSED" };
        return (state, 0, "1 GB Pilot", 1_000_000_000, used, "2026-10-11 17:24:43");
    }
    match sim.index {
        0 => ("LIVE", 5_000_000, "1 GB Pilot", 1_000_000_000, 503_417_039, "2026-10-11 17:24:43"),
        1 => ("PAUSED", -1, "Global Standard Flat Rate", 0, 2_232_757_289, "2026-10-12 08:00:00"),
        // Link states carry suffixes (iot.md §9).
        _ => ("LIVE-PENDING", 0, "100 MB", 100_000_000, 150_000_000, "2026-10-13 09:30:00"),
    }
}

fn devices(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let limit = iot::number(r, "limit", 100).clamp(1, 5000);
    let mut sims = fleet(cx, SIMS);
    // Newest first.
    sims.sort_by_key(|s| std::cmp::Reverse(device_id(s)));
    let after: Option<u64> = r.query("startafter").and_then(|v| v.parse().ok());
    let rest: Vec<&Sim> = sims.iter().filter(|s| after.is_none_or(|a| device_id(s) < a)).collect();
    let page: Vec<&Sim> = rest.iter().take(limit).copied().collect();
    let continues = rest.len() > page.len();
    let items: Vec<String> = page
        .iter()
        .map(|s| {
            let (state, overage, plan, data, used, expires) = link(cx, s);
            format!(
                r#"{{"id":{},"orgid":{ORGID},"name":{},"type":"Cellular","links":{{"cellular":[{{"id":{},"sim":"{}","msisdn":"{}","imsi":23450{:010},"state":"{state}","whenclaimed":"2025-01-01 00:00:00","whenexpires":"{expires}","overagelimit":{overage},"data_threshold":0,"smslimit":100,"plan":{{"id":2096,"zone":"global","name":"{plan}","data":{data}}},"last_network_used":"T-Mobile","last_connect_time":"","session_end":"0000-00-00 00:00:00","cur_billing_data_used":{used},"last_billing_data_used":2232757289}}]}}}}"#,
                device_id(s),
                iot::quoted(&format!("{} ({})", s.label(), device_id(s))),
                5_600_000 + s.index,
                s.iccid,
                s.msisdn,
                s.index,
            )
        })
        .collect();
    let lastid = page.last().map_or(0, |s| device_id(s));
    // `continues: false` appears explicitly (iot.md §9).
    let continues = if continues { r#","continues":true"# } else { r#","continues":false"# };
    Reply::json(
        200,
        format!(
            r#"{{"success":true,"limit":{limit},"size":{}{continues},"lastid":{lastid},"data":[{}]}}"#,
            page.len(),
            items.join(",")
        ),
    )
}
