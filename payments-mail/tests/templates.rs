//! Snapshots of both templates in both languages, and of a reported bank transfer.

use chrono::{TimeZone, Utc};
use payments_core::*;
use payments_mail::{RenderedMail, Templates};

fn id<T: From<uuid::Uuid>>(n: u128) -> T {
    T::from(uuid::Uuid::from_u128(n))
}

/// A notification with fixed ids and times, so snapshots are stable.
fn notification(kind: NotificationKind, locale: Locale, status: TxStatus) -> Notification {
    let tari: PaymentTypeId = id(0x11);
    let fees: PaymentTypeId = id(0x12);
    let line =
        |n: u128, module: &str, t: PaymentTypeId, reason: &str, amount: &str| TransactionLine {
            item_id: id(0x100 + n),
            source: Source::new(module, format!("k{n}")),
            payment_type_id: t,
            reason: reason.into(),
            amount: Money::parse_eur(amount).unwrap(),
            paid_at: None,
        };
    Notification {
        id: id(0x200),
        kind,
        to: "mario@example.it".into(),
        locale,
        summary: TransactionSummary {
            status,
            transaction_id: id(0x0199_0000_0000_7000_8000_0000_0000_0001),
            provider_ref: Some("sbx_42".into()),
            creditor_id: id(0x300),
            creditor_name: "Comune di Esempio".into(),
            creditor_fiscal_code: "00488410010".into(),
            payer_id: "RSSMRA85T10A562S".into(),
            payer_name: "Mario Rossi".into(),
            payer_fiscal_code: Some("RSSMRA85T10A562S".into()),
            method_kind: if status == TxStatus::Reported {
                MethodKind::BankTransfer
            } else {
                MethodKind::Card
            },
            lines: vec![
                line(1, "tributi", tari, "TARI 2026 <rata 1>", "1000.00"),
                line(2, "free-payment", fees, "Diritti & bolli", "234.56"),
            ],
            type_names: [
                (tari, "TARI".to_owned()),
                (fees, "Diritti di segreteria".to_owned()),
            ]
            .into(),
            total: Money::parse_eur("1234.56").unwrap(),
            paid_at: Utc
                .with_ymd_and_hms(2026, 12, 31, 23, 15, 0)
                .single()
                .unwrap(),
            returned: match kind {
                NotificationKind::RefundReceipt
                | NotificationKind::RefundNotice
                | NotificationKind::DuplicatePayment => Some(Money::parse_eur("234.56").unwrap()),
                _ => None,
            },
            references: Vec::new(),
        },
    }
}

fn show(m: &RenderedMail) -> String {
    format!(
        "Subject: {}\n\n----- text/plain -----\n{}\n----- text/html -----\n{}",
        m.subject, m.text, m.html
    )
}

#[test]
fn snapshots_of_both_templates_in_both_languages() {
    let t = Templates::default();
    for (name, kind, locale, status) in [
        (
            "receipt_it",
            NotificationKind::Receipt,
            Locale::It,
            TxStatus::Paid,
        ),
        (
            "receipt_en",
            NotificationKind::Receipt,
            Locale::En,
            TxStatus::Paid,
        ),
        (
            "notice_it",
            NotificationKind::CreditorNotice,
            Locale::It,
            TxStatus::Paid,
        ),
        (
            "notice_en",
            NotificationKind::CreditorNotice,
            Locale::En,
            TxStatus::Paid,
        ),
        (
            "receipt_it_reported",
            NotificationKind::Receipt,
            Locale::It,
            TxStatus::Reported,
        ),
        (
            "receipt_en_reported",
            NotificationKind::Receipt,
            Locale::En,
            TxStatus::Reported,
        ),
        (
            "refund_it",
            NotificationKind::RefundReceipt,
            Locale::It,
            TxStatus::Refunded,
        ),
        (
            "refund_en",
            NotificationKind::RefundReceipt,
            Locale::En,
            TxStatus::Refunded,
        ),
        (
            "refund_notice_it",
            NotificationKind::RefundNotice,
            Locale::It,
            TxStatus::Refunded,
        ),
        (
            "refund_notice_en",
            NotificationKind::RefundNotice,
            Locale::En,
            TxStatus::Refunded,
        ),
        (
            "duplicate_it",
            NotificationKind::DuplicatePayment,
            Locale::It,
            TxStatus::Paid,
        ),
        (
            "duplicate_en",
            NotificationKind::DuplicatePayment,
            Locale::En,
            TxStatus::Paid,
        ),
    ] {
        let rendered = t.render(&notification(kind, locale, status)).unwrap();
        insta::assert_snapshot!(name, show(&rendered));
    }
}

#[test]
fn a_reported_transfer_says_it_awaits_verification() {
    let t = Templates::default();
    let it = t
        .render(&notification(
            NotificationKind::Receipt,
            Locale::It,
            TxStatus::Reported,
        ))
        .unwrap();
    assert!(it.text.contains("IN ATTESA DI VERIFICA") && it.html.contains("in attesa di verifica"));
    let en = t
        .render(&notification(
            NotificationKind::Receipt,
            Locale::En,
            TxStatus::Reported,
        ))
        .unwrap();
    assert!(
        en.text.contains("AWAITING VERIFICATION")
            && en.subject.starts_with("Bank transfer reported")
    );
    let paid = t
        .render(&notification(
            NotificationKind::Receipt,
            Locale::It,
            TxStatus::Paid,
        ))
        .unwrap();
    assert!(!paid.text.contains("ATTESA"));
}

#[test]
fn a_host_overrides_a_template_and_html_stays_escaped() {
    let mut t = Templates::default();
    t.set(
        "it/receipt.html",
        "<p>{{ payer_name }}: {% for i in items %}{{ i.reason }};{% endfor %}</p>",
    )
    .unwrap();
    t.set("it/receipt.subject", "Grazie, {{ payer_name }}")
        .unwrap();
    let m = t
        .render(&notification(
            NotificationKind::Receipt,
            Locale::It,
            TxStatus::Paid,
        ))
        .unwrap();
    assert_eq!(m.subject, "Grazie, Mario Rossi");
    assert_eq!(
        m.html,
        "<p>Mario Rossi: TARI 2026 &lt;rata 1&gt;;Diritti &amp; bolli;</p>"
    );
    assert!(matches!(
        t.set("it/unknown.html", "x"),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        t.set("it/receipt.txt", "{% if %}"),
        Err(Error::Validation(_))
    ));
}

#[test]
fn the_items_partial_serves_receipt_and_notice() {
    let mut t = Templates::default();
    t.set(
        "en/items.html",
        "<ol>{% for i in items %}<li>{{ i.reason }}</li>{% endfor %}</ol>",
    )
    .unwrap();
    for kind in [NotificationKind::Receipt, NotificationKind::CreditorNotice] {
        let m = t
            .render(&notification(kind, Locale::En, TxStatus::Paid))
            .unwrap();
        assert!(
            m.html
                .contains("<ol><li>TARI 2026 &lt;rata 1&gt;</li><li>Diritti &amp; bolli</li></ol>"),
            "{}",
            m.html
        );
        assert!(!m.html.contains("<table"));
    }
}
