//! The demo bodies: a municipality and a union of municipalities, each with its creditor
//! record, payment types, methods on its own accounts, bank account and pagoPA set-up.
//! Ids are fixed, so starting again on the same database updates rather than adds.

use payments_core::{
    Actor, AmountRule, Creditor, CreditorId, FieldKind, FieldSpec, MethodId, MethodKind, Money,
    PaymentMethod, PaymentType, PaymentTypeId, Payments, Result,
};
use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};
use payments_gateways::pagopa::{PagoPaCreditor, PagoPaGateway};
use uuid::Uuid;

/// The sender of receipts and notices (the portal's; each mail names its body).
pub(crate) const MAIL_FROM: &str = "Portale dei pagamenti <pagamenti@portale.example.it>";
/// What the sandbox offers: the hosted-page methods.
pub(crate) const SANDBOX_KINDS: [MethodKind; 3] = [
    MethodKind::Card,
    MethodKind::SepaDirectDebit,
    MethodKind::AccountDebit,
];

/// The payment types' codes, as modules name them: the municipality's...
pub(crate) const TARI: &str = "tari";
pub(crate) const FEES: &str = "diritti";
pub(crate) const BUILDING: &str = "oneri";
pub(crate) const SERVICES: &str = "servizi";
pub(crate) const FINES: &str = "sanzioni";
/// ... and the union's (its local police).
pub(crate) const ROAD_FINES: &str = "cds";

/// A body the portal serves, as the seed writes it.
#[derive(Debug)]
pub(crate) struct BodySpec {
    /// Its short name, in URLs, gateway ids and environment variables.
    pub(crate) slug: &'static str,
    name: &'static str,
    fiscal_code: &'static str,
    email: &'static str,
    /// The low bits of its fixed ids: the creditor is `n`, its methods `n * 100 + ...`.
    n: u128,
    /// Its treasury account.
    pub(crate) iban: &'static str,
    /// Its payment types (codes) and their pagoPA taxonomy.
    taxonomy: &'static [(&'static str, &'static str)],
    /// Whether the demo registers debt positions for it.
    pub(crate) positions: bool,
}

/// The municipality first (its accounts and gateways have the plain ids), then the union.
pub(crate) const BODIES: [&BodySpec; 2] = [
    &BodySpec {
        slug: "comune",
        name: "Comune di Esempio",
        fiscal_code: "00488410010",
        email: "ragioneria@comune.example.it",
        n: 1,
        iban: "IT60X0542811101000000123456",
        taxonomy: &[
            (TARI, "0101101IM"),
            (FEES, "0201102IM"),
            (BUILDING, "0301103IM"),
            (SERVICES, "0401104IM"),
            (FINES, "0501105IM"),
        ],
        positions: true,
    },
    &BodySpec {
        slug: "unione",
        name: "Unione dei Comuni della Valle Esempio",
        fiscal_code: "92012345671",
        email: "polizialocale@unione.example.it",
        n: 2,
        iban: "IT05Z0306911101000000654321",
        taxonomy: &[(ROAD_FINES, "0501105IM")],
        positions: false,
    },
];

impl BodySpec {
    /// Whether this is the municipality, the first body: its accounts and environment
    /// variables have the plain names, its ids are the ones a single-body portal had.
    pub(crate) fn is_first(&self) -> bool {
        self.n == 1
    }

    /// The id of this body's account with a provider: the provider's own name for the
    /// municipality (`sandbox`, `stripe`), with the body's slug for the others
    /// (`sandbox-unione`).
    pub(crate) fn gateway_id(&self, provider: &str) -> String {
        if self.is_first() {
            provider.to_owned()
        } else {
            format!("{provider}-{}", self.slug)
        }
    }

    /// Its creditor's fixed id.
    pub(crate) fn creditor_id(&self) -> CreditorId {
        CreditorId(id(self.n))
    }
}

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
        ROAD_FINES => 16,
        _ => 15,
    };
    PaymentTypeId(id(n))
}

/// The payment types of `body`.
fn payment_types(body: &BodySpec, creditor: CreditorId) -> Result<Vec<PaymentType>> {
    let eur = |s: &str| {
        Money::parse_eur(s).map_err(|e| payments_core::Error::invalid("amount", e.to_string()))
    };
    let report =
        || FieldSpec::required("report", "Numero verbale", FieldKind::Text { max_len: 20 });
    let plate = || FieldSpec::optional("plate", "Targa", FieldKind::Text { max_len: 10 });
    if !body.is_first() {
        return Ok(vec![
            PaymentType::new(creditor, ROAD_FINES, "Sanzioni codice della strada")
                .with_free_payments(true)
                .with_amount_rule(AmountRule::Range {
                    min: eur("10")?,
                    max: eur("5000")?,
                })
                .with_field(report())
                .with_field(plate()),
        ]);
    }
    Ok(vec![
        PaymentType::new(creditor, TARI, "TARI - Tassa rifiuti").with_field(FieldSpec::required(
            "year",
            "Anno",
            FieldKind::Integer {
                min: Some(2000),
                max: Some(2100),
            },
        )),
        PaymentType::new(creditor, FEES, "Diritti di segreteria")
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
        PaymentType::new(creditor, BUILDING, "Oneri di costruzione")
            .with_field(FieldSpec::required(
                "case_number",
                "Pratica edilizia",
                FieldKind::Text { max_len: 20 },
            ))
            .with_methods([MethodKind::BankTransfer, MethodKind::PagoPa]),
        PaymentType::new(creditor, SERVICES, "Servizi a domanda individuale").with_field(
            FieldSpec::required("invoice", "Numero fattura", FieldKind::Text { max_len: 20 }),
        ),
        PaymentType::new(creditor, FINES, "Sanzioni amministrative")
            .with_free_payments(true)
            .with_amount_rule(AmountRule::Range {
                min: eur("10")?,
                max: eur("2000")?,
            })
            .with_field(report())
            .with_field(plate())
            .with_field(FieldSpec::optional(
                "email",
                "Email per la ricevuta",
                FieldKind::Email,
            )),
    ])
}

/// Registers `body`, its payment types and its methods (on its own sandbox account), its
/// treasury account and its pagoPA configuration.
pub(crate) async fn install(
    payments: &Payments,
    body: &BodySpec,
    bank: &BankTransferGateway,
    pagopa: &PagoPaGateway,
    with_sandbox: bool,
) -> Result<Creditor> {
    let system = Actor::System;
    let mut creditor = Creditor::new(body.name, body.fiscal_code, body.email)?;
    creditor.id = body.creditor_id();
    payments.register_creditor(&system, &creditor).await?;
    for mut t in payment_types(body, creditor.id)? {
        t.id = type_id(&t.code);
        payments.define_payment_type(&system, &t).await?;
    }
    let sandbox = body.gateway_id("sandbox");
    let methods = [
        (1, MethodKind::Card, sandbox.as_str()),
        (2, MethodKind::SepaDirectDebit, sandbox.as_str()),
        (3, MethodKind::AccountDebit, sandbox.as_str()),
        (4, MethodKind::BankTransfer, "bank_transfer"),
        (5, MethodKind::PagoPa, "pagopa"),
    ];
    for (n, kind, gateway) in methods {
        let mut method = PaymentMethod::new(creditor.id, kind, gateway);
        method.id = method_id(body, 20 + n);
        // Stored disabled otherwise, so a database that had them offers them no more.
        method.enabled = gateway != sandbox.as_str() || with_sandbox;
        payments.enable_method(&system, &method).await?;
    }
    bank.set_account(
        creditor.id,
        BankAccount::new(format!("{} - Tesoreria", body.name), body.iban)?,
    );
    // Notices only: a portal online with pagoPA also gives its checkout address and key.
    // Each body has its own station at pagoPA, brokered by itself: requests naming
    // another are refused (PAA_ID_INTERMEDIARIO_ERRATO, PAA_STAZIONE_INT_ERRATA).
    let mut config = PagoPaCreditor::new("01")?
        .with_iban(body.iban)?
        .with_station(body.fiscal_code, &format!("{}_01", body.fiscal_code))?
        .notices_only();
    for (code, taxonomy) in body.taxonomy {
        config = config.with_taxonomy(type_id(code), taxonomy)?;
    }
    pagopa.set_creditor(&creditor, config)?;
    Ok(creditor)
}

/// A method's fixed id: the municipality's keep the ids they always had (21, 22, ...).
fn method_id(body: &BodySpec, n: u128) -> MethodId {
    MethodId(id((body.n - 1) * 1000 + n))
}

/// Enables `kinds` of `body` through its card-provider account `gateway`, with fixed ids
/// from `base`.
pub(crate) async fn enable(
    payments: &Payments,
    body: &BodySpec,
    gateway: &str,
    base: u128,
    kinds: &[MethodKind],
) -> Result<()> {
    for (n, kind) in kinds.iter().enumerate() {
        let mut method = PaymentMethod::new(body.creditor_id(), *kind, gateway);
        method.id = method_id(body, base + n as u128);
        payments.enable_method(&Actor::System, &method).await?;
    }
    Ok(())
}
