//! `cargo bench -p payments-pdf --bench notices`: pagoPA notices for a mass mailing.
//!
//! N notices (`BENCH_NOTICES`, 10,000 by default), each a single option and three
//! instalments (four QR codes, one page), written one after another with
//! [`payments_pdf::write_notices`] and thrown away as a mailer would after sending them; in a
//! child process, so its peak resident memory (`VmHWM`) is its own. The floor draws, with
//! krilla directly, the same page's content without its layout: the same strings (the
//! position's fields and as many characters of fixed text) at fixed points and the same
//! four QR codes, one page per notice, and writes the same PDFs.

use payments_core::testing::peak_resident_kib;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use krilla::Document;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use payments_core::*;

fn n() -> u64 {
    std::env::var("BENCH_NOTICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn creditor() -> Creditor {
    Creditor::new("Comune di Esempio", "00488410010", "tributi@example.it")
        .unwrap()
        .with_notice(CreditorNotice {
            sector: Some("Settore Tributi".into()),
            info: Some("www.comune.example.it - tributi@comune.example.it".into()),
            cbill: Some("A1B2C".into()),
            pays_online: true,
        })
}

fn position(i: u64) -> DebtPosition {
    let eur = |c: i64| Money::from_minor(c, Currency::Eur).unwrap();
    let option = |cents: i64, m: u32| {
        NewOption::new(eur(cents), NaiveDate::from_ymd_opt(2027, m, 28).unwrap())
            .with_description("TARI 2027 - Tassa sui rifiuti")
            .with_transfer(Transfer::to_iban(
                "00488410010",
                "IT60X0542811101000000123456",
                eur(cents),
                "TARI 2027",
                "9/0101101IM/",
            ))
    };
    NewDebtPosition::new(
        "tributi",
        format!("TARI-2027-{i:08}"),
        PositionPayer::new("RSSMRA80A01H501U", format!("Contribuente numero {i}"))
            .with_address("Via Roma 1, 10100 Torino (TO)"),
        PaymentTypeId::new(),
        "TARI 2027 - Tassa sui rifiuti",
    )
    .with_single(option(30_000 + i as i64, 4))
    .with_instalment(option(10_000, 4))
    .with_instalment(option(10_000, 7))
    .with_instalment(option(10_000 + i as i64, 10))
    .to_position(
        CreditorId::new(),
        (0..4).map(|n| format!("3020{:014}", i * 10 + n)).collect(),
        chrono::Utc::now(),
    )
}

fn library_child() {
    let c = creditor();
    let before = peak_resident_kib();
    let started = Instant::now();
    let mut bytes = 0u64;
    let written = payments_pdf::write_notices(&c, (0..n()).map(position), |_, pdf| {
        bytes += pdf.len() as u64;
        Ok(())
    })
    .unwrap();
    println!(
        "written {written} seconds {:.3} bytes {bytes} peak_kib {} before_kib {before}",
        started.elapsed().as_secs_f64(),
        peak_resident_kib()
    );
}

/// The floor: the same strings and QR codes drawn with krilla at fixed points.
fn floor() -> (f64, u64) {
    static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
    let font = Font::new(Arc::new(FONT.to_vec()).into(), 0).unwrap();
    // About as many characters as the notice's fixed texts.
    let fixed = "AVVISO DI PAGAMENTO ENTE CREDITORE DESTINATARIO QUANTO E QUANDO PAGARE? DOVE PAGARE? In fase di pagamento, se previsto dall'ente, l'importo potrebbe essere aggiornato automaticamente e subire variazioni in diminuzione (per sgravi, note di credito) o in aumento (per sanzioni, interessi, ecc.). PAGA CON L'APP IO oppure sul sito dell'ente, dal tuo Home Banking, con la tua app di pagamento o con gli altri canali abilitati. PAGA SUL TERRITORIO presso Banche e Sportelli ATM, negli Uffici Postali e Punti Postali, nei Bar, Edicole, Ricevitorie, Supermercati, Tabaccherie e altri Esercenti Convenzionati. DATI PER IL PAGAMENTO Inquadra il codice QR con la tua app di pagamento o usa i dati accanto.";
    let c = creditor();
    let started = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n() {
        let p = position(i);
        let mut doc = Document::new();
        let mut page = doc.start_page_with(PageSettings::from_wh(595.28, 841.89).unwrap());
        let mut s = page.surface();
        let mut y = 20.0;
        let mut draw = |s: &mut krilla::surface::Surface<'_>, text: &str| {
            s.draw_text(
                Point::from_xy(20.0, y),
                font.clone(),
                8.0,
                text,
                false,
                TextDirection::Auto,
            );
            y += 9.0;
        };
        for chunk in fixed.as_bytes().chunks(90) {
            draw(&mut s, std::str::from_utf8(chunk).unwrap_or_default());
        }
        for text in [
            &p.reason,
            &p.payer.name,
            p.payer.address.as_ref().unwrap(),
            &c.name,
            &c.fiscal_code,
            &p.payer.fiscal_code,
        ] {
            draw(&mut s, text);
        }
        for (k, o) in p.options.iter().enumerate() {
            for text in [
                o.kind.describe(Locale::It),
                o.amount.format(Locale::It),
                o.due_date.to_string(),
                payments_pdf::grouped_notice(&o.notice_number),
                o.description.clone(),
                "Cod. Avviso Cod. Fiscale Ente Cod. CBILL Oggetto del pagamento Ente creditore"
                    .to_owned(),
            ] {
                draw(&mut s, &text);
            }
            let code = qrcode::QrCode::with_version(
                payments_pdf::qr_payload(o, &c.fiscal_code).as_bytes(),
                qrcode::Version::Normal(4),
                qrcode::EcLevel::M,
            )
            .unwrap();
            let w = code.width();
            let module = 70.87 / w as f32;
            let mut pb = PathBuilder::new();
            for (j, dark) in code.to_colors().iter().enumerate() {
                if *dark == qrcode::Color::Dark {
                    let (x, yy) = ((j % w) as f32, (j / w) as f32);
                    pb.push_rect(
                        Rect::from_xywh(
                            300.0 + x * module,
                            20.0 + k as f32 * 90.0 + yy * module,
                            module,
                            module,
                        )
                        .unwrap(),
                    );
                }
            }
            s.draw_path(&pb.finish().unwrap());
        }
        s.finish();
        page.finish();
        bytes += doc.finish().unwrap().len() as u64;
    }
    (started.elapsed().as_secs_f64(), bytes)
}

fn main() {
    if std::env::var("BENCH_NOTICES_CHILD").is_ok() {
        return library_child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_NOTICES_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: Vec<&str> = text.split_whitespace().collect();
    let field = |k: &str| -> f64 {
        words[words.iter().position(|w| *w == k).unwrap() + 1]
            .parse()
            .unwrap()
    };
    let (secs, bytes, peak, before) = (
        field("seconds"),
        field("bytes"),
        field("peak_kib"),
        field("before_kib"),
    );
    let (floor_secs, floor_bytes) = floor();
    let n = n() as f64;
    println!(
        "# pagoPA notices for a mass mailing: {} notices, one page, four QR codes each",
        n
    );
    println!(
        "library: {:>7.0} notices/s ({secs:.2} s, {:.1} KiB a notice), peak resident {:.1} MiB (before {:.1} MiB)",
        n / secs,
        bytes / n / 1024.0,
        peak / 1024.0,
        before / 1024.0
    );
    println!(
        "floor:   {:>7.0} notices/s ({floor_secs:.2} s, {:.1} KiB a notice): krilla, the same strings and QR codes without layout",
        n / floor_secs,
        floor_bytes as f64 / n / 1024.0
    );
    println!("ratio:   {:.2}× the floor's time", secs / floor_secs);
}
