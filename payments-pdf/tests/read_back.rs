//! Both documents read back as a person and a bank's app would: the text extracted with
//! poppler's `pdftotext`, every page rendered with `pdftoppm`, and every QR code decoded
//! with ZBar's `zbarimg` and with rqrr (which also tells its version and error correction
//! level). Each field is compared with the position or the payment it comes from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{NaiveDate, TimeZone, Utc};
use payments_core::*;

fn eur(s: &str) -> Money {
    Money::parse_eur(s).unwrap()
}

fn day(d: &str) -> NaiveDate {
    d.parse().unwrap()
}

fn creditor() -> Creditor {
    Creditor::new("Comune di Esempio", "00488410010", "tributi@example.it")
        .unwrap()
        .with_notice(CreditorNotice {
            sector: Some("Settore Tributi".into()),
            info: Some("www.comune.example.it".into()),
            cbill: Some("A1B2C".into()),
            pays_online: false,
        })
}

fn option(amount: &str, due: &str) -> NewOption {
    NewOption::new(eur(amount), day(due))
        .with_description("TARI 2027")
        .with_transfer(Transfer::to_iban(
            "00488410010",
            "IT60X0542811101000000123456",
            eur(amount),
            "TARI 2027",
            "9/0101101IM/",
        ))
}

/// TARI 2027: € 1.500 at once, or four instalments of € 375.
fn position(locale: Locale) -> DebtPosition {
    let mut new = NewDebtPosition::new(
        "tributi",
        "TARI-2027-1",
        PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi")
            .with_address("Via Roma 1, 10100 Torino (TO)")
            .with_locale(locale),
        PaymentTypeId::new(),
        "TARI 2027 - Tassa sui rifiuti",
    )
    .with_single(option("1500.00", "2027-04-30"));
    for due in ["2027-04-30", "2027-06-30", "2027-09-30", "2027-12-02"] {
        new = new.with_instalment(option("375.00", due));
    }
    let notices = [
        "302000000000000006",
        "302000000000000103",
        "302000000000000200",
        "302000000000000394",
        "302000000000000491",
    ];
    new.to_position(
        CreditorId::new(),
        notices.iter().map(|n| n.to_string()).collect(),
        Utc::now(),
    )
}

fn tools() -> bool {
    let ok = ["pdftotext", "pdftoppm", "zbarimg"]
        .iter()
        .all(|t| Command::new(t).arg("-v").output().is_ok());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: pdftotext, pdftoppm or zbarimg is missing (install poppler-utils and zbar-tools; CI does) ***\n"
        );
    }
    ok
}

struct Read {
    text: String,
    pages: usize,
    zbar: BTreeSet<String>,
    rqrr: Vec<(String, usize, u16)>,
}

/// The PDF's text, its pages, and every QR code on them (ZBar's reading, and rqrr's with
/// version and error correction level).
fn read(pdf: &[u8], name: &str) -> Read {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("payments-pdf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("doc.pdf");
    std::fs::write(&file, pdf).unwrap();
    let text = Command::new("pdftotext")
        .arg("-layout")
        .arg(&file)
        .arg("-")
        .output()
        .unwrap();
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    let render = Command::new("pdftoppm")
        .args(["-r", "200", "-png"])
        .arg(&file)
        .arg(dir.join("page"))
        .output()
        .unwrap();
    assert!(render.status.success(), "{render:?}");
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    let mut zbar = BTreeSet::new();
    let mut rqrr_found = Vec::new();
    for png in &pngs {
        zbar.extend(zbar_codes(png));
        let image = image::open(png).unwrap().to_luma8();
        let mut prepared = rqrr::PreparedImage::prepare(image);
        for grid in prepared.detect_grids() {
            let (meta, content) = grid.decode().unwrap();
            rqrr_found.push((content, meta.version.0, meta.ecc_level));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Read {
        text,
        pages: pngs.len(),
        zbar,
        rqrr: rqrr_found,
    }
}

fn zbar_codes(png: &Path) -> Vec<String> {
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(png)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `text` holds `needle`, whatever the spacing pdftotext put between words.
fn has(text: &str, needle: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    squash(text).contains(&squash(needle))
}

#[test]
fn the_notice_reads_back_field_by_field_with_every_qr_code() {
    if !tools() {
        return;
    }
    let c = creditor();
    let p = position(Locale::It);
    let pdf = payments_pdf::notice_pdf(&c, &p, Locale::It).unwrap();
    let r = read(&pdf, "notice-it");
    // The single option and a band of three instalments on page 1, the fourth on page 2.
    assert_eq!(r.pages, 2);
    for needle in [
        "AVVISO DI PAGAMENTO",
        "TARI 2027 - Tassa sui rifiuti",
        "ENTE CREDITORE 00488410010",
        "Comune di Esempio",
        "Settore Tributi",
        "www.comune.example.it",
        "DESTINATARIO RSSMRA80A01H501U",
        "Mario Rossi",
        "Via Roma 1, 10100 Torino (TO)",
        "QUANTO E QUANDO PAGARE?",
        "1.500,00 Euro",
        "entro il 30/04/2027",
        "Puoi pagare per intero oppure in 4 rate",
        "DOVE PAGARE?",
        "PAGA CON L'APP IO",
        "PAGA SUL TERRITORIO",
        "DATI PER IL PAGAMENTO",
        "Rata unica entro il 30/04/2027",
        "Euro 1.500,00",
        "Cod. CBILL",
        "A1B2C",
        "Pagina 2/2",
    ] {
        assert!(has(&r.text, needle), "{needle:?} missing from:\n{}", r.text);
    }
    let mut expected = BTreeSet::new();
    for o in &p.options {
        // Notice specification: the code in groups of four digits.
        assert!(
            has(&r.text, &payments_pdf::grouped_notice(&o.notice_number)),
            "{}",
            o.notice_number
        );
        assert!(has(&r.text, &format!("{}", o.due_date.format("%d/%m/%Y"))));
        if let OptionKind::Instalment { number, .. } = o.kind {
            assert!(has(&r.text, &format!("Rata {number}")));
        }
        // Notice specification, "Codice QR": PAGOPA|002|notice|fiscal code|cents.
        expected.insert(format!(
            "PAGOPA|002|{}|00488410010|{}",
            o.notice_number,
            o.amount.minor_units()
        ));
    }
    assert!(has(&r.text, "Euro 375,00"));
    assert_eq!(r.zbar, expected, "ZBar reads every option's QR code");
    let rqrr: BTreeSet<String> = r.rqrr.iter().map(|(c, _, _)| c.clone()).collect();
    assert_eq!(rqrr, expected, "rqrr reads them too");
    for (content, version, ecc) in &r.rqrr {
        // Notice specification: symbol version 4 (33×33 modules), error correction M
        // (rqrr numbers M as 0: ISO/IEC 18004's format bits).
        assert_eq!(*version, 4, "{content}");
        assert_eq!(*ecc, 0, "{content}: error correction M");
    }
}

#[test]
fn the_english_notice_and_a_plan_without_single_option_read_back() {
    if !tools() {
        return;
    }
    let c = creditor();
    let mut p = position(Locale::En);
    p.options.remove(0);
    let pdf = payments_pdf::notice_pdf(&c, &p, Locale::En).unwrap();
    let r = read(&pdf, "notice-en");
    assert_eq!(r.pages, 2);
    for needle in [
        "PAYMENT NOTICE",
        "PAYEE 00488410010",
        "RECIPIENT RSSMRA80A01H501U",
        "1,500.00 Euro",
        "You can pay in 4 instalments",
        "WHERE TO PAY?",
        "Instalment #1",
        "Instalment #4",
        "Euro 375.00",
        "Notice code",
    ] {
        assert!(has(&r.text, needle), "{needle:?} missing from:\n{}", r.text);
    }
    assert!(!has(&r.text, "Full amount"), "no single option");
    assert_eq!(r.zbar.len(), 4);
}

#[test]
fn the_receipt_reads_back_field_by_field() {
    if !tools() {
        return;
    }
    let mut n = payments_core::testing::notifier::sample_notification(
        NotificationKind::Receipt,
        "mario@example.it",
        Locale::It,
    );
    n.summary.provider_ref = Some("pi_3Nx1234567890".into());
    n.summary.paid_at = Utc.with_ymd_and_hms(2026, 7, 1, 22, 30, 5).unwrap();
    n.summary.references = n
        .summary
        .lines
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if i == 0 {
                "302000100440009484".to_owned()
            } else {
                format!("tributi/TARI-{i}")
            }
        })
        .collect();
    let s = &n.summary;
    let pdf = payments_pdf::receipt_pdf(s, Locale::It).unwrap();
    let r = read(&pdf, "receipt");
    assert_eq!(r.pages, 1);
    for needle in [
        "RICEVUTA DI PAGAMENTO".to_owned(),
        s.creditor_name.clone(),
        s.creditor_fiscal_code.clone(),
        s.payer_name.clone(),
        s.transaction_id.to_string(),
        "pi_3Nx1234567890".to_owned(),
        s.method_kind.label(Locale::It).to_owned(),
        // 22:30:05 UTC on 1 July is 00:30:05 on 2 July in Rome (summer time).
        "02/07/2026 00:30:05".to_owned(),
        "3020 0010 0440 0094 84".to_owned(),
        "Totale".to_owned(),
        s.total.format(Locale::It),
    ] {
        assert!(
            has(&r.text, &needle),
            "{needle:?} missing from:\n{}",
            r.text
        );
    }
    for (i, line) in s.lines.iter().enumerate() {
        assert!(has(&r.text, &line.reason), "{}", line.reason);
        assert!(has(&r.text, &line.amount.format(Locale::It)));
        if i > 0 {
            assert!(has(&r.text, &format!("tributi/TARI-{i}")));
        }
    }
    let en = payments_pdf::receipt_pdf(s, Locale::En).unwrap();
    let r = read(&en, "receipt-en");
    assert!(has(&r.text, "PAYMENT RECEIPT"));
    assert!(has(&r.text, "Payment identifier"));
    assert!(has(&r.text, &s.total.format(Locale::En)));
}

#[test]
fn ten_notices_in_a_row_come_out_one_at_a_time() {
    let c = creditor();
    let mut sizes = Vec::new();
    let written =
        payments_pdf::write_notices(&c, (0..10).map(|_| position(Locale::It)), |p, pdf| {
            assert_eq!(p.key, "TARI-2027-1");
            sizes.push(pdf.len());
            Ok(())
        })
        .unwrap();
    assert_eq!(written, 10);
    assert!(
        sizes.iter().all(|s| *s > 10_000 && *s < 200_000),
        "{sizes:?}"
    );
}
