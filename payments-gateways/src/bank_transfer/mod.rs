//! Bank transfer (*bonifico*): it starts at once, needs no contract with a provider and
//! costs the body nothing.
//!
//! - **Instructions.** At checkout the payer gets the beneficiary, the IBAN, the amount, a
//!   structured creditor reference (ISO 11649 `RF…`, derived from the transaction), a
//!   reason line that fits the 140 characters of the SEPA remittance field, and the EPC QR
//!   code payload that a banking app scans ([`BankTransferGateway::qr`] renders it as SVG
//!   or PNG).
//! - **The payer's report** (date, amount, CRO/TRN) moves the transaction to `Reported`
//!   through [`Payments::report_transfer`]; an operator confirms or rejects it
//!   ([`Payments::confirm_payment`], [`Payments::reject_report`]), and reports left
//!   unmatched too long are listed by [`BankTransferGateway::overdue_reports`].
//! - **Statements.** [`BankTransferGateway::import_statement`] reads an ISO 20022 camt.053
//!   statement or camt.054 notification and matches each credit to an open transaction,
//!   first by the `RF` reference (structured, or anywhere in the free text, spaces and all),
//!   then by the amount together with the reference written in the reason. A full match
//!   pays the transaction, keeping the bank's reference of the credit — also one that had
//!   expired or whose report was rejected: money is a fact, and the service settles its
//!   items if still free, or records a double payment. A partial amount, a duplicate, a
//!   reversal or a credit that matches nothing is recorded as an exception for an
//!   operator (a bank entry, and an entry in the ledger of exceptions). Each credit is
//!   recorded once, keyed by the bank's own reference, or by the statement's identity and
//!   the entry's position in it: importing a file again changes nothing, and two credits
//!   alike in every field are two entries. The file is checked whole first (a file that
//!   does not read changes nothing), then streamed entry by entry
//!   ([`camt::StatementReader`]) and recorded a chunk at a time
//!   ([`BankTransferGateway::with_import_chunk`]), each chunk written while the next is
//!   read and looked up: a crash in the middle loses nothing, and the same import run
//!   again completes it without paying anything twice.
//! - **Notifications.** A camt.054 credit notification posted to the host's webhook and
//!   signed with the key the body shares with its bank connector (HMAC-SHA256 of the raw
//!   body, hex, header `x-bank-signature`) is a callback like any provider's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> payments_core::Result<()> {
//! use std::sync::Arc;
//! use payments_core::testing::Fixture;
//! use payments_core::*;
//! use payments_gateways::bank_transfer::{BankAccount, BankTransferGateway};
//!
//! let bank = Arc::new(BankTransferGateway::new());
//! let payments = Payments::builder()
//!     .store(Arc::new(InMemoryStore::new()))
//!     .gateway(bank.clone())
//!     .notifier(Arc::new(RecordingNotifier::new()))
//!     .build()?;
//! let fx = Fixture::install(&payments, "bank_transfer", &[MethodKind::BankTransfer]).await?;
//! bank.set_account(
//!     fx.creditor.id,
//!     BankAccount::new("Comune di Esempio", "IT60 X054 2811 1010 0000 0123 456")?,
//! );
//!
//! let alice = Actor::payer("alice");
//! let cart = payments.open_cart(&alice, fx.creditor.id, Fixture::payer("alice")).await?;
//! let fee = NewFreeItem::new(fx.fees.id, "16,00", "Diritti pratica 2026/15")
//!     .with_extra("case_number", "2026/15")
//!     .with_extra("office", "edilizia");
//! payments.add_free_item(&alice, cart.id, fee).await?;
//! let method = fx.method(MethodKind::BankTransfer).id;
//! let checkout = payments.checkout(&alice, cart.id, method, "k1").await?;
//! let Instruction::BankTransfer(details) = &checkout.instruction else { unreachable!() };
//! assert!(details.reference.starts_with("RF"));
//! assert!(details.epc_qr_payload.starts_with("BCD\n002\n1\nSCT\n"));
//! let svg = BankTransferGateway::qr(details).expect("fits").svg(240);
//! assert!(svg.contains("<svg"));
//! # Ok(())
//! # }
//! ```
//!
//! [`Payments::report_transfer`]: payments_core::Payments::report_transfer
//! [`Payments::confirm_payment`]: payments_core::Payments::confirm_payment
//! [`Payments::reject_report`]: payments_core::Payments::reject_report

pub mod camt;
pub mod epc;
pub mod rf;

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use payments_core::{
    Actor, BankCredit, BankCreditDone, BankEntry, BankEntryOutcome, BankEntryQuery,
    BankTransferDetails, CallbackEvent, CallbackRequest, CreditorId, Currency, Error, Gateway,
    GatewayErrorKind, GatewayId, Instruction, MethodKind, Money, MovementQuery, PaymentOutcome,
    Payments, Result, Role, StartRequest, Started, StoredTransaction, Transaction, TransactionId,
    TxStatus,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::qr::{PaymentQr, QrError};
pub use camt::{Limits, StatementError};

/// The gateway's id, to bind bank-transfer methods to.
pub const GATEWAY_ID: &str = "bank_transfer";
/// The header that carries a notification's signature.
pub const SIGNATURE_HEADER: &str = "x-bank-signature";
/// The largest QR version an EPC code may use.
pub const EPC_MAX_QR_VERSION: i16 = 13;
/// The characters of the transaction-derived part of a reference.
const OWN_REFERENCE_LEN: usize = 12;
/// Crockford's base 32 alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// How the creditor reference is built and given to the payer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReferenceScheme {
    /// `RF` + check digits + an optional prefix of the body's (up to 9 letters and
    /// digits, for its accounting) + 12 characters derived from the transaction. The EPC
    /// code carries it in the structured field.
    #[default]
    Structured,
    /// As [`ReferenceScheme::Structured`], after this prefix.
    Prefixed(String),
    /// The same reference, but the EPC code carries the reason line as unstructured text
    /// (for payers whose banks drop structured references); matching still finds it.
    Unstructured,
}

/// A creditor's account for bank transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankAccount {
    beneficiary: String,
    iban: String,
    bic: Option<String>,
    scheme: ReferenceScheme,
    flag_after_days: u32,
    expire_after_days: u32,
}

impl BankAccount {
    /// An account in `beneficiary`'s name: the IBAN is checked (country format and check
    /// digits, by `iban_validate`) and kept in electronic form. Defaults: structured
    /// references, reports flagged after 5 days unmatched, transfers expiring after 30.
    pub fn new(beneficiary: impl Into<String>, iban: &str) -> Result<Self> {
        use iban::IbanLike;
        let beneficiary = beneficiary.into().trim().to_owned();
        if beneficiary.is_empty() || beneficiary.chars().count() > epc::MAX_NAME_CHARS {
            return Err(Error::invalid(
                "beneficiary",
                format!("must have 1 to {} characters", epc::MAX_NAME_CHARS),
            ));
        }
        let iban = iban
            .trim()
            .parse::<iban::Iban>()
            .map_err(|_| Error::invalid("iban", "not a valid IBAN"))?
            .electronic_str()
            .to_owned();
        Ok(BankAccount {
            beneficiary,
            iban,
            bic: None,
            scheme: ReferenceScheme::default(),
            flag_after_days: 5,
            expire_after_days: 30,
        })
    }

    /// Sets the BIC (8 or 11 characters).
    pub fn with_bic(mut self, bic: &str) -> Result<Self> {
        let bic = epc::normal_bic(bic)
            .ok_or_else(|| Error::invalid("bic", "a BIC has 8 or 11 letters and digits"))?;
        self.bic = Some(bic);
        Ok(self)
    }

    /// Sets the reference scheme; a prefix has 1 to 9 letters and digits.
    pub fn with_scheme(mut self, scheme: ReferenceScheme) -> Result<Self> {
        if let ReferenceScheme::Prefixed(p) = &scheme
            && (p.is_empty()
                || p.len() > rf::MAX_BODY_LEN - OWN_REFERENCE_LEN
                || !p.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(Error::invalid(
                "reference_scheme",
                "a prefix has 1 to 9 letters and digits",
            ));
        }
        self.scheme = match scheme {
            ReferenceScheme::Prefixed(p) => ReferenceScheme::Prefixed(p.to_ascii_uppercase()),
            s => s,
        };
        Ok(self)
    }

    /// After how many days a reported transfer still unmatched is flagged (1 to 365).
    pub fn flag_reports_after_days(mut self, days: u32) -> Result<Self> {
        if !(1..=365).contains(&days) {
            return Err(Error::invalid("flag_after_days", "must be 1 to 365"));
        }
        self.flag_after_days = days;
        Ok(self)
    }

    /// After how many days an unpaid, unreported transfer expires and frees its items
    /// (1 to 365).
    pub fn expire_after_days(mut self, days: u32) -> Result<Self> {
        if !(1..=365).contains(&days) {
            return Err(Error::invalid("expire_after_days", "must be 1 to 365"));
        }
        self.expire_after_days = days;
        Ok(self)
    }

    /// The beneficiary's name.
    pub fn beneficiary(&self) -> &str {
        &self.beneficiary
    }

    /// The IBAN, electronic form.
    pub fn iban(&self) -> &str {
        &self.iban
    }

    /// The creditor reference of `transaction`: `RF`, check digits, the prefix if any, and
    /// twelve characters derived from the transaction's id, in Crockford's base 32 (digits
    /// and letters but I, L, O and U, which a payer copying the reference would confuse).
    pub fn reference_for(&self, transaction: &Transaction) -> String {
        // The low 60 bits of a UUIDv7 are random: in base 32 they fill 12 characters.
        let mut n = transaction.id.as_uuid().as_u128() & ((1u128 << 60) - 1);
        let mut own = [b'0'; OWN_REFERENCE_LEN];
        for slot in own.iter_mut().rev() {
            *slot = CROCKFORD[(n % 32) as usize];
            n /= 32;
        }
        let own = std::str::from_utf8(&own).expect("ASCII");
        let body = match &self.scheme {
            ReferenceScheme::Prefixed(p) => format!("{p}{own}"),
            _ => own.to_owned(),
        };
        rf::creditor_reference(&body).expect("a body of letters and digits within 21")
    }

    /// The reason line: the reference in print form, then the items' reasons, cut to fit
    /// 140 characters (the reference is never cut).
    pub fn reason_for(&self, transaction: &Transaction, reference: &str) -> String {
        let mut line = rf::pretty(reference);
        let reasons: Vec<&str> = transaction
            .lines
            .iter()
            .map(|l| l.reason.as_str())
            .collect();
        if !reasons.is_empty() {
            line.push_str(" - ");
            line.push_str(&reasons.join("; "));
        }
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(epc::MAX_TEXT_CHARS)
            .collect();
        clean.trim_end().to_owned()
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The message's id.
    pub message_id: String,
    /// Credits that paid a transaction.
    pub matched: Vec<BankEntry>,
    /// Credits an operator must look at, each with its reason, and reversals of credits
    /// that had paid a transaction.
    pub exceptions: Vec<BankEntry>,
    /// pagoPA PSPs' transfers of a day's collections, each explained by its reporting flow
    /// (see [`BankEntryOutcome::Flow`]).
    pub flows: Vec<BankEntry>,
    /// Credits recorded by an earlier import, left as they were.
    pub already_imported: usize,
    /// Debits and entries not booked, which are not payments to the body.
    pub ignored: usize,
}

/// The bank-transfer gateway. Accounts are set per creditor; see the [module](self).
pub struct BankTransferGateway {
    accounts: RwLock<HashMap<CreditorId, BankAccount>>,
    default_account: Option<BankAccount>,
    notification_key: Option<SecretString>,
    limits: Limits,
    chunk: usize,
}

impl std::fmt::Debug for BankTransferGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankTransferGateway")
            .field("accounts", &self.read().len())
            .field("default_account", &self.default_account)
            .field(
                "notification_key",
                &self.notification_key.as_ref().map(|_| "[redacted]"),
            )
            .field("limits", &self.limits)
            .field("chunk", &self.chunk)
            .finish()
    }
}

impl Default for BankTransferGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl BankTransferGateway {
    /// A gateway with no accounts, no notification key and the default limits.
    pub fn new() -> Self {
        BankTransferGateway {
            accounts: RwLock::new(HashMap::new()),
            default_account: None,
            notification_key: None,
            limits: Limits::default(),
            chunk: IMPORT_CHUNK,
        }
    }

    /// Reads `movements` of an imported file at a time (at least 1; [`IMPORT_CHUNK`] by
    /// default), and records those that plainly pay an open transfer in one database
    /// transaction; every other credit splits the chunk and is recorded on its own.
    /// Larger chunks import faster and hold more in memory; a crash loses the chunk being
    /// written, which a rerun imports.
    pub fn with_import_chunk(mut self, movements: usize) -> Self {
        self.chunk = movements.max(1);
        self
    }

    /// Accepts camt.054 notifications signed with `key` (HMAC-SHA256, hex, in
    /// [`SIGNATURE_HEADER`]).
    pub fn with_notification_key(mut self, key: impl Into<String>) -> Self {
        self.notification_key = Some(SecretString::from(key.into()));
        self
    }

    /// Sets the limits statements are read with.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The account of every creditor that has none of its own: a portal serving one body
    /// sets just this.
    pub fn with_default_account(mut self, account: BankAccount) -> Self {
        self.default_account = Some(account);
        self
    }

    /// Sets `creditor`'s account, replacing any.
    pub fn set_account(&self, creditor: CreditorId, account: BankAccount) {
        self.accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(creditor, account);
    }

    /// `creditor`'s account, or the default one.
    pub fn account(&self, creditor: CreditorId) -> Option<BankAccount> {
        self.read()
            .get(&creditor)
            .cloned()
            .or_else(|| self.default_account.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<CreditorId, BankAccount>> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The lengths the references of the accounts set have.
    fn reference_lengths(&self) -> Vec<usize> {
        let accounts = self.read();
        accounts
            .values()
            .chain(self.default_account.iter())
            .map(|a| {
                4 + OWN_REFERENCE_LEN
                    + match &a.scheme {
                        ReferenceScheme::Prefixed(p) => p.len(),
                        _ => 0,
                    }
            })
            .collect()
    }

    fn error(kind: GatewayErrorKind) -> Error {
        Error::gateway(GATEWAY_ID, kind)
    }

    /// The EPC QR code of an instruction, to render as SVG or PNG.
    pub fn qr(details: &BankTransferDetails) -> std::result::Result<PaymentQr, QrError> {
        PaymentQr::new(&details.epc_qr_payload, EPC_MAX_QR_VERSION)
    }

    /// Signs a notification body as the body's bank connector does; for tests and for
    /// hosts that relay notifications themselves. `None` without a notification key.
    pub fn signed_notification(&self, body: impl Into<Vec<u8>>) -> Option<CallbackRequest> {
        let key = self.notification_key.as_ref()?;
        let body = body.into();
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        Some(CallbackRequest::new(body).with_header(SIGNATURE_HEADER, signature))
    }

    fn verify(&self, request: &CallbackRequest) -> Result<()> {
        let key = self
            .notification_key
            .as_ref()
            .ok_or_else(|| Self::error(GatewayErrorKind::NotSupported("notifications")))?;
        let signature = request
            .header(SIGNATURE_HEADER)
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or_else(|| Self::error(GatewayErrorKind::InvalidSignature))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(&request.body);
        mac.verify_slice(&signature)
            .map_err(|_| Self::error(GatewayErrorKind::InvalidSignature))
    }

    /// The reported transfers of `creditor` still unmatched after its account's
    /// `flag_reports_after_days`, oldest report first. For its operators.
    pub async fn overdue_reports(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: CreditorId,
    ) -> Result<Vec<Transaction>> {
        let account = self
            .account(creditor)
            .ok_or_else(|| Error::not_found("bank account of creditor", creditor))?;
        let due = payments.clock().now() - chrono::Duration::days(account.flag_after_days.into());
        let mut query = MovementQuery::new(creditor);
        query.statuses = vec![TxStatus::Reported];
        query.method_kind = Some(MethodKind::BankTransfer);
        query.limit = payments_core::MAX_PAGE_SIZE;
        let mut overdue = Vec::new();
        loop {
            let page = payments.search(actor, &query).await?;
            overdue.extend(page.page.items.into_iter().filter(|t| t.updated_at <= due));
            match page.page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        overdue.sort_by_key(|t| t.updated_at);
        Ok(overdue)
    }

    /// Imports a camt.053 statement or camt.054 notification holding `creditor`'s account
    /// and matches its credits; see the [module](self). A file may hold several accounts
    /// (a treasury's daily file): each account's entries go to the creditor whose account
    /// it is, and the actor must be a manager of each (the system may import any). A file
    /// that does not read, holds no statement, holds no account of `creditor`, or holds an
    /// account no creditor has, is refused whole (`Validation` on `statement`) and changes
    /// nothing.
    pub async fn import_statement(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: CreditorId,
        file: &[u8],
    ) -> Result<ImportReport> {
        actor.check_operator(&creditor, Role::Manager)?;
        let heads = read_whole(file, &self.limits)
            .map_err(|e| Error::invalid("statement", e.to_string()))?;
        self.import_message(payments, actor, Some(creditor), file, heads)
            .await
    }

    /// Receives a camt.054 notification posted by the body's bank connector, signed with
    /// the notification key, holding any number of credits and accounts: each booked credit
    /// is imported as a statement's would be, by the system (a notification seen again
    /// changes nothing). The host's webhook answers the connector with success once this
    /// returns `Ok`; `Gateway` errors (signature, a file that does not read) are the
    /// connector's to fix, and no retry will mend them.
    pub async fn receive_notification(
        &self,
        payments: &Payments,
        request: &CallbackRequest,
    ) -> Result<ImportReport> {
        self.verify(request)?;
        let heads = read_whole(&request.body, &self.limits)
            .map_err(|e| Self::error(GatewayErrorKind::Malformed(e.to_string())))?;
        self.import_message(payments, &Actor::System, None, &request.body, heads)
            .await
            .map_err(|e| match e {
                Error::Validation(v) => Self::error(GatewayErrorKind::Malformed(v.to_string())),
                e => e,
            })
    }

    /// The creditor whose account `iban` is: the one that set it, or `hint` when it is the
    /// default account (or several creditors set it and `hint` is one of them).
    fn owner_of(&self, iban: &str, hint: Option<CreditorId>) -> Option<CreditorId> {
        let accounts = self.read();
        let owners: Vec<CreditorId> = accounts
            .iter()
            .filter(|(_, a)| a.iban == iban)
            .map(|(c, _)| *c)
            .collect();
        match owners.as_slice() {
            [one] => Some(*one),
            [] => hint.filter(|h| {
                !accounts.contains_key(h)
                    && self
                        .default_account
                        .as_ref()
                        .is_some_and(|a| a.iban == iban)
            }),
            many => hint.filter(|h| many.contains(h)),
        }
    }

    /// Imports a file [`read_whole`] has checked, streaming it again entry by entry and
    /// recording a chunk of movements per database transaction
    /// ([`with_import_chunk`](Self::with_import_chunk)).
    ///
    /// The work is pipelined: while one chunk is written (each batch of plain credits in
    /// one database transaction, each other credit on its own), the next chunk is read
    /// from the file and its keys and transactions are looked up. Nothing of a chunk is
    /// written before the chunk before it has committed. Before a chunk is planned, what
    /// the write beside its lookup changed is looked up again (the transactions that write
    /// recorded entries for), and the keys of the chunk before count as recorded: each
    /// chunk is planned on what a movement-by-movement import would have seen. A batch's
    /// write runs in a task of its own ([`record_credits`]), on another thread of a
    /// multi-threaded runtime, and takes the transactions as the lookup read them: the
    /// store's compare-and-set refuses any that changed since, which are then decided on
    /// their own.
    async fn import_message(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: Option<CreditorId>,
        file: &[u8],
        (message_id, heads): (String, Vec<camt::ReportHead>),
    ) -> Result<ImportReport> {
        let mut owners = HashMap::new();
        for (_, account, _) in &heads {
            if owners.contains_key(account) {
                continue;
            }
            let owner = self.owner_of(account, creditor).ok_or_else(|| {
                Error::invalid(
                    "statement",
                    match creditor.and_then(|c| self.account(c)) {
                        Some(own) if heads.len() == 1 => format!(
                            "it is for account {account}, not the creditor's {}",
                            own.iban
                        ),
                        _ => format!("it holds account {account}, which is no creditor's account"),
                    },
                )
            })?;
            actor.check_operator(&owner, Role::Manager)?;
            owners.insert(account.clone(), owner);
        }
        if let Some(c) = creditor
            && !owners.values().any(|o| *o == c)
        {
            return Err(Error::invalid(
                "statement",
                "it holds no account of the creditor",
            ));
        }
        let mut report = ImportReport {
            message_id: message_id.clone(),
            ..ImportReport::default()
        };
        let mut reader = camt::StatementReader::new(file, &self.limits)
            .map_err(|e| Error::invalid("statement", e.to_string()))?;
        let lengths = self.reference_lengths();
        // The chunk looked up last, and what is to be written of it.
        let mut current: Option<(LookedUp, Vec<Step>)> = None;
        // The keys of the chunk before: it may be written while the next chunk's recorded
        // keys are looked up.
        let mut previous = std::collections::HashSet::new();
        loop {
            let write = async {
                match &current {
                    Some((looked, plan)) => {
                        self.write_plan(payments, actor, looked, plan, &lengths, &mut report)
                            .await
                    }
                    None => Ok(std::collections::HashSet::new()),
                }
            };
            let read = async {
                let chunk = self.read_chunk(&mut reader, &message_id).await?;
                if chunk.is_empty() {
                    return Ok(None);
                }
                self.look_up(payments, &owners, chunk, &lengths)
                    .await
                    .map(Some)
            };
            // The read first: on a store that never waits (in memory), a chunk of fewer
            // than 32 entries is then read and looked up before the write beside it runs,
            // the case the refresh below exists for.
            let (next, written) = futures::join!(read, write);
            let touched = written?;
            let Some(mut next) = next? else {
                break;
            };
            next.refresh(payments, &touched).await?;
            report.ignored += next.ignored;
            let plan;
            (plan, previous) = plan_chunk(payments, &next, &previous, &mut report);
            current = Some((next, plan));
        }
        Ok(report)
    }

    /// The next chunk of movements from `reader` (empty at the end of the file). It lets
    /// the write running beside it go on every few entries.
    async fn read_chunk(
        &self,
        reader: &mut camt::StatementReader<'_>,
        message_id: &str,
    ) -> Result<Vec<camt::Movement>> {
        let mut chunk: Vec<camt::Movement> = Vec::with_capacity(self.chunk + 16);
        let mut entries = 0;
        while chunk.len() < self.chunk {
            let Some(read) = reader
                .next_entry()
                .map_err(|e| Error::invalid("statement", e.to_string()))?
            else {
                break;
            };
            chunk.extend(read.movements(message_id));
            entries += 1;
            if entries % 32 == 0 {
                yield_now().await;
            }
        }
        Ok(chunk)
    }

    /// What a chunk needs, read at once: the keys already recorded, and the transactions
    /// its references (and its own keys, for a payment applied by an import that stopped
    /// before recording its entry) name. Reads only.
    async fn look_up(
        &self,
        payments: &Payments,
        owners: &HashMap<String, CreditorId>,
        chunk: Vec<camt::Movement>,
        lengths: &[usize],
    ) -> Result<LookedUp> {
        let store = payments.store();
        let mut ignored = 0;
        let mut credits = Vec::with_capacity(chunk.len());
        for (n, m) in chunk.iter().enumerate() {
            if !m.booked || (!m.credit && !m.reversal) {
                ignored += 1;
            } else {
                credits.push((n, owners[&m.account]));
            }
        }
        let mut known = std::collections::HashSet::new();
        let mut by_creditor: HashMap<CreditorId, Vec<String>> = HashMap::new();
        for (n, creditor) in &credits {
            by_creditor
                .entry(*creditor)
                .or_default()
                .push(chunk[*n].key.clone());
        }
        for (creditor, keys) in by_creditor {
            for k in store.bank_entry_keys(creditor, &keys).await? {
                known.insert((creditor, k));
            }
        }
        let candidates: Vec<Vec<String>> = credits
            .iter()
            .map(|(n, _)| candidates(&chunk[*n], lengths))
            .collect();
        let mut refs: Vec<String> = credits.iter().map(|(n, _)| chunk[*n].key.clone()).collect();
        refs.extend(candidates.iter().flatten().cloned());
        refs.sort_unstable();
        refs.dedup();
        let by_ref = by_reference(payments, &refs).await?;
        Ok(LookedUp {
            chunk,
            ignored,
            credits,
            candidates,
            known,
            by_ref,
        })
    }

    /// Writes a chunk's plan in order: each batch of plain credits in one database
    /// transaction, each other credit on its own. Answers the transactions the entries it
    /// recorded name (paid, returned, or an exception's).
    async fn write_plan(
        &self,
        payments: &Payments,
        actor: &Actor,
        looked: &LookedUp,
        plan: &[Step],
        lengths: &[usize],
        report: &mut ImportReport,
    ) -> Result<std::collections::HashSet<TransactionId>> {
        let before = (
            report.matched.len(),
            report.exceptions.len(),
            report.flows.len(),
        );
        for step in plan {
            match step {
                Step::Batch(batch) => {
                    self.flush(payments, actor, &looked.chunk, batch, lengths, report)
                        .await?;
                }
                Step::Alone(n, creditor) => {
                    self.import_alone(
                        payments,
                        actor,
                        *creditor,
                        &looked.chunk[*n],
                        lengths,
                        report,
                    )
                    .await?;
                }
            }
        }
        Ok(report.matched[before.0..]
            .iter()
            .chain(&report.exceptions[before.1..])
            .chain(&report.flows[before.2..])
            .filter_map(BankEntry::transaction_id)
            .collect())
    }

    /// Records the credits gathered (`batch`, by their place in `chunk`), in one database
    /// transaction; those the fast path leaves are then imported one by one.
    async fn flush(
        &self,
        payments: &Payments,
        actor: &Actor,
        chunk: &[camt::Movement],
        batch: &[(usize, BankCredit)],
        lengths: &[usize],
        report: &mut ImportReport,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let credits: Vec<BankCredit> = batch.iter().map(|(_, c)| c.clone()).collect();
        let done = record_credits(payments, actor, credits).await?;
        for ((n, credit), done) in batch.iter().zip(done) {
            match done {
                BankCreditDone::Recorded => report.matched.push(credit.entry.clone()),
                BankCreditDone::AlreadyRecorded => report.already_imported += 1,
                _ => {
                    self.import_alone(
                        payments,
                        actor,
                        credit.entry.creditor_id,
                        &chunk[*n],
                        lengths,
                        report,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Decides and records one credit on its own: every case, in two database
    /// transactions (the payment, then the entry); a rerun after a crash between them
    /// finds the payment by the credit's key.
    async fn import_alone(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: CreditorId,
        m: &camt::Movement,
        lengths: &[usize],
        report: &mut ImportReport,
    ) -> Result<()> {
        let (reference, outcome) = self.settle(payments, actor, creditor, m, lengths).await?;
        let entry = bank_entry(m, creditor, reference, outcome, payments.clock().now());
        if !payments.record_bank_entry(actor, &entry).await? {
            // Another import recorded it meanwhile.
            report.already_imported += 1;
        } else if entry.is_exception() {
            report.exceptions.push(entry);
        } else if entry.flow_id().is_some() {
            report.flows.push(entry);
        } else {
            report.matched.push(entry);
        }
        Ok(())
    }

    /// Decides what one credit does, and pays the transaction it matches in full.
    async fn settle(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: CreditorId,
        m: &camt::Movement,
        lengths: &[usize],
    ) -> Result<(Option<String>, BankEntryOutcome)> {
        let exception =
            |reason: String, transaction_id: Option<TransactionId>| BankEntryOutcome::Exception {
                reason,
                transaction_id,
            };
        let store = payments.store();
        let gateway = GatewayId::from(GATEWAY_ID);
        let candidates = candidates(m, lengths);
        let first_reference = candidates.first().cloned();

        // A credit already applied (the import stopped before recording it) is found by
        // the bank's reference it left on the transaction.
        if let Some(tx) = store.transaction_by_provider_ref(&gateway, &m.key).await?
            && tx.creditor_id == creditor
        {
            let reference = tx
                .instruction
                .as_ref()
                .and_then(|i| match i {
                    Instruction::BankTransfer(d) => Some(d.reference.clone()),
                    _ => None,
                })
                .or(first_reference);
            return Ok((
                reference,
                BankEntryOutcome::Matched {
                    transaction_id: tx.id,
                },
            ));
        }
        if m.reversal {
            if !m.credit
                && let Some((reference, returned)) = self
                    .reversed_credit(payments, actor, creditor, m, &candidates)
                    .await?
            {
                return Ok((Some(reference), returned));
            }
            let what = if m.credit { "a debit" } else { "a credit" };
            return Ok((
                first_reference,
                exception(
                    format!("reversal of {what}: check the transaction it undoes"),
                    None,
                ),
            ));
        }
        if let Some(problem) = &m.inconsistent {
            return Ok((first_reference, exception(problem.clone(), None)));
        }
        // A pagoPA PSP's transfer of a day's collections: its reporting flow explains it.
        if let Some(flow_id) = flow_of(&m.all_text()) {
            return Ok((Some(flow_id.clone()), BankEntryOutcome::Flow { flow_id }));
        }
        if m.currency != Currency::Eur.code() {
            return Ok((
                first_reference,
                exception(format!("credited in {}, not EUR", m.currency), None),
            ));
        }
        let Some(amount) = m.amount else {
            return Ok((
                first_reference,
                exception(
                    "a transaction of a batch entry without its own amount".into(),
                    None,
                ),
            ));
        };
        let Ok(amount) = Money::new(amount, Currency::Eur) else {
            return Ok((
                first_reference,
                exception(format!("the amount {amount} is not in euro cents"), None),
            ));
        };

        // 1. By the creditor reference.
        let mut found: Option<(String, Transaction)> = None;
        for r in &candidates {
            if let Some(tx) = store.transaction_by_provider_ref(&gateway, r).await?
                && tx.creditor_id == creditor
            {
                found = Some((r.clone(), tx));
                break;
            }
        }
        // A reference an earlier credit already settled: a duplicate payment.
        if found.is_none() {
            for r in &candidates {
                let mut q = BankEntryQuery::new(creditor);
                q.reference = Some(r.clone());
                q.limit = 1;
                if let Some(earlier) = payments.bank_entries(actor, &q).await?.into_iter().next()
                    && let Some(tx) = earlier.transaction_id()
                {
                    return Ok((
                        Some(r.clone()),
                        exception(
                            format!(
                                "duplicate: {} was already paid by the credit {}",
                                r, earlier.key
                            ),
                            Some(tx),
                        ),
                    ));
                }
            }
        }
        // 2. By the amount and the reference written in the reason.
        if found.is_none() {
            let text = loose(&m.all_text());
            let mut q = MovementQuery::new(creditor);
            q.statuses = vec![
                TxStatus::Pending,
                TxStatus::Reported,
                TxStatus::Expired,
                TxStatus::Rejected,
                TxStatus::Cancelled,
            ];
            q.method_kind = Some(MethodKind::BankTransfer);
            q.min_total = Some(amount);
            q.max_total = Some(amount);
            q.limit = payments_core::MAX_PAGE_SIZE;
            loop {
                let page = payments.search(actor, &q).await?;
                found = page.page.items.into_iter().find_map(|tx| {
                    let r = tx.provider_ref.clone()?;
                    let own = loose(r.get(4..)?);
                    (tx.gateway_id == gateway
                        && own.len() >= OWN_REFERENCE_LEN
                        && text.contains(&own))
                    .then_some((r, tx))
                });
                match (found.is_some(), page.page.next) {
                    (false, Some(next)) => q.after = Some(next),
                    _ => break,
                }
            }
        }
        let Some((reference, tx)) = found else {
            let reason = match &first_reference {
                Some(r) => format!("no open transaction has the reference {r}"),
                None => "no reference, and no open transfer of this amount is quoted in the reason"
                    .into(),
            };
            return Ok((first_reference, exception(reason, None)));
        };
        let reference = Some(reference);
        if tx.status.is_paid() {
            let reason = format!(
                "duplicate: the transaction was already paid ({}); if this is the same credit \
                 seen in another statement or notification of the bank, say so and resolve it",
                tx.provider_ref
                    .as_deref()
                    .unwrap_or("confirmed by an operator")
            );
            return Ok((reference, exception(reason, Some(tx.id))));
        }
        // A transaction that ended (expired, rejected, cancelled) is paid by it all the
        // same: money is a fact. The service settles its items if still free, or records a
        // double payment for operators.
        let wrong_amount = match amount.compare(&tx.total) {
            Some(std::cmp::Ordering::Less) => Some(format!(
                "partial payment: {amount} received of {}",
                tx.total
            )),
            Some(std::cmp::Ordering::Greater) => {
                Some(format!("more than due: {amount} received for {}", tx.total))
            }
            _ => None,
        };
        if let Some(reason) = wrong_amount {
            return Ok((reference, exception(reason, Some(tx.id))));
        }
        let note = payment_note(m);
        match payments
            .record_payment(actor, tx.id, &m.key, &amount, Some(note))
            .await
        {
            Ok(_) => Ok((
                reference,
                BankEntryOutcome::Matched {
                    transaction_id: tx.id,
                },
            )),
            Err(e @ (Error::Conflict(_) | Error::Gateway { .. } | Error::Validation(_))) => Ok((
                reference,
                exception(format!("could not be applied: {e}"), Some(tx.id)),
            )),
            Err(e) => Err(e),
        }
    }
}

impl BankTransferGateway {
    /// The earlier credit a reversal of a credit undoes: an entry of the creditor that
    /// quoted one of the same references, paid a transaction and had the same amount.
    async fn reversed_credit(
        &self,
        payments: &Payments,
        actor: &Actor,
        creditor: CreditorId,
        m: &camt::Movement,
        candidates: &[String],
    ) -> Result<Option<(String, BankEntryOutcome)>> {
        let Some(amount) = m.amount else {
            return Ok(None);
        };
        for r in candidates {
            let mut q = BankEntryQuery::new(creditor);
            q.reference = Some(r.clone());
            q.limit = payments_core::MAX_PAGE_SIZE;
            for earlier in payments.bank_entries(actor, &q).await? {
                if let BankEntryOutcome::Matched { transaction_id } = earlier.outcome
                    && earlier.amount == amount
                    && earlier.currency == m.currency
                {
                    return Ok(Some((
                        r.clone(),
                        BankEntryOutcome::Returned {
                            transaction_id,
                            credit: earlier.key,
                        },
                    )));
                }
            }
        }
        Ok(None)
    }
}

/// How many movements an import records per database transaction.
pub const IMPORT_CHUNK: usize = 1000;

/// A chunk of movements and what was looked up for it ([`BankTransferGateway::look_up`]).
struct LookedUp {
    /// The movements, in the file's order.
    chunk: Vec<camt::Movement>,
    /// How many of them are not booked credits (nor reversals).
    ignored: usize,
    /// The booked credits and reversals: their place in `chunk`, and their creditor.
    credits: Vec<(usize, CreditorId)>,
    /// Each credit's candidate references, as `credits`.
    candidates: Vec<Vec<String>>,
    /// The keys already recorded, per creditor.
    known: std::collections::HashSet<(CreditorId, String)>,
    /// The transactions the references and keys name, by reference.
    by_ref: HashMap<String, StoredTransaction>,
}

impl LookedUp {
    /// Looks up again the references that named one of `touched` (the transactions the
    /// write beside this lookup recorded entries for): a payment changes its transaction's
    /// reference and state, so the chunk is planned on what is stored now.
    async fn refresh(
        &mut self,
        payments: &Payments,
        touched: &std::collections::HashSet<TransactionId>,
    ) -> Result<()> {
        let stale: Vec<String> = self
            .by_ref
            .iter()
            .filter(|(_, t)| touched.contains(&t.id))
            .map(|(r, _)| r.clone())
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        for r in &stale {
            self.by_ref.remove(r);
        }
        self.by_ref.extend(by_reference(payments, &stale).await?);
        Ok(())
    }
}

/// This gateway's transactions that `refs` name (as their provider's reference), by
/// reference.
async fn by_reference(
    payments: &Payments,
    refs: &[String],
) -> Result<HashMap<String, StoredTransaction>> {
    Ok(payments
        .transactions_by_provider_refs(&GatewayId::from(GATEWAY_ID), refs)
        .await?
        .into_iter()
        .filter_map(|t| Some((t.provider_ref.clone()?, t)))
        .collect())
}

/// What is written of a chunk, in order ([`plan_chunk`]).
enum Step {
    /// Credits that plainly pay an open transfer, by their place in the chunk: recorded
    /// together, entry and payment in one database transaction.
    Batch(Vec<(usize, BankCredit)>),
    /// A credit decided and recorded on its own (its place in the chunk, its creditor).
    Alone(usize, CreditorId),
}

/// Goes through a looked-up chunk in order, writing nothing: credits that plainly pay an
/// open transfer are gathered into batches; any other credit (exceptions, reversals,
/// flows, late or partial money) is a step of its own, after the batch before it. A key
/// recorded before, or seen earlier in this chunk or the one before (`previous`), is
/// counted as imported already. Answers the plan and this chunk's keys.
///
/// A plain credit whose transfer another writer changed between the lookup and the write
/// (the service's own read, or the store's compare-and-set, refuses it) is decided on its
/// own after the rest of its batch: the one case where the order differs from a
/// movement-by-movement import (the money is recorded either way).
fn plan_chunk(
    payments: &Payments,
    looked: &LookedUp,
    previous: &std::collections::HashSet<(CreditorId, String)>,
    report: &mut ImportReport,
) -> (Vec<Step>, std::collections::HashSet<(CreditorId, String)>) {
    let mut plan = Vec::new();
    let mut batch: Vec<(usize, BankCredit)> = Vec::new();
    let mut paying = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for ((n, creditor), cands) in looked.credits.iter().zip(&looked.candidates) {
        let (n, creditor) = (*n, *creditor);
        let m = &looked.chunk[n];
        // A bank that gives two credits one reference: the first one stands, as a
        // movement-by-movement import had it.
        let key = (creditor, m.key.clone());
        if looked.known.contains(&key) || previous.contains(&key) || !seen.insert(key) {
            report.already_imported += 1;
            continue;
        }
        if let Some((reference, tx)) = plain_payment(m, creditor, cands, &looked.by_ref)
            && paying.insert(tx.id)
        {
            let entry = bank_entry(
                m,
                creditor,
                Some(reference),
                BankEntryOutcome::Matched {
                    transaction_id: tx.id,
                },
                payments.clock().now(),
            );
            // The transaction as looked up goes with the credit: it is not read again.
            let credit = BankCredit::new(entry, true, Some(payment_note(m))).with_read(tx.clone());
            batch.push((n, credit));
            continue;
        }
        if !batch.is_empty() {
            plan.push(Step::Batch(std::mem::take(&mut batch)));
        }
        paying.clear();
        plan.push(Step::Alone(n, creditor));
    }
    if !batch.is_empty() {
        plan.push(Step::Batch(batch));
    }
    (plan, seen)
}

/// [`Payments::record_bank_credits`] in a task of its own when a tokio runtime runs the
/// import: the batch's work in this process (building each payment and its messages,
/// encoding the rows, waiting for the database) then runs on another worker thread while
/// the import reads and looks up the next chunk, instead of taking turns with it. It is
/// awaited at once, so nothing is written out of order; a panic there resumes here. If
/// the import is dropped meanwhile, the task still commits its batch or none of it, and
/// a rerun finds it recorded.
async fn record_credits(
    payments: &Payments,
    actor: &Actor,
    credits: Vec<BankCredit>,
) -> Result<Vec<BankCreditDone>> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return payments.record_bank_credits(actor, &credits).await;
    };
    let (payments, actor) = (payments.clone(), actor.clone());
    match runtime
        .spawn(async move { payments.record_bank_credits(&actor, &credits).await })
        .await
    {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Storage {
            message: format!("recording a chunk of bank credits: {e}"),
            source: None,
        }),
    }
}

/// Lets the other futures of a `join` run once: answers `Pending` once, waking itself.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Reads a whole file once, entry by entry, keeping nothing but its reports: so that a file
/// that does not read is refused before anything of it is recorded. Its message id, and
/// each report's id, account and number of entries.
fn read_whole(
    file: &[u8],
    limits: &Limits,
) -> std::result::Result<(String, Vec<camt::ReportHead>), StatementError> {
    let mut reader = camt::StatementReader::new(file, limits)?;
    while reader.next_entry()?.is_some() {}
    let heads = reader.finish()?;
    Ok((reader.message_id().to_owned(), heads))
}

/// The open transfer a credit plainly pays in full, by the first of its references that
/// names one of the creditor's transactions: a booked euro credit, not a reversal, not a
/// flow's transfer, adding up, not applied already, for the transaction's exact total, the
/// transaction `Pending` or `Reported` with no line paid on its own. Anything else is
/// decided by [`BankTransferGateway::settle`].
fn plain_payment<'a>(
    m: &camt::Movement,
    creditor: CreditorId,
    candidates: &[String],
    by_ref: &'a HashMap<String, StoredTransaction>,
) -> Option<(String, &'a StoredTransaction)> {
    if !m.credit
        || m.reversal
        || m.inconsistent.is_some()
        || m.currency != Currency::Eur.code()
        || by_ref
            .get(&m.key)
            .is_some_and(|t| t.creditor_id == creditor)
        || flow_of(&m.all_text()).is_some()
    {
        return None;
    }
    let amount = Money::new(m.amount?, Currency::Eur).ok()?;
    let (reference, tx) = candidates.iter().find_map(|r| {
        by_ref
            .get(r)
            .filter(|t| t.creditor_id == creditor)
            .map(|t| (r.clone(), t))
    })?;
    (matches!(tx.status, TxStatus::Pending | TxStatus::Reported)
        && tx.lines.iter().all(|l| l.paid_at.is_none())
        && amount == tx.total)
        .then_some((reference, tx))
}

/// The note a credit's payment leaves on its transaction's event.
fn payment_note(m: &camt::Movement) -> String {
    let note = format!(
        "bank credit {} of {}{}{}",
        m.key,
        m.booked_on.map(|d| d.to_string()).unwrap_or_default(),
        m.value_on
            .filter(|v| Some(*v) != m.booked_on)
            .map(|d| format!(" (value {d})"))
            .unwrap_or_default(),
        m.debtor
            .as_ref()
            .map(|d| format!(" from {d}"))
            .unwrap_or_default()
    );
    note.chars().take(500).collect()
}

/// The entry a movement leaves.
fn bank_entry(
    m: &camt::Movement,
    creditor: CreditorId,
    reference: Option<String>,
    outcome: BankEntryOutcome,
    now: chrono::DateTime<chrono::Utc>,
) -> BankEntry {
    BankEntry {
        creditor_id: creditor,
        key: m.key.clone(),
        statement_id: m.message_id.clone(),
        imported_at: now,
        booked_on: m.booked_on,
        value_on: m.value_on,
        amount: m.amount.unwrap_or_default(),
        currency: m.currency.clone(),
        debtor: m.debtor.clone(),
        remittance: m.remittance(),
        reference,
        info: (!m.info.is_empty()).then(|| m.info.clone()),
        outcome,
    }
}

/// The flow a pagoPA PSP's transfer pays, from its remittance
/// `/PUR/LGPE-RIVERSAMENTO/URI/<flow id>` (SANP, "Riversamento"; banks may cut the text
/// into lines, joined by spaces): the flow id's letters, digits, `-`, `_` and `.`.
pub fn flow_of(text: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find("LGPE-RIVERSAMENTO")?;
    let rest = &text[at + "LGPE-RIVERSAMENTO".len()..];
    let uri = rest.to_ascii_uppercase().find("/URI/")?;
    let id: String = rest[uri + 5..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(payments_core::MAX_FLOW_ID_LEN + 1)
        .collect();
    // pagoPA's flow ids have 1 to 35 characters: a longer run is not one.
    (!id.is_empty() && id.len() <= payments_core::MAX_FLOW_ID_LEN).then_some(id)
}

/// The creditor references a movement may quote, each once: from its structured
/// references, then from its free text and the bank's additional information. Free text may run on after a reference into a
/// longer run that also checks, so those of `lengths` (the lengths this gateway's
/// references have) come first; otherwise the order is kept.
fn candidates(m: &camt::Movement, lengths: &[usize]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut found: Vec<String> = m
        .references
        .iter()
        .flat_map(|r| rf::find_in(r))
        .chain(rf::find_in(&m.text))
        .chain(rf::find_in(&m.info))
        .filter(|c| seen.insert(c.clone()))
        .collect();
    found.sort_by_key(|c| !lengths.contains(&c.len()));
    found
}

/// Letters and digits only, upper case, with the letters a payer mistakes for digits read
/// as Crockford's base 32 reads them (O as 0, I and L as 1), for comparing references
/// copied by hand.
fn loose(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

#[async_trait]
impl Gateway for BankTransferGateway {
    fn id(&self) -> GatewayId {
        GatewayId::from(GATEWAY_ID)
    }

    fn kinds(&self) -> Vec<MethodKind> {
        vec![MethodKind::BankTransfer]
    }

    async fn start(&self, request: &StartRequest) -> Result<Started> {
        let account = self.account(request.creditor.id).ok_or_else(|| {
            Self::error(GatewayErrorKind::Rejected(format!(
                "no bank account is set for creditor {}",
                request.creditor.id
            )))
        })?;
        let tx = &request.transaction;
        let reference = account.reference_for(tx);
        let reason = account.reason_for(tx, &reference);
        let remittance = match account.scheme {
            ReferenceScheme::Unstructured => epc::Remittance::Text(reason.clone()),
            _ => epc::Remittance::Reference(reference.clone()),
        };
        let information: String = format!("{} - {}", account.beneficiary, request.creditor.name)
            .chars()
            .take(epc::MAX_INFO_CHARS)
            .collect();
        let mut payment = epc::EpcPayment {
            bic: account.bic.clone(),
            name: account.beneficiary.clone(),
            iban: account.iban.clone(),
            amount: tx.total,
            purpose: Some("GOVT".into()),
            remittance,
            information: Some(information),
        };
        let payload = match payment.payload() {
            Err(epc::EpcError::TooLong(_)) => {
                payment.information = None;
                payment.payload()
            }
            other => other,
        }
        .map_err(|e| Self::error(GatewayErrorKind::Rejected(format!("EPC QR code: {e}"))))?;
        let details = BankTransferDetails {
            iban: account.iban.clone(),
            bic: account.bic.clone(),
            beneficiary: account.beneficiary.clone(),
            amount: tx.total,
            reference: reference.clone(),
            reason,
            epc_qr_payload: payload,
        };
        Ok(Started::new(Instruction::BankTransfer(details))
            .with_provider_ref(reference)
            // To the end of the last day in Rome, not to the creation's time of day.
            .with_expires_at(payments_core::days_after(
                tx.created_at,
                account.expire_after_days,
            )))
    }

    /// Reads a camt.054 notification of one booked credit, signed with the notification
    /// key. The transaction is found by the credit's `RF` reference; once paid it keeps the
    /// bank's reference of the credit.
    async fn parse_callback(&self, request: &CallbackRequest) -> Result<CallbackEvent> {
        self.verify(request)?;
        let malformed = |m: String| Self::error(GatewayErrorKind::Malformed(m));
        let message =
            camt::parse(&request.body, &self.limits).map_err(|e| malformed(e.to_string()))?;
        let credits: Vec<camt::Movement> = message
            .movements()
            .into_iter()
            .filter(|m| m.booked && m.credit && !m.reversal)
            .collect();
        let [credit] = credits.as_slice() else {
            return Err(malformed(format!(
                "a notification carries one booked credit, not {}",
                credits.len()
            )));
        };
        let reference = candidates(credit, &self.reference_lengths())
            .into_iter()
            .next()
            .ok_or_else(|| malformed("the credit quotes no creditor reference".into()))?;
        if credit.currency != Currency::Eur.code() {
            return Err(Self::error(GatewayErrorKind::AmountMismatch {
                expected: "EUR".into(),
                actual: credit.currency.clone(),
            }));
        }
        let amount = credit
            .amount
            .ok_or_else(|| malformed("the credit has no amount".into()))
            .and_then(|a| Money::new(a, Currency::Eur).map_err(|e| malformed(e.to_string())))?;
        Ok(CallbackEvent::new(PaymentOutcome::Paid, amount)
            .with_provider_ref(reference)
            .with_record_ref(credit.key.clone())
            .with_note(format!(
                "camt.054 {} credit {}{}",
                message.message_id,
                credit.key,
                credit
                    .debtor
                    .as_ref()
                    .map(|d| format!(" from {d}"))
                    .unwrap_or_default()
            )))
    }

    /// A bank transfer is known only from statements and notifications.
    async fn fetch_status(&self, _transaction: &Transaction) -> Result<PaymentOutcome> {
        Err(Self::error(GatewayErrorKind::NotSupported("fetch_status")))
    }

    /// A transfer is told by the bank statement: the sweep has nothing to ask.
    fn answers_status(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_copied_by_hand_compare_loosely() {
        assert_eq!(loose("rif. 3h8 o1l-zz"), "R1F3H8011ZZ");
        let own = "0A1B2C3D4E5F";
        assert!(loose("pagamento oaib 2c3d-4e5f").contains(&loose(own)));
    }

    #[test]
    fn a_reference_is_derived_from_the_transaction_alone() {
        let request = payments_core::testing::gateway::start_request(
            &BankTransferGateway::new(),
            MethodKind::BankTransfer,
            "10",
        );
        let account = BankAccount::new("Comune", "IT60X0542811101000000123456").unwrap();
        let a = account.reference_for(&request.transaction);
        assert_eq!(a, account.reference_for(&request.transaction));
        assert!(rf::is_valid(&a));
        assert!(a[4..].bytes().all(|b| CROCKFORD.contains(&b)));
        let prefixed = account
            .with_scheme(ReferenceScheme::Prefixed("tari".into()))
            .unwrap()
            .reference_for(&request.transaction);
        assert_eq!(&prefixed[4..8], "TARI");
        assert_eq!(&prefixed[8..], &a[4..]);
    }
}
