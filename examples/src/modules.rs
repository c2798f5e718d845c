//! The demo modules, standing for the portal's services: four of the municipality, one of
//! the union. Each holds its own data (what each citizen owes), puts an item in the
//! citizen's cart when they press **Paga**, and learns through its [`SettlementListener`]
//! that the item was paid.
//!
//! A module's data is its own business: here a list in memory and a file of the keys paid,
//! so that "Pagato" survives a restart. Settlements arrive at least once, so marking an
//! item paid twice changes nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use payments_core::{
    Actor, CartId, Error, Money, NewItem, PayableItem, Payments, Result, Settlement,
    SettlementListener, Source,
};

use crate::auth::{AccountKind, Accounts};
use crate::seed;

/// Something a citizen owes to a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The module's own key for it (the item's [`Source`] key).
    pub key: String,
    /// The citizen's fiscal code.
    pub payer: String,
    /// What it is for.
    pub reason: String,
    /// How much.
    pub amount: Money,
    /// When it falls due.
    pub due_date: Option<NaiveDate>,
    /// The payment type's extra fields.
    pub extra: Vec<(String, String)>,
    /// Whether the module has heard it was paid.
    pub paid: bool,
}

/// One of the portal's services.
#[derive(Debug)]
pub struct DemoModule {
    /// The module's name, as items' [`Source`] carry it: `tributi`, `segreteria`,
    /// `edilizia`, `servizi`.
    pub name: &'static str,
    /// Its title in Italian and English.
    pub title: (&'static str, &'static str),
    payment_type: &'static str,
    dues: Mutex<Vec<Due>>,
    paid_file: PathBuf,
}

/// The modules of `body`, their paid keys read from `data_dir`: the municipality's four,
/// the union's local police.
pub(crate) fn demo_modules(body: &seed::BodySpec, data_dir: &Path) -> Result<Vec<Arc<DemoModule>>> {
    let module = |name, title, payment_type| {
        Arc::new(DemoModule {
            name,
            title,
            payment_type,
            dues: Mutex::new(Vec::new()),
            paid_file: data_dir.join(format!("module-{name}.paid")),
        })
    };
    if !body.is_first() {
        return Ok(vec![module(
            "polizia",
            ("Polizia locale: verbali", "Local police: fines"),
            seed::ROAD_FINES,
        )]);
    }
    Ok(vec![
        module(
            "tributi",
            ("Tributi: TARI", "Taxes: TARI (waste)"),
            seed::TARI,
        ),
        module(
            "segreteria",
            ("Segreteria: pratiche", "Secretariat: cases"),
            seed::FEES,
        ),
        module(
            "edilizia",
            ("Edilizia: oneri", "Building: charges"),
            seed::BUILDING,
        ),
        module(
            "servizi",
            ("Servizi a domanda", "On-demand services"),
            seed::SERVICES,
        ),
    ])
}

impl DemoModule {
    /// Fills the module's data for every citizen account; the keys already paid come from
    /// its file.
    pub(crate) fn seed(&self, accounts: &dyn Accounts) -> Result<()> {
        let paid: BTreeSet<String> = std::fs::read_to_string(&self.paid_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let eur =
            |s: &str| Money::parse_eur(s).map_err(|e| Error::invalid("amount", e.to_string()));
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let mut dues = Vec::new();
        for account in accounts.list() {
            let AccountKind::Citizen { fiscal_code, .. } = &account.kind else {
                continue;
            };
            let due =
                |key: String, reason: &str, amount: Money, due_date, extra: &[(&str, &str)]| Due {
                    paid: paid.contains(&key),
                    key,
                    payer: fiscal_code.clone(),
                    reason: reason.into(),
                    amount,
                    due_date,
                    extra: extra
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                };
            match self.name {
                "tributi" => {
                    for (n, when) in [(1, "2026-05-31"), (2, "2026-09-30"), (3, "2026-12-16")] {
                        dues.push(due(
                            format!("TARI-2026-{n}-{fiscal_code}"),
                            &format!("TARI 2026, rata {n} di 3"),
                            eur("182.40")?,
                            date(when),
                            &[("year", "2026")],
                        ));
                    }
                }
                "segreteria" => dues.push(due(
                    format!("SUAP-2026-77-{fiscal_code}"),
                    "Diritti di segreteria, pratica SUAP 2026/77",
                    eur("16.00")?,
                    date("2026-12-31"),
                    &[("case_number", "2026/77"), ("office", "commercio")],
                )),
                "edilizia" => dues.push(due(
                    format!("PE-2026-031-{fiscal_code}"),
                    "Oneri di costruzione, pratica PE-2026-031",
                    eur("1250.00")?,
                    date("2027-01-31"),
                    &[("case_number", "PE-2026-031")],
                )),
                "polizia" => dues.push(due(
                    format!("VERBALE-2026-4411-{fiscal_code}"),
                    "Verbale 2026/4411, art. 7 codice della strada",
                    eur("42.00")?,
                    date("2026-12-20"),
                    &[("report", "2026/4411"), ("plate", "AB123CD")],
                )),
                _ => dues.push(due(
                    format!("MENSA-2026-11-{fiscal_code}"),
                    "Mensa scolastica, novembre 2026",
                    eur("45.60")?,
                    date("2026-12-10"),
                    &[("invoice", "F-2026-1187")],
                )),
            }
        }
        *self.dues.lock().unwrap_or_else(|e| e.into_inner()) = dues;
        Ok(())
    }

    /// What the citizen with `fiscal_code` owes this module, paid or not.
    pub fn dues_of(&self, fiscal_code: &str) -> Vec<Due> {
        let dues = self.dues.lock().unwrap_or_else(|e| e.into_inner());
        dues.iter()
            .filter(|d| d.payer == fiscal_code)
            .cloned()
            .collect()
    }

    /// Puts the due with `key` in the citizen's cart: the module's own call to the library.
    /// Pressing **Paga** twice adds it once (the library is idempotent on the source).
    pub async fn add_to_cart(
        &self,
        payments: &Payments,
        actor: &Actor,
        cart: CartId,
        fiscal_code: &str,
        key: &str,
    ) -> Result<PayableItem> {
        let due = self
            .dues_of(fiscal_code)
            .into_iter()
            .find(|d| d.key == key)
            .ok_or_else(|| Error::not_found("due", key))?;
        let mut item = NewItem::new(
            Source::new(self.name, due.key.as_str()),
            seed::type_id(self.payment_type),
            due.reason.as_str(),
            due.amount,
        );
        if let Some(date) = due.due_date {
            item = item.with_due_date(date);
        }
        for (k, v) in &due.extra {
            item = item.with_extra(k.as_str(), v.as_str());
        }
        payments.add_item(actor, cart, item).await
    }
}

#[async_trait]
impl SettlementListener for DemoModule {
    async fn settled(&self, settlement: &Settlement) -> Result<()> {
        let key = &settlement.source.key;
        let newly = {
            let mut dues = self.dues.lock().unwrap_or_else(|e| e.into_inner());
            match dues.iter_mut().find(|d| &d.key == key) {
                Some(d) if !d.paid => {
                    d.paid = true;
                    true
                }
                Some(_) => false,
                None => return Err(Error::not_found("due", key)),
            }
        };
        if newly {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.paid_file)
                .map_err(|e| Error::storage("recording a paid due", e))?;
            writeln!(file, "{key}").map_err(|e| Error::storage("recording a paid due", e))?;
        }
        Ok(())
    }

    /// Money given back in full: the due is owed again (the citizen sees **Paga**).
    async fn refunded(&self, refund: &payments_core::RefundSettlement) -> Result<()> {
        if !refund.in_full {
            return Ok(());
        }
        let paid: Vec<String> = {
            let mut dues = self.dues.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = dues.iter_mut().find(|d| d.key == refund.source.key) {
                d.paid = false;
            }
            dues.iter()
                .filter(|d| d.paid)
                .map(|d| d.key.clone())
                .collect()
        };
        let mut text = paid.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&self.paid_file, text)
            .map_err(|e| Error::storage("recording a refunded due", e))
    }
}
