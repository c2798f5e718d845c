//! Writes a sample pagoPA notice (a single option and three instalments) to the temporary
//! directory and prints where.
//!
//! ```sh
//! cargo run -p payments-pdf --example notice
//! ```

use chrono::NaiveDate;
use payments_core::*;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let creditor = Creditor::new("Comune di Esempio", "00488410010", "tributi@example.it")?
        .with_notice(CreditorNotice {
            sector: Some("Settore Tributi".into()),
            info: Some("www.comune.example.it - tributi@comune.example.it - 011 1234567".into()),
            cbill: Some("A1B2C".into()),
            pays_online: true,
        });
    let eur = |s: &str| Money::parse_eur(s).expect("an amount");
    let day = |d: &str| d.parse::<NaiveDate>().expect("a date");
    // Each option pays the municipality's treasury; a TARI notice could add the province's
    // TEFA share as a second transfer.
    let option = |amount: &str, due: &str| {
        NewOption::new(eur(amount), day(due))
            .with_description("TARI 2027 - Tassa sui rifiuti")
            .with_transfer(Transfer::to_iban(
                "00488410010",
                "IT60X0542811101000000123456",
                eur(amount),
                "TARI 2027",
                "9/0101101IM/",
            ))
    };
    // A position held elsewhere (or registered with `Payments::register_position`, which
    // gives the notice numbers itself), with its notice numbers.
    let position = NewDebtPosition::new(
        "tributi",
        "TARI-2027-1",
        PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi")
            .with_address("Via Roma 1, 10100 Torino (TO)"),
        PaymentTypeId::new(),
        "TARI 2027 - Tassa sui rifiuti",
    )
    .with_single(option("300.00", "2027-04-30"))
    .with_instalment(option("100.00", "2027-04-30"))
    .with_instalment(option("100.00", "2027-07-31"))
    .with_instalment(option("100.00", "2027-10-31"))
    .to_position(
        creditor.id,
        vec![
            "302000000000000006".into(),
            "302000000000000103".into(),
            "302000000000000200".into(),
            "302000000000000394".into(),
        ],
        chrono::Utc::now(),
    );
    let file = std::env::temp_dir().join("notice.pdf");
    std::fs::write(
        &file,
        payments_pdf::notice_pdf(&creditor, &position, Locale::It)?,
    )?;
    println!("wrote {}", file.display());
    Ok(())
}
