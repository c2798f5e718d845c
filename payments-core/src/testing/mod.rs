//! Conformance suites and fixtures (feature `testing`).
//!
//! Every implementation of a trait runs its suite; an adapter is done when its suite
//! passes. The suites panic, with a message naming the broken promise, on the first
//! failure, so they are called from `#[tokio::test]` functions:
//!
//! ```
//! use std::sync::Arc;
//! use payments_core::{InMemoryStore, Store};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! payments_core::testing::store::run_all(|| async { Arc::new(InMemoryStore::new()) as Arc<dyn Store> }).await;
//! # }
//! ```
//!
//! | suite | for | needs |
//! | --- | --- | --- |
//! | [`store::run_all`] | a [`Store`](crate::Store) | a function that makes an empty store |
//! | [`money`] | (run by [`store::run_all`]) late, double and line payments, exceptions, refunds that end later | |
//! | [`gateway::run_all`] | a [`Gateway`](crate::Gateway) | a [`gateway::GatewayDriver`] that plays the provider |
//! | [`notifier::run_all`] | a [`Notifier`](crate::Notifier) | a [`notifier::Inbox`] that reads what arrived |

pub mod gateway;
pub mod money;
pub mod notifier;
pub mod positions;
pub mod store;

use crate::{
    Actor, AmountRule, Checkout, Creditor, FieldKind, FieldSpec, MethodKind, Money, NewFreeItem,
    Payer, PaymentMethod, PaymentType, Payments, Result,
};

/// This process's peak resident memory so far, in KiB (`VmHWM` of `/proc/self/status`;
/// 0 where there is none): what the benchmarks report, each measured in a child process of
/// its own.
pub fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The repeated measures of one figure in a benchmark, reported as median, minimum and
/// maximum: on a shared machine one run's figure is not a result.
///
/// ```
/// let mut s = payments_core::testing::Spread::default();
/// for v in [3.0, 1.0, 2.0, 10.0, 2.5] {
///     s.push(v);
/// }
/// assert_eq!((s.min(), s.median(), s.max()), (1.0, 2.5, 10.0));
/// assert_eq!(s.show(1), "2.5 (1.0 to 10.0, 5 runs)");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Spread(Vec<f64>);

impl Spread {
    /// Adds one run's figure.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// How many runs were measured.
    pub fn runs(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The smallest figure (NaN without runs).
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The largest figure (NaN without runs).
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// The median: the middle figure, or the mean of the two middle ones (NaN without runs).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// `median (min to max, N runs)`, each with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.decimals$} ({:.decimals$} to {:.decimals$}, {} runs)",
            self.median(),
            self.min(),
            self.max(),
            self.runs()
        )
    }
}

/// A creditor set up as a typical municipality, for tests and examples.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// "Comune di Esempio".
    pub creditor: Creditor,
    /// TARI (waste tax): items come from the `tributi` module; a required `year` field;
    /// no free payments; every method.
    pub tari: PaymentType,
    /// Secretarial fees (*diritti di segreteria*): free payments allowed, amount from
    /// € 1 to € 500, a required `case_number` (text, 20), an optional `email`, an optional
    /// `fiscal_code`, a required `office` among a list; card and bank transfer only.
    pub fees: PaymentType,
    /// Building charges: items come from the `edilizia` module; fixed € 150,00; no free
    /// payments; every method.
    pub building: PaymentType,
    /// One enabled method per kind the gateway serves.
    pub methods: Vec<PaymentMethod>,
}

impl Fixture {
    /// Registers the creditor, its payment types and a method for each of `kinds` run by
    /// `gateway`, through `payments` as the system.
    pub async fn install(
        payments: &Payments,
        gateway: &str,
        kinds: &[MethodKind],
    ) -> Result<Fixture> {
        let system = Actor::System;
        let creditor = Creditor::new(
            "Comune di Esempio",
            "00488410010",
            "ragioneria@comune.example.it",
        )?;
        payments.register_creditor(&system, &creditor).await?;
        let tari = PaymentType::new(creditor.id, "tari", "TARI - Tassa rifiuti").with_field(
            FieldSpec::required(
                "year",
                "Anno",
                FieldKind::Integer {
                    min: Some(2000),
                    max: Some(2100),
                },
            ),
        );
        let fees = PaymentType::new(creditor.id, "diritti", "Diritti di segreteria")
            .with_free_payments(true)
            .with_amount_rule(AmountRule::Range {
                min: Money::parse_eur("1")?,
                max: Money::parse_eur("500")?,
            })
            .with_field(FieldSpec::required(
                "case_number",
                "Numero pratica",
                FieldKind::Text { max_len: 20 },
            ))
            .with_field(FieldSpec::optional("email", "Email", FieldKind::Email))
            .with_field(FieldSpec::optional(
                "fiscal_code",
                "Codice fiscale",
                FieldKind::FiscalCode,
            ))
            .with_field(FieldSpec::optional(
                "filed_on",
                "Data di presentazione",
                FieldKind::Date,
            ))
            .with_field(FieldSpec::required(
                "office",
                "Ufficio",
                FieldKind::OneOf {
                    options: vec!["edilizia".into(), "anagrafe".into()],
                },
            ))
            .with_methods([MethodKind::Card, MethodKind::BankTransfer]);
        let building = PaymentType::new(creditor.id, "oneri", "Oneri di costruzione")
            .with_amount_rule(AmountRule::Fixed {
                amount: Money::parse_eur("150")?,
            });
        for t in [&tari, &fees, &building] {
            payments.define_payment_type(&system, t).await?;
        }
        let mut methods = Vec::new();
        for kind in kinds {
            let m = PaymentMethod::new(creditor.id, *kind, gateway);
            payments.enable_method(&system, &m).await?;
            methods.push(m);
        }
        Ok(Fixture {
            creditor,
            tari,
            fees,
            building,
            methods,
        })
    }

    /// The method of `kind`.
    pub fn method(&self, kind: MethodKind) -> &PaymentMethod {
        self.methods
            .iter()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("the fixture has no {kind:?} method"))
    }

    /// `payer` pays a secretarial fee of `amount` (case number `payer`) in one checkout
    /// with the method of `kind`.
    pub async fn pay_fee(
        &self,
        payments: &Payments,
        payer: &str,
        amount: &str,
        kind: MethodKind,
    ) -> Result<Checkout> {
        let actor = Actor::payer(payer);
        let cart = payments
            .open_cart(&actor, self.creditor.id, Fixture::payer(payer))
            .await?;
        let fee = NewFreeItem::new(self.fees.id, amount, format!("Diritti pratica {payer}"))
            .with_extra("case_number", payer)
            .with_extra("office", "edilizia");
        payments.add_free_item(&actor, cart.id, fee).await?;
        payments
            .checkout(&actor, cart.id, self.method(kind).id, "pay-fee")
            .await
    }

    /// A payer with an email address.
    pub fn payer(id: &str) -> Payer {
        Payer::new(id, format!("Citizen {id}"))
            .with_email(format!("{}@example.it", id.to_lowercase()))
    }
}
