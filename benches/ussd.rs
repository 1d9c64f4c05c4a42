//! The USSD reply path: decoding a `+CUSD` string (UCS2 hex, packed GSM 7-bit) and reading the
//! balance and packages out of the text. Per reply, so that a modem's cost is known.
//!
//! `cargo bench --bench ussd`; CI runs `cargo test --bench ussd -- --smoke`.

use std::time::SystemTime;

use esim_exporter::drivers::ussd::{codec, parse};

#[path = "support/fleet.rs"]
mod fleet;

fn main() {
    fleet::main();
}

/// "Баланс:296,02р" in UCS2 hex, as modems send it with DCS 72.
const UCS2_REPLY: &str = "04110430043b0430043d0441003a003200390036002c003000320440";

#[divan::bench]
fn decode_ucs2() -> String {
    codec::decode(divan::black_box(UCS2_REPLY), Some(72), None)
}

#[divan::bench]
fn decode_packed_gsm7() -> String {
    codec::decode(divan::black_box("E8329BFD4697D9EC37"), Some(15), None)
}

#[divan::bench]
fn balance_of_a_reply() -> Option<f64> {
    parse::balance(divan::black_box("Баланс:296,02р. Пакеты: 3,5 ГБ интернета, 120 мин до 30.06"))
}

#[divan::bench]
fn packages_of_a_reply() -> parse::Packages {
    let dates = parse::Dates {
        now: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000),
        utc_offset_secs: 3 * 3600,
    };
    parse::packages(divan::black_box("Остаток: 3,5 ГБ интернета, 120 мин, 50 SMS до 30.06"), dates)
}
