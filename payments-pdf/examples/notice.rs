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
    let option = |kind, notice: &str, amount: &str, due: &str| PaymentOption {
        kind,
        notice_number: notice.into(),
        amount: eur(amount),
        due_date: day(due),
        description: "TARI 2027 - Tassa sui rifiuti".into(),
        transfers: vec![Transfer::to_iban(
            "00488410010",
            "IT60X0542811101000000123456",
            eur(amount),
            "TARI 2027",
            "9/0101101IM/",
        )],
        paid_by: None,
        paid_at: None,
    };
    let of = 3;
    let position = DebtPosition {
        id: DebtPositionId::new(),
        creditor_id: creditor.id,
        module: "tributi".into(),
        key: "TARI-2027-1".into(),
        payer: PositionPayer::new("RSSMRA80A01H501U", "Mario Rossi")
            .with_address("Via Roma 1, 10100 Torino (TO)"),
        payment_type_id: PaymentTypeId::new(),
        reason: "TARI 2027 - Tassa sui rifiuti".into(),
        status: PositionStatus::Valid,
        valid_until: None,
        options: vec![
            option(
                OptionKind::Single,
                "302000000000000006",
                "300.00",
                "2027-04-30",
            ),
            option(
                OptionKind::Instalment { number: 1, of },
                "302000000000000103",
                "100.00",
                "2027-04-30",
            ),
            option(
                OptionKind::Instalment { number: 2, of },
                "302000000000000200",
                "100.00",
                "2027-07-31",
            ),
            option(
                OptionKind::Instalment { number: 3, of },
                "302000000000000394",
                "100.00",
                "2027-10-31",
            ),
        ],
        version: 1,
        revision: 0,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let file = std::env::temp_dir().join("notice.pdf");
    std::fs::write(
        &file,
        payments_pdf::notice_pdf(&creditor, &position, Locale::It)?,
    )?;
    println!("wrote {}", file.display());
    Ok(())
}
