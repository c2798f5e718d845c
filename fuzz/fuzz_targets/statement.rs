//! The statement parser and the reference search on any input: they may refuse it, never
//! panic, and never loop or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_gateways::bank_transfer::{Limits, camt, rf};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_text_chars: 1024,
    };
    if let Ok(message) = camt::parse(data, &limits) {
        for m in message.movements() {
            for r in rf::find_in(&m.remittance()) {
                assert!(rf::is_valid(&r));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for r in rf::find_in(text) {
            assert!(rf::is_valid(&r));
        }
    }
});
