//! Modem output → `+CUSD:` lines → decoding under every charset → balance, packages, stubs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = esim_exporter::drivers::ussd::fuzz_reply(data);
});
