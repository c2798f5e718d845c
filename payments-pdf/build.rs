//! Says at build time whether the PDF read-back tests can run: they read the documents
//! back with poppler's `pdftotext` and `pdftoppm` and ZBar's `zbarimg`.

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    let missing: Vec<&str> = ["pdftotext", "pdftoppm", "zbarimg"]
        .into_iter()
        .filter(|tool| std::process::Command::new(tool).arg("-v").output().is_err())
        .collect();
    if !missing.is_empty() && std::env::var("PROFILE").is_ok_and(|p| p == "debug") {
        println!(
            "cargo:warning={} not found: the PDF read-back tests of payments-pdf will be SKIPPED (install poppler-utils and zbar-tools)",
            missing.join(", ")
        );
    }
}
