//! The pagoPA receipt parser and notice-number check on any input: they may refuse it,
//! never panic, and a receipt they accept is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_gateways::pagopa::{NoticeNumber, receipt};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = receipt::parse(data, 1 << 20) {
        // What parse promises: a valid notice with its IUV, transfers adding up.
        assert_eq!(NoticeNumber::parse(r.notice.as_str()), Ok(r.notice.clone()));
        assert!((1..=5).contains(&r.transfers.len()));
        assert!(r.amount.is_positive());
        let _ = r.summary();
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(n) = NoticeNumber::parse(text)
    {
        assert_eq!(n.as_str().len(), 18);
        let _ = (n.iuv(), n.pretty(), n.base(), n.segregation_code());
    }
});
