//! Checks a pagoPA SOAP message against pagoPA's published schema (`paForNode.xsd`) with
//! `xmllint`, as the folder of the specifications says: the SOAP body's first element, with
//! its namespace declared on it.
//!
//! The schemas are read from `PAGOPA_XSD_DIR`, or else `../shared/specs/pagopa/xsd` beside
//! the workspace. Without `xmllint` or the schemas the check says SKIPPED loudly, unless
//! `PAYMENTS_REQUIRE_XSD` is set (CI sets it): then it fails.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use quick_xml::Reader;
use quick_xml::events::Event;

/// The namespace of `paForNode.xsd`.
pub const PA_FOR_NODE: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";

static SKIPPED: AtomicBool = AtomicBool::new(false);
static SEQ: AtomicUsize = AtomicUsize::new(0);

fn schema_dir() -> PathBuf {
    match std::env::var_os("PAGOPA_XSD_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs/pagopa/xsd"),
    }
}

/// The first element inside the SOAP `Body` of `envelope`, with the namespace of its
/// prefix declared on it, and its local name.
pub fn body_element(envelope: &str) -> (String, String) {
    let mut reader = Reader::from_str(envelope);
    let mut in_body = false;
    let mut start: Option<(usize, String, String)> = None;
    let mut depth = 0usize;
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().expect("the message is XML") {
            Event::Start(e) => {
                let local = e.local_name().into_inner().to_owned();
                if !in_body {
                    in_body = local == "Body";
                    continue;
                }
                if start.is_none() {
                    let qname = e.name().into_inner().to_owned();
                    start = Some((before, qname, local));
                }
                depth += 1;
            }
            Event::End(_) if start.is_some() => {
                depth -= 1;
                if depth == 0 {
                    let end = reader.buffer_position() as usize;
                    let (at, qname, local) = start.expect("started");
                    let text = &envelope[at..end];
                    let prefix = qname.split_once(':').map(|(p, _)| p);
                    let decl = match prefix {
                        Some(p) => format!("xmlns:{p}=\"{PA_FOR_NODE}\""),
                        None => format!("xmlns=\"{PA_FOR_NODE}\""),
                    };
                    let open = 1 + qname.len();
                    let element = if text[..text.find('>').unwrap_or(open)].contains(&decl) {
                        text.to_owned()
                    } else {
                        format!("{} {decl}{}", &text[..open], &text[open..])
                    };
                    return (local, element);
                }
            }
            Event::Eof => panic!("no element in the SOAP body of {envelope}"),
            _ => {}
        }
    }
}

/// Asserts that the SOAP `envelope` validates against `paForNode.xsd`, and answers the
/// local name of its body's element (`paGetPaymentV2Response`, …).
pub fn assert_valid(envelope: &str) -> String {
    let (name, element) = body_element(envelope);
    let dir = schema_dir();
    let schema = dir.join("paForNode.xsd");
    let required = std::env::var_os("PAYMENTS_REQUIRE_XSD").is_some();
    let lint = Command::new("xmllint").arg("--version").output().is_ok();
    if !lint || !schema.exists() {
        let why = if lint {
            format!(
                "the schemas are not at {} (set PAGOPA_XSD_DIR)",
                dir.display()
            )
        } else {
            "xmllint is not installed (apt install libxml2-utils)".to_owned()
        };
        assert!(!required, "PAYMENTS_REQUIRE_XSD is set, but {why}");
        if !SKIPPED.swap(true, Ordering::Relaxed) {
            eprintln!("SKIPPED the validation of pagoPA messages against paForNode.xsd: {why}");
        }
        return name;
    }
    let file = std::env::temp_dir().join(format!(
        "pagopa-{}-{}-{name}.xml",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, &element).expect("a temporary file");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("xmllint runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{name} does not validate against paForNode.xsd:\n{}\n{element}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}
