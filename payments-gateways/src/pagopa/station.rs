//! What a creditor's station answers when a payment service provider (a bank, a post
//! office, an app, or the checkout) is about to take a notice's payment: pagoPA's node asks
//! `paVerifyPaymentNotice` (what is due?) and then `paGetPayment` (where does the money
//! go?). The answers come from the transaction the notice belongs to.

use payments_core::{
    DebtPosition, GatewayId, OptionRefusal, Payments, Result, Transaction, TransactionLine,
    TxStatus,
};
use quick_xml::escape::escape;
use serde::Deserialize;

use super::notice::NoticeNumber;
use super::receipt::{Envelope, ko, read_soap, soap};
use super::{GATEWAY_ID, PagoPaGateway, cut};

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "paVerifyPaymentNoticeReq")]
    verify: Option<Request>,
    #[serde(rename = "paGetPaymentReq", alias = "paGetPaymentV2Request")]
    get: Option<Request>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Request {
    idPA: Option<String>,
    qrCode: Option<QrCode>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct QrCode {
    fiscalCode: Option<String>,
    noticeNumber: Option<String>,
}

/// Why a station refuses a notice, as pagoPA's fault codes say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StationFault {
    /// No such notice.
    Unknown,
    /// Already paid.
    Duplicate,
    /// No longer payable: its time ran out.
    Expired,
    /// No longer payable: cancelled or refused.
    Cancelled,
    /// The request does not read.
    Syntax,
    /// The station cannot answer now (or is not configured to).
    System,
}

impl StationFault {
    /// The code pagoPA expects.
    pub fn code(self) -> &'static str {
        match self {
            StationFault::Unknown => "PAA_PAGAMENTO_SCONOSCIUTO",
            StationFault::Duplicate => "PAA_PAGAMENTO_DUPLICATO",
            StationFault::Expired => "PAA_PAGAMENTO_SCADUTO",
            StationFault::Cancelled => "PAA_PAGAMENTO_ANNULLATO",
            StationFault::Syntax => "PAA_SINTASSI_XSD",
            StationFault::System => "PAA_SYSTEM_ERROR",
        }
    }
}

enum Primitive {
    Verify,
    Get,
}

impl Primitive {
    fn response(&self) -> &'static str {
        match self {
            Primitive::Verify => "paVerifyPaymentNoticeRes",
            Primitive::Get => "paGetPaymentRes",
        }
    }
}

fn fault(element: &str, fault: StationFault, text: &str, id_pa: &str) -> String {
    soap(element, &ko(fault.code(), text, &cut(id_pa, 35)))
}

fn euros(line: &TransactionLine) -> String {
    money(&line.amount)
}

fn money(amount: &payments_core::Money) -> String {
    let cents = amount.minor_units();
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The `paVerifyPaymentNoticeRes` of a notice: one option of `amount` (euros, `1.00`) due
/// on `due`; `description` and `company` already escaped.
fn verify_answer(
    amount: &str,
    due: impl std::fmt::Display,
    description: &str,
    fiscal_code: &str,
    company: &str,
) -> String {
    soap(
        Primitive::Verify.response(),
        &format!(
            "<outcome>OK</outcome><paymentList><paymentOptionDescription>\
             <amount>{amount}</amount><options>EQ</options><dueDate>{due}</dueDate>\
             <detailDescription>{description}</detailDescription><allCCP>false</allCCP>\
             </paymentOptionDescription></paymentList>\
             <paymentDescription>{description}</paymentDescription>\
             <fiscalCodePA>{fiscal_code}</fiscalCodePA><companyName>{company}</companyName>"
        ),
    )
}

/// What a notice pays: a line of a transaction, or an option of a debt position (with the
/// name the notice shows for the creditor).
enum Due {
    Line(Box<Transaction>, usize),
    Option(Box<DebtPosition>, usize, String),
}

/// The answer for an option of a debt position: its amount, due date and description, its
/// payer, and its transfers (one to five beneficiaries).
fn option_answer(
    kind: &Primitive,
    p: &DebtPosition,
    index: usize,
    company: &str,
    notice: &NoticeNumber,
    fiscal_code: &str,
) -> String {
    let o = &p.options[index];
    let description = escape(cut(&o.description, super::MAX_TEXT_CHARS).as_str()).into_owned();
    let company = escape(company).into_owned();
    let amount = money(&o.amount);
    let due = o.due_date;
    match kind {
        Primitive::Verify => verify_answer(&amount, due, &description, fiscal_code, &company),
        Primitive::Get => {
            let transfers: String = o
                .transfers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    transfer_xml(
                        i + 1,
                        &money(&t.amount),
                        &t.fiscal_code,
                        t.iban.as_deref(),
                        &t.remittance,
                        &t.taxonomy,
                    )
                })
                .collect();
            get_answer(
                kind,
                &PaymentData {
                    iuv: notice.iuv(),
                    amount: &amount,
                    due,
                    description: &description,
                    company: &company,
                    debtor_type: if p.payer.is_company() { "G" } else { "F" },
                    debtor_id: &p.payer.fiscal_code,
                    debtor_name: &p.payer.name,
                    transfers: &transfers,
                },
            )
        }
    }
}

/// One `<transfer>` of a `paGetPayment` answer, every text escaped and the remittance cut
/// to pagoPA's 140 characters; a transfer to a postal account names no IBAN.
fn transfer_xml(
    index: usize,
    amount: &str,
    fiscal_code: &str,
    iban: Option<&str>,
    remittance: &str,
    category: &str,
) -> String {
    let account = iban
        .map(|iban| format!("<IBAN>{}</IBAN>", escape(iban)))
        .unwrap_or_default();
    format!(
        "<transfer><idTransfer>{index}</idTransfer><transferAmount>{amount}</transferAmount>\
         <fiscalCodePA>{}</fiscalCodePA>{account}\
         <remittanceInformation>{}</remittanceInformation>\
         <transferCategory>{}</transferCategory></transfer>",
        escape(fiscal_code),
        escape(cut(remittance, super::MAX_TEXT_CHARS).as_str()),
        escape(category),
    )
}

/// What a `paGetPayment` answer says of a notice: `description` and `company` already
/// escaped (the verify answer shares them), the debtor's id and name as they are.
struct PaymentData<'a> {
    iuv: &'a str,
    amount: &'a str,
    due: chrono::NaiveDate,
    description: &'a str,
    company: &'a str,
    debtor_type: &'a str,
    debtor_id: &'a str,
    debtor_name: &'a str,
    transfers: &'a str,
}

/// The `paGetPayment` answer: the notice's data, its debtor and its transfers.
fn get_answer(kind: &Primitive, d: &PaymentData<'_>) -> String {
    soap(
        kind.response(),
        &format!(
            "<outcome>OK</outcome><data>\
             <creditorReferenceId>{iuv}</creditorReferenceId>\
             <paymentAmount>{amount}</paymentAmount><dueDate>{due}</dueDate>\
             <description>{description}</description><companyName>{company}</companyName>\
             <debtor><uniqueIdentifier><entityUniqueIdentifierType>{id_type}</entityUniqueIdentifierType>\
             <entityUniqueIdentifierValue>{id_value}</entityUniqueIdentifierValue></uniqueIdentifier>\
             <fullName>{name}</fullName></debtor>\
             <transferList>{transfers}</transferList></data>",
            iuv = d.iuv,
            amount = d.amount,
            due = d.due,
            description = d.description,
            company = d.company,
            id_type = d.debtor_type,
            id_value = escape(cut(d.debtor_id, 35).as_str()),
            name = escape(cut(d.debtor_name, 70).as_str()),
            transfers = d.transfers,
        ),
    )
}

impl PagoPaGateway {
    /// Answers a `paVerifyPaymentNotice` or `paGetPayment` (v1 or v2) request from pagoPA's
    /// node, which must carry the channel's credential like a receipt: the amount, due date
    /// and description of the notice, and for `paGetPayment` the debtor and the transfer to
    /// the creditor's IBAN (set with
    /// [`PagoPaCreditor::with_iban`](super::PagoPaCreditor::with_iban)) with its taxonomy
    /// code. A notice already paid, expired, cancelled or unknown is refused with the fault
    /// code pagoPA expects, so the payer is never charged for it.
    pub async fn station_response(
        &self,
        payments: &Payments,
        request: &payments_core::CallbackRequest,
    ) -> String {
        let primitive = |body: &Body| match (&body.verify, &body.get) {
            (Some(_), _) => Primitive::Verify,
            _ => Primitive::Get,
        };
        let Ok(Envelope { body }) = read_soap::<Body>(&request.body, super::MAX_RECEIPT_BYTES)
        else {
            return fault(
                "paVerifyPaymentNoticeRes",
                StationFault::Syntax,
                "the request does not read as paVerifyPaymentNotice or paGetPayment",
                "",
            );
        };
        let kind = primitive(&body);
        let element = kind.response();
        let Some(req) = body.verify.or(body.get) else {
            return fault(element, StationFault::Syntax, "no request in the body", "");
        };
        let id_pa = req.idPA.unwrap_or_default();
        if self.authenticate(request).is_err() {
            return fault(
                element,
                StationFault::System,
                "the request does not carry the station's credential",
                &id_pa,
            );
        }
        let Some(QrCode {
            fiscalCode: Some(fiscal_code),
            noticeNumber: Some(number),
        }) = req.qrCode
        else {
            return fault(
                element,
                StationFault::Syntax,
                "qrCode is incomplete",
                &id_pa,
            );
        };
        let fiscal_code = fiscal_code.trim().to_owned();
        let Ok(notice) = NoticeNumber::parse(&number) else {
            return fault(
                element,
                StationFault::Unknown,
                "not a valid notice number",
                &id_pa,
            );
        };
        match self.position(payments, &fiscal_code, &notice).await {
            Ok(Ok(Due::Line(tx, line))) => self.answer(&kind, &tx, line, &notice, &fiscal_code),
            Ok(Ok(Due::Option(p, index, company))) => {
                option_answer(&kind, &p, index, &company, &notice, &fiscal_code)
            }
            Ok(Err((f, text))) => fault(element, f, &text, &id_pa),
            Err(_) => fault(
                element,
                StationFault::System,
                "the station cannot read its positions now",
                &id_pa,
            ),
        }
    }

    /// The open transaction and line that `notice` pays, or the debt position option it
    /// is (a notice printed ahead), or why it cannot be paid.
    async fn position(
        &self,
        payments: &Payments,
        fiscal_code: &str,
        notice: &NoticeNumber,
    ) -> Result<std::result::Result<Due, (StationFault, String)>> {
        let (Some(seg), Some(base)) = (notice.segregation_code(), notice.base()) else {
            return Ok(Err((StationFault::Unknown, "not a notice of ours".into())));
        };
        let first = NoticeNumber::aux3(seg, base - base % 10);
        let line = (base % 10) as usize;
        let found = payments
            .store()
            .transaction_by_provider_ref(
                &GatewayId::from(GATEWAY_ID),
                &format!("{fiscal_code}/{first}"),
            )
            .await?;
        let Some(tx) = found.filter(|t| line < t.lines.len()) else {
            return self.position_option(payments, fiscal_code, notice).await;
        };
        // Paid on its own, or its item paid by another payment meanwhile (a late one that
        // settled it): either way, not payable again.
        let paid = tx.lines[line].paid_at.is_some()
            || payments
                .store()
                .item(tx.lines[line].item_id)
                .await?
                .is_some_and(
                    |i| matches!(i.state, payments_core::ItemState::Paid(by) if by != tx.id),
                );
        let refused = match tx.status {
            _ if paid => Some((StationFault::Duplicate, "already paid")),
            TxStatus::Paid | TxStatus::Refunded => Some((StationFault::Duplicate, "already paid")),
            TxStatus::Expired | TxStatus::PartiallyPaid => {
                Some((StationFault::Expired, "no longer payable"))
            }
            TxStatus::Cancelled | TxStatus::Failed | TxStatus::Rejected => {
                Some((StationFault::Cancelled, "cancelled"))
            }
            TxStatus::Created | TxStatus::Pending | TxStatus::Reported => None,
            // A state this station does not know: no money is taken for it.
            _ => Some((
                StationFault::System,
                "in a state this station does not know",
            )),
        };
        Ok(match refused {
            Some((f, why)) => Err((f, format!("notice {notice} is {why}"))),
            None => Ok(Due::Line(Box::new(tx), line)),
        })
    }

    /// The debt position option with `notice`, if it can be paid now.
    async fn position_option(
        &self,
        payments: &Payments,
        fiscal_code: &str,
        notice: &NoticeNumber,
    ) -> Result<std::result::Result<Due, (StationFault, String)>> {
        let creditor = self
            .by_fiscal_code
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fiscal_code)
            .copied();
        let unknown = || Ok(Err((StationFault::Unknown, format!("no notice {notice}"))));
        let Some(creditor) = creditor else {
            return unknown();
        };
        let Some(p) = payments
            .store()
            .position_by_notice(creditor, notice.as_str())
            .await?
        else {
            return unknown();
        };
        let index = p.option_by_notice(notice.as_str()).unwrap_or_default();
        let refused = match p.check_payable(index) {
            Ok(()) => None,
            Err(OptionRefusal::Paid | OptionRefusal::Closed) => {
                Some((StationFault::Duplicate, "already paid"))
            }
            Err(OptionRefusal::Expired) => Some((StationFault::Expired, "expired")),
            Err(OptionRefusal::Invalid) => Some((StationFault::Cancelled, "cancelled")),
            Err(_) => Some((StationFault::Unknown, "not published")),
        };
        if let Some((f, why)) = refused {
            return Ok(Err((f, format!("notice {notice} is {why}"))));
        }
        let company = match self.creditor_config(creditor).and_then(|c| c.company_name) {
            Some(name) => name,
            None => cut(
                &payments.creditor(creditor).await?.name,
                super::MAX_TEXT_CHARS,
            ),
        };
        Ok(Ok(Due::Option(Box::new(p), index, company)))
    }

    fn answer(
        &self,
        kind: &Primitive,
        tx: &Transaction,
        line: usize,
        notice: &NoticeNumber,
        fiscal_code: &str,
    ) -> String {
        let l = &tx.lines[line];
        let notice_data = tx.instruction.as_ref().and_then(|i| match i {
            payments_core::Instruction::PagoPa(p) => p.notices.get(line).cloned(),
            _ => None,
        });
        let company = notice_data
            .as_ref()
            .map(|n| n.company_name.clone())
            .unwrap_or_default();
        let due = notice_data
            .as_ref()
            .and_then(|n| n.due_date)
            .unwrap_or_else(|| tx.expires_at.date_naive());
        let description = escape(cut(&l.reason, super::MAX_TEXT_CHARS).as_str()).into_owned();
        let company = escape(company.as_str()).into_owned();
        let amount = euros(l);
        match kind {
            Primitive::Verify => verify_answer(&amount, due, &description, fiscal_code, &company),
            Primitive::Get => {
                let config = self.creditor_config(tx.creditor_id);
                let Some(iban) = config.as_ref().and_then(|c| c.iban.clone()) else {
                    return fault(
                        kind.response(),
                        StationFault::System,
                        "the creditor has no IBAN configured for pagoPA",
                        fiscal_code,
                    );
                };
                let category = notice_data
                    .and_then(|n| n.taxonomy)
                    .or_else(|| config.and_then(|c| c.taxonomy.get(&l.payment_type_id).cloned()))
                    .unwrap_or_default();
                let (id_type, id_value) = match &tx.payer.fiscal_code {
                    Some(cf) if cf.len() == 11 => ("G", cf.as_str()),
                    Some(cf) => ("F", cf.as_str()),
                    None => ("F", "ANONIMO"),
                };
                let transfer =
                    transfer_xml(1, &amount, fiscal_code, Some(&iban), &l.reason, &category);
                get_answer(
                    kind,
                    &PaymentData {
                        iuv: notice.iuv(),
                        amount: &amount,
                        due,
                        description: &description,
                        company: &company,
                        debtor_type: id_type,
                        debtor_id: id_value,
                        debtor_name: &tx.payer.name,
                        transfers: &transfer,
                    },
                )
            }
        }
    }
}
