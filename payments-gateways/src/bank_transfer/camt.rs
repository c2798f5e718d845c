//! ISO 20022 bank-to-customer statements (camt.053) and debit/credit notifications
//! (camt.054), versions `.001.02` and later, read with quick-xml's serde support.
//!
//! Only what matching needs is read: the accounts, and for each entry its amount,
//! direction, reversal flag, status, dates, the bank's references and, per transaction
//! detail, its amount, references, debtor and remittance information. Everything else
//! is skipped. Before parsing, the input is checked: its size, that it is UTF-8, that it
//! carries no document type declaration (so no entity can expand: the "billion laughs"
//! attack is refused before it starts) and that its root is a camt.053 or camt.054
//! `Document`. After parsing, every text is checked against a length limit.

use crate::text::shorten;
use chrono::NaiveDate;
use quick_xml::events::Event;
use rust_decimal::Decimal;
use serde::Deserialize;

/// What kind of message a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// camt.053, the end-of-day account statement.
    Statement,
    /// camt.054, a debit/credit notification.
    Notification,
}

/// Limits on what a statement may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest file, in bytes.
    pub max_bytes: usize,
    /// The longest text of one element, in characters.
    pub max_text_chars: usize,
}

impl Default for Limits {
    /// 512 MiB per file (a 100,000-entry statement is about 100 MB); 1,024 characters per
    /// element (ISO 20022 texts are at most 500, remittance lines 140).
    fn default() -> Self {
        Limits {
            max_bytes: 512 * 1024 * 1024,
            max_text_chars: 1024,
        }
    }
}

/// Why a file was refused. Nothing is imported from a refused file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    /// The file is larger than the limit.
    #[error("the file has {size} bytes; at most {limit} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The file is not UTF-8 text.
    #[error("the file is not UTF-8 text (byte {0})")]
    NotUtf8(usize),
    /// The file declares a document type; statements never do, and entities in one can
    /// expand without bound.
    #[error("the file has a document type declaration (<!DOCTYPE>), which statements never carry")]
    DocType,
    /// The root is not a camt.053 or camt.054 document of a supported version.
    #[error("not a camt.053 or camt.054 document (.001.02 or later): {0}")]
    NotCamt(String),
    /// The XML is malformed or does not follow the schema where it matters.
    #[error("malformed statement: {0}")]
    Xml(String),
    /// An element's text is longer than the limit.
    #[error("{element} has {chars} characters; at most {limit} are accepted")]
    TextTooLong {
        /// The element.
        element: &'static str,
        /// Its length.
        chars: usize,
        /// The limit.
        limit: usize,
    },
    /// The document holds no account statement or notification (`Stmt`, `Ntfctn`): an
    /// empty export, or a message of another kind with a camt namespace.
    #[error("the document holds no account statement or notification")]
    NoStatement,
    /// A value does not read as what it is.
    #[error("entry {entry}: {element} {reason}")]
    Value {
        /// The entry's position in the file, from 1.
        entry: usize,
        /// The element.
        element: &'static str,
        /// Why.
        reason: String,
    },
}

/// A parsed statement or notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankMessage {
    /// camt.053 or camt.054.
    pub kind: MessageKind,
    /// The message version: 2 for `camt.053.001.02`, 8 for `.001.08`, …
    pub version: u32,
    /// The message's id (`GrpHdr/MsgId`).
    pub message_id: String,
    /// One report per account statement or notification.
    pub reports: Vec<AccountReport>,
}

/// The entries of one account in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountReport {
    /// The statement's or notification's id.
    pub id: String,
    /// The account's IBAN, or its other identification.
    pub account: String,
    /// The entries, in file order.
    pub entries: Vec<Entry>,
}

/// One entry (`Ntry`): a movement on the account, possibly a batch of several transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position in the file, from 1.
    pub position: usize,
    /// The entry's reference in the statement (`NtryRef`).
    pub entry_ref: Option<String>,
    /// The bank's unique reference of the entry (`AcctSvcrRef`).
    pub bank_ref: Option<String>,
    /// The amount, always positive.
    pub amount: Decimal,
    /// Its currency.
    pub currency: String,
    /// Credit (`CRDT`) or debit (`DBIT`).
    pub credit: bool,
    /// Whether it reverses an earlier entry (`RvslInd`).
    pub reversal: bool,
    /// `BOOK`, `PDNG`, `INFO`, …
    pub status: String,
    /// The booking date.
    pub booked_on: Option<NaiveDate>,
    /// The value date.
    pub value_on: Option<NaiveDate>,
    /// The transactions it carries (`NtryDtls/TxDtls`); a batch has several.
    pub details: Vec<Details>,
    /// The bank's free text about the entry (`AddtlNtryInf`).
    pub info: Option<String>,
}

/// One transaction of an entry (`TxDtls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// Its own amount and currency, when given (required to split a batch).
    pub amount: Option<(Decimal, String)>,
    /// The bank's reference of the transaction.
    pub bank_ref: Option<String>,
    /// The payer's end-to-end id.
    pub end_to_end_id: Option<String>,
    /// The interbank transaction id (TRN).
    pub tx_id: Option<String>,
    /// The payer's name.
    pub debtor: Option<String>,
    /// The payer's IBAN.
    pub debtor_account: Option<String>,
    /// Structured creditor references (`RmtInf/Strd/CdtrRefInf/Ref`).
    pub references: Vec<String>,
    /// Unstructured remittance lines (`RmtInf/Ustrd`).
    pub unstructured: Vec<String>,
    /// The bank's free text about the transaction (`AddtlTxInf`), where Italian banks
    /// often write the payer's reason.
    pub info: Option<String>,
}

/// One credit or debit to match: an entry, or one transaction of a batch entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// Unique per account: the bank's reference (and the position in a batch), or the
    /// statement's identity and the entry's position in it when the bank gives no
    /// reference. See [`BankMessage::movements`].
    pub key: String,
    /// The message it came in.
    pub message_id: String,
    /// The account credited or debited.
    pub account: String,
    /// The entry's position in the file.
    pub entry: usize,
    /// Credit or debit.
    pub credit: bool,
    /// Whether the entry is a reversal.
    pub reversal: bool,
    /// Whether the entry is booked.
    pub booked: bool,
    /// The amount, when known (a batch transaction without its own amount has none).
    pub amount: Option<Decimal>,
    /// The currency.
    pub currency: String,
    /// The booking date.
    pub booked_on: Option<NaiveDate>,
    /// The value date: the day the money counts as the account's.
    pub value_on: Option<NaiveDate>,
    /// The payer.
    pub debtor: Option<String>,
    /// The structured references given.
    pub references: Vec<String>,
    /// The unstructured remittance text, lines joined by a space.
    pub text: String,
    /// The bank's additional information: the entry's (`AddtlNtryInf`) and the
    /// transaction's (`AddtlTxInf`), joined by a space.
    pub info: String,
    /// Why the entry's transactions cannot be taken as they are, when their own amounts
    /// do not add up to the entry's amount (`TxDtls` against `Ntry/Amt`).
    pub inconsistent: Option<String>,
}

impl Movement {
    /// The remittance as one text: structured references, then unstructured lines.
    pub fn remittance(&self) -> String {
        let mut parts: Vec<&str> = self.references.iter().map(String::as_str).collect();
        if !self.text.is_empty() {
            parts.push(&self.text);
        }
        parts.join(" ")
    }

    /// Everything written about the movement that may quote what it pays: the structured
    /// references, the remittance lines and the bank's additional information.
    pub fn all_text(&self) -> String {
        let mut all = self.remittance();
        if !self.info.is_empty() {
            if !all.is_empty() {
                all.push(' ');
            }
            all.push_str(&self.info);
        }
        all
    }
}

impl Entry {
    /// Why the entry's transactions do not add up to it, if they do not: a batch whose
    /// transactions' own amounts (in the entry's currency) sum to another amount, or a
    /// single transaction that states another amount in the entry's currency. A batch
    /// where some transactions give no amount, or give one in another currency, is not
    /// checked here (those transactions have no amount to pay with).
    pub fn inconsistency(&self) -> Option<String> {
        let own: Vec<Decimal> = self
            .details
            .iter()
            .filter_map(|d| d.amount.as_ref())
            .filter(|(_, c)| *c == self.currency)
            .map(|(a, _)| *a)
            .collect();
        if own.is_empty() || own.len() != self.details.len() {
            return None;
        }
        let sum: Decimal = own.iter().sum();
        (sum != self.amount).then(|| {
            format!(
                "the entry's {} transactions add up to {sum} {}, not the entry's {} {}",
                own.len(),
                self.currency,
                self.amount,
                self.currency
            )
        })
    }
}

impl BankMessage {
    /// Every movement, in file order: each entry, or each transaction of a batch entry.
    ///
    /// Each has a key that is the same whenever the same statement is read again, and
    /// different for two credits even when every field of theirs is equal: the bank's own
    /// reference of the entry (`AcctSvcrRef`, with the transaction's position in a batch)
    /// or of the transaction, when the bank gives one; otherwise the statement's identity
    /// (`Stmt/Id`, `Ntfctn/Id`) and the entry's position in it. The payer's end-to-end id
    /// and the interbank transaction id are not keys: payers choose the first, and
    /// neither is unique to a credit.
    pub fn movements(&self) -> Vec<Movement> {
        let mut out = Vec::new();
        for report in &self.reports {
            for (index, entry) in report.entries.iter().enumerate() {
                out.extend(entry_movements(
                    &self.message_id,
                    &report.id,
                    &report.account,
                    index,
                    entry,
                ));
            }
        }
        out
    }
}

/// The movements of one entry: the entry itself, or each transaction of a batch; see
/// [`BankMessage::movements`] for their keys. `index` is the entry's position in its
/// report, from 0.
fn entry_movements(
    message_id: &str,
    report_id: &str,
    account: &str,
    index: usize,
    entry: &Entry,
) -> Vec<Movement> {
    let batch = entry.details.len() > 1;
    let inconsistent = entry.inconsistency();
    let empty = [Details::default()];
    let details: &[Details] = if entry.details.is_empty() {
        &empty
    } else {
        &entry.details
    };
    let mut out = Vec::with_capacity(details.len());
    for (i, d) in details.iter().enumerate() {
        let amount = if batch {
            d.amount
                .as_ref()
                .filter(|(_, c)| *c == entry.currency)
                .map(|(a, _)| *a)
        } else {
            Some(entry.amount)
        };
        let text = d.unstructured.join(" ");
        let info = [entry.info.as_deref(), d.info.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let own_ref = entry
            .bank_ref
            .as_ref()
            .filter(|r| !r.eq_ignore_ascii_case("NOTPROVIDED"))
            .map(|r| {
                if batch {
                    format!("{r}/{}", i + 1)
                } else {
                    r.clone()
                }
            })
            .or_else(|| {
                d.bank_ref
                    .as_ref()
                    .filter(|r| !r.eq_ignore_ascii_case("NOTPROVIDED"))
                    .cloned()
            });
        let key = match own_ref {
            Some(r) => format!("{account}:{r}"),
            None => format!(
                "{account}:{}#{}/{}",
                if report_id.is_empty() {
                    message_id
                } else {
                    report_id
                },
                index + 1,
                i + 1
            ),
        };
        out.push(Movement {
            key,
            message_id: message_id.to_owned(),
            account: account.to_owned(),
            entry: entry.position,
            credit: entry.credit,
            reversal: entry.reversal,
            booked: entry.status == "BOOK",
            amount,
            currency: entry.currency.clone(),
            booked_on: entry.booked_on,
            value_on: entry.value_on,
            debtor: d.debtor.clone(),
            references: d.references.clone(),
            text,
            info,
            inconsistent: inconsistent.clone(),
        });
    }
    out
}

// ------------------------------------------------------------------ the schema, as read

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct GroupHeader {
    MsgId: String,
}

#[allow(non_snake_case)]
#[derive(Deserialize, Default)]
struct Account {
    Id: AccountId,
}

#[allow(non_snake_case)]
#[derive(Deserialize, Default)]
struct AccountId {
    IBAN: Option<String>,
    Othr: Option<OtherId>,
}

#[allow(non_snake_case)]
#[derive(Deserialize, Default)]
struct OtherId {
    Id: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    #[serde(rename = "@Ccy")]
    ccy: String,
    #[serde(rename = "$text")]
    value: String,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Status {
    #[serde(rename = "$text")]
    text: Option<String>,
    Cd: Option<String>,
    Prtry: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct DateChoice {
    Dt: Option<String>,
    DtTm: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct RawEntry {
    NtryRef: Option<String>,
    Amt: Amount,
    CdtDbtInd: String,
    RvslInd: Option<String>,
    Sts: Status,
    BookgDt: Option<DateChoice>,
    ValDt: Option<DateChoice>,
    AcctSvcrRef: Option<String>,
    #[serde(default)]
    NtryDtls: Vec<EntryDetails>,
    AddtlNtryInf: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct EntryDetails {
    #[serde(default)]
    TxDtls: Vec<TxDetails>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct TxDetails {
    Refs: Option<Refs>,
    Amt: Option<Amount>,
    AmtDtls: Option<AmountDetails>,
    RltdPties: Option<Parties>,
    RmtInf: Option<Remittance>,
    AddtlTxInf: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Refs {
    AcctSvcrRef: Option<String>,
    EndToEndId: Option<String>,
    TxId: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct AmountDetails {
    TxAmt: Option<AmountHolder>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct AmountHolder {
    Amt: Amount,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Parties {
    Dbtr: Option<Party>,
    DbtrAcct: Option<Account>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Party {
    Nm: Option<String>,
    Pty: Option<PartyName>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct PartyName {
    Nm: Option<String>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Remittance {
    #[serde(default)]
    Ustrd: Vec<String>,
    #[serde(default)]
    Strd: Vec<Structured>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Structured {
    CdtrRefInf: Option<CreditorRef>,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct CreditorRef {
    Ref: Option<String>,
}

// ------------------------------------------------------------------ parsing

/// Reads the prolog up to the root element: refuses a DOCTYPE, and returns the kind and
/// version named by the root's namespace.
fn root_kind(text: &str) -> Result<(MessageKind, u32), StatementError> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::DocType(_)) => return Err(StatementError::DocType),
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                if e.local_name().as_ref() != "Document" {
                    let name: String = e.name().as_ref().chars().take(40).collect();
                    return Err(StatementError::NotCamt(format!("the root is <{name}>")));
                }
                for attr in e.attributes().flatten() {
                    let key = attr.key.as_ref();
                    if key != "xmlns" && !key.starts_with("xmlns:") {
                        continue;
                    }
                    let value = attr.value.to_string();
                    let Some(rest) = value.strip_prefix("urn:iso:std:iso:20022:tech:xsd:camt.")
                    else {
                        continue;
                    };
                    let (kind, version) = match rest.split_once(".001.") {
                        Some(("053", v)) => (MessageKind::Statement, v),
                        Some(("054", v)) => (MessageKind::Notification, v),
                        _ => continue,
                    };
                    return match version.parse::<u32>() {
                        Ok(v) if v >= 2 => Ok((kind, v)),
                        _ => Err(StatementError::NotCamt(format!(
                            "version {} is not supported",
                            version.chars().take(20).collect::<String>()
                        ))),
                    };
                }
                return Err(StatementError::NotCamt(
                    "the root has no camt.053 or camt.054 namespace".into(),
                ));
            }
            Ok(Event::Eof) => return Err(StatementError::NotCamt("the file is empty".into())),
            Ok(_) => {}
            Err(e) => {
                return Err(StatementError::Xml(shorten(&format!(
                    "{e} at byte {}",
                    reader.error_position()
                ))));
            }
        }
    }
}

struct Checker {
    limit: usize,
}

impl Checker {
    fn text(
        &self,
        element: &'static str,
        value: Option<String>,
    ) -> Result<Option<String>, StatementError> {
        match value {
            Some(v) => {
                // Most texts need no trimming: keep the string read rather than copy it.
                let v = if v.trim().len() == v.len() {
                    v
                } else {
                    v.trim().to_owned()
                };
                if v.len() > self.limit {
                    let chars = v.chars().count();
                    if chars > self.limit {
                        return Err(StatementError::TextTooLong {
                            element,
                            chars,
                            limit: self.limit,
                        });
                    }
                }
                Ok((!v.is_empty()).then_some(v))
            }
            None => Ok(None),
        }
    }

    fn required(&self, element: &'static str, value: String) -> Result<String, StatementError> {
        Ok(self.text(element, Some(value))?.unwrap_or_default())
    }

    fn all(
        &self,
        element: &'static str,
        values: Vec<String>,
    ) -> Result<Vec<String>, StatementError> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if let Some(v) = self.text(element, Some(v))? {
                out.push(v);
            }
        }
        Ok(out)
    }
}

fn amount(
    entry: usize,
    element: &'static str,
    a: &Amount,
) -> Result<(Decimal, String), StatementError> {
    let bad = |reason: &str| StatementError::Value {
        entry,
        element,
        reason: reason.into(),
    };
    let value: Decimal = a
        .value
        .trim()
        .parse()
        .map_err(|_| bad("is not a decimal number"))?;
    if value.is_sign_negative() {
        return Err(bad("is negative"));
    }
    let ccy = a.ccy.trim();
    if ccy.len() != 3 || !ccy.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(bad("has no ISO 4217 currency"));
    }
    Ok((value, ccy.to_owned()))
}

fn date(
    entry: usize,
    element: &'static str,
    d: Option<DateChoice>,
) -> Result<Option<NaiveDate>, StatementError> {
    let Some(d) = d else { return Ok(None) };
    let text = d.Dt.or(d.DtTm).unwrap_or_default();
    let day = text.trim().get(..10).unwrap_or("");
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| StatementError::Value {
            entry,
            element,
            reason: format!(
                "is not a date: {:?}",
                text.chars().take(40).collect::<String>()
            ),
        })
}

/// Parses a camt.053 statement or camt.054 notification whole. A large statement is better
/// read entry by entry with a [`StatementReader`], which holds one entry at a time.
pub fn parse(file: &[u8], limits: &Limits) -> Result<BankMessage, StatementError> {
    let mut reader = StatementReader::new(file, limits)?;
    let mut reports: Vec<AccountReport> = Vec::new();
    loop {
        let next = reader.next_entry()?;
        // Each report as it begins, entries or not: a report names an account.
        while let Some((id, account, _)) = reader.heads.get(reports.len()) {
            reports.push(AccountReport {
                id: id.clone(),
                account: account.clone(),
                entries: Vec::new(),
            });
        }
        match next {
            Some(read) => reports
                .last_mut()
                .expect("an entry is in a report")
                .entries
                .push(read.entry),
            None => break,
        }
    }
    reader.finish()?;
    Ok(BankMessage {
        kind: reader.kind,
        version: reader.version,
        message_id: reader.message_id,
        reports,
    })
}

/// A report a [`StatementReader`] read: its id, its account, its number of entries.
pub type ReportHead = (String, String, usize);

/// One entry read by a [`StatementReader`], with the report it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// The statement's or notification's id (`Stmt/Id`, `Ntfctn/Id`).
    pub report_id: String,
    /// The account's IBAN, or its other identification.
    pub account: String,
    /// The entry's position in its report, from 0.
    pub index: usize,
    /// The entry.
    pub entry: Entry,
}

impl ReadEntry {
    /// The entry's movements, keyed as [`BankMessage::movements`] keys them.
    pub fn movements(&self, message_id: &str) -> Vec<Movement> {
        entry_movements(
            message_id,
            &self.report_id,
            &self.account,
            self.index,
            &self.entry,
        )
    }
}

/// Reads a camt.053 or camt.054 file entry by entry, holding one parsed entry at a time
/// (the file itself is the caller's): a 100,000-entry statement is not parsed into memory
/// whole.
///
/// [`new`](Self::new) checks the file as [`parse`] does (size, UTF-8, no document type,
/// a camt root); [`next_entry`](Self::next_entry) reads the next `Ntry`, checked as
/// [`parse`] checks it; [`finish`](Self::finish), after the last, says whether the file
/// held any statement and ends well.
///
/// ```
/// use payments_gateways::bank_transfer::camt::{Limits, StatementReader};
/// let file = br#"<?xml version="1.0"?>
/// <Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
///   <GrpHdr><MsgId>M1</MsgId></GrpHdr>
///   <Stmt><Id>S1</Id><Acct><Id><IBAN>IT60X0542811101000000123456</IBAN></Id></Acct>
///     <Ntry><Amt Ccy="EUR">10.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts></Ntry>
///   </Stmt></BkToCstmrStmt></Document>"#;
/// let mut reader = StatementReader::new(file, &Limits::default()).unwrap();
/// let read = reader.next_entry().unwrap().unwrap();
/// assert_eq!(read.entry.amount.to_string(), "10.00");
/// assert_eq!(read.movements(reader.message_id())[0].key, "IT60X0542811101000000123456:S1#1/1");
/// assert!(reader.next_entry().unwrap().is_none());
/// assert_eq!(reader.finish().unwrap().len(), 1);
/// ```
pub struct StatementReader<'a> {
    text: &'a str,
    reader: quick_xml::Reader<&'a [u8]>,
    check: Checker,
    kind: MessageKind,
    version: u32,
    message_id: String,
    /// Where the reader is: 0 in the document, 1 in the message, 2 in a report.
    level: u8,
    seen_message: bool,
    seen_header: bool,
    /// Whether the current report's head is recorded.
    begun: bool,
    /// The current report's id and account, once read.
    report_id: Option<String>,
    account: Option<String>,
    /// Every report begun: id, account, entries.
    heads: Vec<ReportHead>,
    position: usize,
    ended: bool,
}

impl std::fmt::Debug for StatementReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementReader")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("message_id", &self.message_id)
            .field("entries_read", &self.position)
            .finish_non_exhaustive()
    }
}

impl<'a> StatementReader<'a> {
    /// Checks the file (size, UTF-8, no document type, a camt.053 or camt.054 root of a
    /// supported version) and places the reader at its start.
    pub fn new(file: &'a [u8], limits: &Limits) -> Result<Self, StatementError> {
        if file.len() > limits.max_bytes {
            return Err(StatementError::TooLarge {
                size: file.len(),
                limit: limits.max_bytes,
            });
        }
        let text =
            std::str::from_utf8(file).map_err(|e| StatementError::NotUtf8(e.valid_up_to()))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (kind, version) = root_kind(text)?;
        let mut reader = quick_xml::Reader::from_str(text);
        // Into the root.
        loop {
            match reader.read_event().map_err(|e| xml_error(&reader, &e))? {
                Event::Start(_) => break,
                Event::Eof => return Err(StatementError::NotCamt("the file is empty".into())),
                _ => {}
            }
        }
        Ok(StatementReader {
            text,
            reader,
            check: Checker {
                limit: limits.max_text_chars,
            },
            kind,
            version,
            message_id: String::new(),
            level: 0,
            seen_message: false,
            seen_header: false,
            begun: false,
            report_id: None,
            account: None,
            heads: Vec::new(),
            position: 0,
            ended: false,
        })
    }

    /// camt.053 or camt.054.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The message's version: 2 for `.001.02`, 8 for `.001.08`, …
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The message's id (`GrpHdr/MsgId`), once read (the schema puts it before every
    /// entry; empty until then).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The next entry, or `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<ReadEntry>, StatementError> {
        let (message, report) = match self.kind {
            MessageKind::Statement => ("BkToCstmrStmt", "Stmt"),
            MessageKind::Notification => ("BkToCstmrDbtCdtNtfctn", "Ntfctn"),
        };
        loop {
            if self.ended {
                return Ok(None);
            }
            let before = self.reader.buffer_position() as usize;
            let event = self
                .reader
                .read_event()
                .map_err(|e| xml_error(&self.reader, &e))?;
            let (e, empty) = match event {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => {
                    match self.level {
                        2 => {
                            self.begin_report(report)?;
                            self.level = 1;
                        }
                        1 => self.level = 0,
                        _ => self.ended = true,
                    }
                    continue;
                }
                Event::Eof => {
                    return Err(StatementError::Xml("the document ends early".into()));
                }
                _ => continue,
            };
            let local = e.local_name();
            let name = local.as_ref();
            match (self.level, name) {
                (0, n) if n == message => {
                    self.seen_message = true;
                    if !empty {
                        self.level = 1;
                    }
                }
                (1, "GrpHdr") => {
                    let header: GroupHeader = self.element(before, empty, e.name())?;
                    self.message_id = self.check.required("GrpHdr/MsgId", header.MsgId)?;
                    self.seen_header = true;
                }
                (1, n) if n == report => {
                    self.report_id = None;
                    self.account = None;
                    self.begun = false;
                    if empty {
                        return Err(StatementError::Xml(format!("a {report} has no account")));
                    }
                    self.level = 2;
                }
                (2, "Id") => {
                    let id: String = if empty {
                        String::new()
                    } else {
                        self.element(before, empty, e.name())?
                    };
                    self.report_id = Some(self.check.required("Stmt/Id", id)?);
                }
                (2, "Acct") => {
                    let account: Account = self.element(before, empty, e.name())?;
                    let id = self
                        .check
                        .text("Acct/Id/IBAN", account.Id.IBAN)?
                        .map(|i| i.replace(' ', "").to_ascii_uppercase())
                        .or(self
                            .check
                            .text("Acct/Id/Othr/Id", account.Id.Othr.and_then(|o| o.Id))?)
                        .ok_or_else(|| {
                            StatementError::Xml("an account has no identification".into())
                        })?;
                    self.account = Some(id);
                }
                (2, "Ntry") => {
                    let position = self.position + 1;
                    let raw: RawEntry =
                        self.element(before, empty, e.name()).map_err(|e| match e {
                            StatementError::Xml(m) => {
                                StatementError::Xml(format!("entry {position}: {m}"))
                            }
                            e => e,
                        })?;
                    self.begin_report(report)?;
                    self.position = position;
                    let entry = entry(&self.check, position, raw)?;
                    let head = self.heads.last_mut().expect("a report begun");
                    let index = head.2;
                    head.2 += 1;
                    return Ok(Some(ReadEntry {
                        report_id: head.0.clone(),
                        account: head.1.clone(),
                        index,
                        entry,
                    }));
                }
                _ => {
                    if !empty {
                        self.reader
                            .read_to_end(e.name())
                            .map_err(|e| xml_error(&self.reader, &e))?;
                    }
                }
            }
        }
    }

    /// Records the current report's head once its id and account are known (at its first
    /// entry, or at its end): in whatever order the two came.
    fn begin_report(&mut self, report: &str) -> Result<(), StatementError> {
        if self.begun {
            return Ok(());
        }
        let Some(account) = self.account.clone() else {
            return Err(StatementError::Xml(format!("a {report} has no account")));
        };
        let Some(id) = self.report_id.clone() else {
            return Err(StatementError::Xml(format!("a {report} has no Id")));
        };
        self.heads.push((id, account, 0));
        self.begun = true;
        Ok(())
    }

    /// After the last entry: every report read (id, account, its number of entries).
    /// Refuses a document whose message is missing or holds no statement or notification.
    pub fn finish(&mut self) -> Result<Vec<ReportHead>, StatementError> {
        while self.next_entry()?.is_some() {}
        if !self.seen_message {
            return Err(StatementError::NotCamt(match self.kind {
                MessageKind::Statement => "no BkToCstmrStmt in a camt.053 document".into(),
                MessageKind::Notification => {
                    "no BkToCstmrDbtCdtNtfctn in a camt.054 document".into()
                }
            }));
        }
        if self.heads.is_empty() {
            return Err(StatementError::NoStatement);
        }
        if !self.seen_header {
            return Err(StatementError::Xml("the message has no GrpHdr".into()));
        }
        Ok(self.heads.clone())
    }

    /// The element that began at `start` (just read; `empty` when it closed itself),
    /// deserialized.
    fn element<T: serde::de::DeserializeOwned>(
        &mut self,
        start: usize,
        empty: bool,
        name: quick_xml::name::QName<'_>,
    ) -> Result<T, StatementError> {
        if !empty {
            self.reader
                .read_to_end(name)
                .map_err(|e| xml_error(&self.reader, &e))?;
        }
        let end = self.reader.buffer_position() as usize;
        let slice = &self.text[start..end];
        let slice = slice.find('<').map_or(slice, |at| &slice[at..]);
        quick_xml::de::from_str(slice).map_err(|e| StatementError::Xml(shorten(&e.to_string())))
    }
}

fn xml_error(reader: &quick_xml::Reader<&[u8]>, e: &quick_xml::Error) -> StatementError {
    StatementError::Xml(shorten(&format!("{e} at byte {}", reader.error_position())))
}

/// One raw entry, checked, as typed.
fn entry(check: &Checker, position: usize, n: RawEntry) -> Result<Entry, StatementError> {
    let (amount_value, currency) = amount(position, "Amt", &n.Amt)?;
    let credit = match n.CdtDbtInd.trim() {
        "CRDT" => true,
        "DBIT" => false,
        other => {
            return Err(StatementError::Value {
                entry: position,
                element: "CdtDbtInd",
                reason: format!(
                    "is {:?}, not CRDT or DBIT",
                    other.chars().take(10).collect::<String>()
                ),
            });
        }
    };
    let reversal = matches!(
        n.RvslInd.as_deref().map(str::trim),
        Some("true") | Some("1")
    );
    let status = check
        .text("Sts", n.Sts.Cd.or(n.Sts.text).or(n.Sts.Prtry))?
        .unwrap_or_default();
    let mut details = Vec::new();
    for d in n.NtryDtls.into_iter().flat_map(|d| d.TxDtls) {
        let own_amount = match d.Amt.as_ref().or(d
            .AmtDtls
            .as_ref()
            .and_then(|a| a.TxAmt.as_ref().map(|t| &t.Amt)))
        {
            Some(a) => Some(amount(position, "TxDtls/Amt", a)?),
            None => None,
        };
        let (bank_ref, end_to_end_id, tx_id) = match d.Refs {
            Some(r) => (
                check.text("Refs/AcctSvcrRef", r.AcctSvcrRef)?,
                check.text("Refs/EndToEndId", r.EndToEndId)?,
                check.text("Refs/TxId", r.TxId)?,
            ),
            None => (None, None, None),
        };
        let (debtor, debtor_account) = match d.RltdPties {
            Some(p) => (
                check.text(
                    "RltdPties/Dbtr/Nm",
                    p.Dbtr.and_then(|d| d.Nm.or(d.Pty.and_then(|p| p.Nm))),
                )?,
                check.text(
                    "RltdPties/DbtrAcct/Id",
                    p.DbtrAcct
                        .and_then(|a| a.Id.IBAN.or(a.Id.Othr.and_then(|o| o.Id))),
                )?,
            ),
            None => (None, None),
        };
        let (references, unstructured) = match d.RmtInf {
            Some(r) => (
                check.all(
                    "RmtInf/Strd/CdtrRefInf/Ref",
                    r.Strd
                        .into_iter()
                        .filter_map(|s| s.CdtrRefInf.and_then(|c| c.Ref))
                        .collect(),
                )?,
                check.all("RmtInf/Ustrd", r.Ustrd)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let info = check.text("AddtlTxInf", d.AddtlTxInf)?;
        details.push(Details {
            info,
            amount: own_amount,
            bank_ref,
            end_to_end_id,
            tx_id,
            debtor,
            debtor_account,
            references,
            unstructured,
        });
    }
    Ok(Entry {
        position,
        entry_ref: check.text("NtryRef", n.NtryRef)?,
        bank_ref: check.text("AcctSvcrRef", n.AcctSvcrRef)?,
        amount: amount_value,
        currency,
        credit,
        reversal,
        status,
        booked_on: date(position, "BookgDt", n.BookgDt)?,
        value_on: date(position, "ValDt", n.ValDt)?,
        details,
        info: check.text("AddtlNtryInf", n.AddtlNtryInf)?,
    })
}
