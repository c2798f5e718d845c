//! The [`Notifier`] conformance suite.

use async_trait::async_trait;
use chrono::{TimeZone, Utc};

use crate::{
    CreditorId, ItemId, Locale, MethodKind, Money, Notification, NotificationKind, Notifier,
    OutboxId, PaymentTypeId, RecordingNotifier, Source, TransactionId, TransactionLine,
    TransactionSummary,
};

/// A message as its recipient received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The subject.
    pub subject: String,
    /// The text a person reads (for HTML email, its plain-text part).
    pub body: String,
}

/// Reads what arrived: the test SMTP server's mailbox, the mail folder, the recording.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// The messages delivered to `to` so far, oldest first.
    async fn received(&self, to: &str) -> Vec<ReceivedMessage>;
}

#[async_trait]
impl Inbox for RecordingNotifier {
    async fn received(&self, to: &str) -> Vec<ReceivedMessage> {
        self.sent()
            .into_iter()
            .filter(|(n, _)| n.to == to)
            .map(|(_, r)| ReceivedMessage {
                subject: r.subject,
                body: r.text,
            })
            .collect()
    }
}

/// A notification about a paid transaction of € 1.234,56 in two items.
pub fn sample_notification(kind: NotificationKind, to: &str, locale: Locale) -> Notification {
    let line = |reason: &str, amount: &str, key: &str| TransactionLine {
        item_id: ItemId::new(),
        source: Source::new("tributi", key),
        payment_type_id: PaymentTypeId::new(),
        reason: reason.into(),
        amount: Money::parse_eur(amount).expect("amount"),
        paid_at: None,
    };
    let lines = vec![
        line("TARI 2026 rata 1", "1000.00", "a"),
        line("Diritti di segreteria", "234.56", "b"),
    ];
    let type_names = [
        (lines[0].payment_type_id, "TARI".to_owned()),
        (lines[1].payment_type_id, "Diritti di segreteria".to_owned()),
    ]
    .into();
    let id = OutboxId::new();
    Notification {
        id,
        kind,
        to: to.into(),
        locale,
        summary: TransactionSummary {
            status: crate::TxStatus::Paid,
            type_names,
            transaction_id: TransactionId::new(),
            provider_ref: Some("PRV-42".into()),
            creditor_id: CreditorId::new(),
            creditor_name: "Comune di Prova".into(),
            creditor_fiscal_code: "00488410010".into(),
            payer_id: "alice".into(),
            payer_name: "Alice Bianchi".into(),
            payer_fiscal_code: None,
            method_kind: MethodKind::Card,
            total: Money::parse_eur("1234.56").expect("amount"),
            lines,
            paid_at: Utc
                .with_ymd_and_hms(2026, 3, 1, 10, 30, 0)
                .single()
                .expect("date"),
            returned: None,
            references: Vec::new(),
        },
    }
}

/// Runs every check: `notifier` sends, `inbox` reads what arrived. Addresses used:
/// `alice@example.it`, `bob@example.it` and `ente@example.it`.
pub async fn run_all(notifier: &dyn Notifier, inbox: &dyn Inbox) {
    let it = sample_notification(NotificationKind::Receipt, "alice@example.it", Locale::It);
    notifier.send(&it).await.expect("send the Italian receipt");
    let got = inbox.received("alice@example.it").await;
    assert_eq!(got.len(), 1, "the receipt arrives once, to its recipient");
    let m = &got[0];
    let id = it.summary.transaction_id.to_string();
    assert!(
        m.subject.contains("Ricevuta"),
        "an Italian receipt's subject: {}",
        m.subject
    );
    assert!(
        m.subject.contains(&id) || m.body.contains(&id),
        "the payment identifier is shown"
    );
    for needle in [
        "€ 1.234,56",
        "€ 1.000,00",
        "€ 234,56",
        "TARI 2026 rata 1",
        "Comune di Prova",
        "PRV-42",
    ] {
        assert!(
            m.body.contains(needle),
            "the Italian receipt shows {needle:?}:\n{}",
            m.body
        );
    }

    let en = sample_notification(NotificationKind::Receipt, "bob@example.it", Locale::En);
    notifier.send(&en).await.expect("send the English receipt");
    let got = inbox.received("bob@example.it").await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].subject.contains("receipt"),
        "an English receipt's subject: {}",
        got[0].subject
    );
    assert!(
        got[0].body.contains("€1,234.56"),
        "the English receipt shows the total:\n{}",
        got[0].body
    );

    let notice = sample_notification(
        NotificationKind::CreditorNotice,
        "ente@example.it",
        Locale::It,
    );
    notifier
        .send(&notice)
        .await
        .expect("send the creditor's notice");
    let got = inbox.received("ente@example.it").await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .body
            .contains(&notice.summary.transaction_id.to_string()),
        "the notice shows the payment identifier"
    );
    assert!(
        got[0].body.contains("Alice Bianchi"),
        "the notice shows the payer"
    );
    assert_eq!(
        inbox.received("alice@example.it").await.len(),
        1,
        "nobody else gets another's message"
    );
}
