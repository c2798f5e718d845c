//! What the benchmarks share: timing, and the floor every XML reader is compared to.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use quick_xml::events::Event;

/// The best time of `runs` runs of `f`, and its last result.
pub(crate) fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("one run"))
}

/// The floor: every event read, every text unescaped.
pub(crate) fn quick_xml_alone(text: &str) -> usize {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut bytes = 0;
    loop {
        match reader.read_event().expect("well-formed") {
            Event::Text(t) => bytes += t.xml_content(quick_xml::XmlVersion::Explicit1_0).len(),
            Event::GeneralRef(r) => bytes += r.len(),
            Event::Start(e) => bytes += e.attributes().count(),
            Event::Eof => break,
            _ => {}
        }
    }
    bytes
}
