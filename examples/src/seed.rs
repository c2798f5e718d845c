//! The demo body: its creditor record, payment types, methods, bank account and pagoPA
//! set-up. Ids are fixed, so starting again on the same database updates rather than adds.

use payments_core::{
    Actor, AmountRule, Creditor, CreditorId, FieldKind, FieldSpec, MethodId, MethodKind, Money,
    PaymentMethod, PaymentType, PaymentTypeId, Payments, Result,
};
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};
use payments_gateways::pagopa::{PagoPaCreditor, PagoPaGateway};
use uuid::Uuid;

/// The sender of receipts and notices.
pub(crate) const MAIL_FROM: &str = "Comune di Esempio <pagamenti@comune.example.it>";
/// The sandbox's signing key: a demo value, as a real provider's secret comes from the
/// environment.
pub(crate) const SANDBOX_KEY: &str = "portal-sandbox-signing-key";
/// The key pagoPA's requests carry (a header) in this demo.
pub(crate) const PAGOPA_KEY: &str = "portal-pagopa-station-key";
/// What the sandbox offers: the hosted-page methods.
pub(crate) const SANDBOX_KINDS: [MethodKind; 3] = [
    MethodKind::Card,
    MethodKind::SepaDirectDebit,
    MethodKind::AccountDebit,
];
/// The treasury account transfers go to.
pub(crate) const IBAN: &str = "IT60X0542811101000000123456";

/// The payment types' codes, as modules name them.
pub(crate) const TARI: &str = "tari";
pub(crate) const FEES: &str = "diritti";
pub(crate) const BUILDING: &str = "oneri";
pub(crate) const SERVICES: &str = "servizi";
pub(crate) const FINES: &str = "sanzioni";

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

/// The fixed id of the payment type with `code`.
pub(crate) fn type_id(code: &str) -> PaymentTypeId {
    let n = match code {
        TARI => 11,
        FEES => 12,
        BUILDING => 13,
        SERVICES => 14,
        _ => 15,
    };
    PaymentTypeId(id(n))
}

/// Registers the body, its payment types and methods, its treasury account and its pagoPA
/// configuration.
pub(crate) async fn install(
    payments: &Payments,
    bank: &BankTransferGateway,
    pagopa: &PagoPaGateway,
) -> Result<Creditor> {
    let system = Actor::System;
    let mut creditor = Creditor::new(
        "Comune di Esempio",
        "00488410010",
        "ragioneria@comune.example.it",
    )?;
    creditor.id = CreditorId(id(1));
    payments.register_creditor(&system, &creditor).await?;
    let eur = |s: &str| {
        Money::parse_eur(s).map_err(|e| payments_core::Error::invalid("amount", e.to_string()))
    };
    let types = [
        PaymentType::new(creditor.id, TARI, "TARI - Tassa rifiuti").with_field(
            FieldSpec::required(
                "year",
                "Anno",
                FieldKind::Integer {
                    min: Some(2000),
                    max: Some(2100),
                },
            ),
        ),
        PaymentType::new(creditor.id, FEES, "Diritti di segreteria")
            .with_free_payments(true)
            .with_amount_rule(AmountRule::Range {
                min: eur("1")?,
                max: eur("500")?,
            })
            .with_field(FieldSpec::required(
                "case_number",
                "Numero pratica",
                FieldKind::Text { max_len: 20 },
            ))
            .with_field(FieldSpec::required(
                "office",
                "Ufficio",
                FieldKind::OneOf {
                    options: vec!["edilizia".into(), "anagrafe".into(), "commercio".into()],
                },
            ))
            .with_field(FieldSpec::optional(
                "filed_on",
                "Data di presentazione",
                FieldKind::Date,
            )),
        // Building charges are paid by transfer or pagoPA only: not by card.
        PaymentType::new(creditor.id, BUILDING, "Oneri di costruzione")
            .with_field(FieldSpec::required(
                "case_number",
                "Pratica edilizia",
                FieldKind::Text { max_len: 20 },
            ))
            .with_methods([MethodKind::BankTransfer, MethodKind::PagoPa]),
        PaymentType::new(creditor.id, SERVICES, "Servizi a domanda individuale").with_field(
            FieldSpec::required("invoice", "Numero fattura", FieldKind::Text { max_len: 20 }),
        ),
        PaymentType::new(creditor.id, FINES, "Sanzioni amministrative")
            .with_free_payments(true)
            .with_amount_rule(AmountRule::Range {
                min: eur("10")?,
                max: eur("2000")?,
            })
            .with_field(FieldSpec::required(
                "report",
                "Numero verbale",
                FieldKind::Text { max_len: 20 },
            ))
            .with_field(FieldSpec::optional(
                "plate",
                "Targa",
                FieldKind::Text { max_len: 10 },
            ))
            .with_field(FieldSpec::optional(
                "email",
                "Email per la ricevuta",
                FieldKind::Email,
            )),
    ];
    for mut t in types {
        t.id = type_id(&t.code);
        payments.define_payment_type(&system, &t).await?;
    }
    let methods = [
        (21, MethodKind::Card, "sandbox"),
        (22, MethodKind::SepaDirectDebit, "sandbox"),
        (23, MethodKind::AccountDebit, "sandbox"),
        (24, MethodKind::BankTransfer, "bank_transfer"),
        (25, MethodKind::PagoPa, "pagopa"),
    ];
    for (n, kind, gateway) in methods {
        let mut method = PaymentMethod::new(creditor.id, kind, gateway);
        method.id = MethodId(id(n));
        payments.enable_method(&system, &method).await?;
    }
    bank.set_account(
        creditor.id,
        BankAccount::new("Comune di Esempio - Tesoreria", IBAN)?,
    );
    // Notices only: a portal online with pagoPA also gives its checkout address and key.
    let mut config = PagoPaCreditor::new("01")?.with_iban(IBAN)?.notices_only();
    for (code, taxonomy) in [
        (TARI, "0101101IM"),
        (FEES, "0201102IM"),
        (BUILDING, "0301103IM"),
        (SERVICES, "0401104IM"),
        (FINES, "0501105IM"),
    ] {
        config = config.with_taxonomy(type_id(code), taxonomy)?;
    }
    pagopa.set_creditor(&creditor, config)?;
    Ok(creditor)
}

/// Enables `kinds` through a card provider (`stripe`, `nexi`), with fixed ids.
pub(crate) async fn enable(
    payments: &Payments,
    creditor: &Creditor,
    gateway: &str,
    kinds: &[MethodKind],
) -> Result<()> {
    let base = if gateway == "stripe" { 40 } else { 50 };
    for (n, kind) in kinds.iter().enumerate() {
        let mut method = PaymentMethod::new(creditor.id, *kind, gateway);
        method.id = MethodId(id(base + n as u128));
        payments.enable_method(&Actor::System, &method).await?;
    }
    Ok(())
}
