//! The creditor's station: the one endpoint pagoPA's node calls for a body (SANP,
//! "Integrazione tramite API sincrone"; the operations of `paForNode.wsdl`). Before a bank,
//! a post office, an app or the checkout takes a notice's payment, the node asks
//! `paVerifyPaymentNotice` (what is due?) and `paGetPayment` or `paGetPaymentV2` (where does
//! the money go?); once paid, it sends the receipt, `paSendRT` or `paSendRTV2`. Each request
//! is answered with its own response element, and the answers come from the transaction
//! the notice belongs to, or the debt position that printed it.

use payments_core::{
    CreditorId, DebtPosition, GatewayId, Money, OptionRefusal, Payments, Result, Transaction,
    TxStatus,
};
use quick_xml::escape::escape;
use serde::Deserialize;

use super::notice::NoticeNumber;
use super::receipt::{Envelope, ko, read_soap, soap};
use super::{GATEWAY_ID, MAX_TEXT_CHARS, PagoPaCreditor, PagoPaGateway, cut};

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "paVerifyPaymentNoticeReq")]
    verify: Option<Request>,
    #[serde(rename = "paGetPaymentReq")]
    get: Option<Request>,
    #[serde(rename = "paGetPaymentV2Request")]
    get_v2: Option<Request>,
    #[serde(rename = "paSendRTReq")]
    send_rt: Option<Request>,
    #[serde(rename = "paSendRTV2Request")]
    send_rt_v2: Option<Request>,
    #[serde(rename = "paDemandPaymentNoticeRequest")]
    demand: Option<Request>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Request {
    idPA: Option<String>,
    idBrokerPA: Option<String>,
    idStation: Option<String>,
    qrCode: Option<QrCode>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct QrCode {
    fiscalCode: Option<String>,
    noticeNumber: Option<String>,
}

/// Why a station refuses a request, as pagoPA's fault codes say it (pagoPA's error
/// handling guide, "Nodo -> EC" and "Dominio EC").
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
    /// `idPA` names a body this station does not serve.
    WrongBody,
    /// `idBrokerPA` is not the body's broker.
    WrongBroker,
    /// `idStation` is not the body's station.
    WrongStation,
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
            StationFault::WrongBody => "PAA_ID_DOMINIO_ERRATO",
            StationFault::WrongBroker => "PAA_ID_INTERMEDIARIO_ERRATO",
            StationFault::WrongStation => "PAA_STAZIONE_INT_ERRATA",
        }
    }

    /// What it means, as pagoPA's table of fault strings says.
    pub fn reason(self) -> &'static str {
        match self {
            StationFault::Unknown => "Pagamento in attesa risulta sconosciuto all'Ente Creditore",
            StationFault::Duplicate => "Pagamento in attesa risulta concluso all'Ente Creditore",
            StationFault::Expired => "Pagamento in attesa risulta scaduto all'Ente Creditore",
            StationFault::Cancelled => "Pagamento in attesa risulta annullato all'Ente Creditore",
            StationFault::Syntax => "Errore di sintassi XSD",
            StationFault::System => "Errore generico",
            StationFault::WrongBody => "La PAA non corrisponde al Dominio indicato",
            StationFault::WrongBroker => "Identificativo intermediario non corrispondente",
            StationFault::WrongStation => "Stazione intermediario non corrispondente",
        }
    }
}

/// The requests of `paForNode.wsdl` a station serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Verify,
    Get,
    GetV2,
    SendRt,
    SendRtV2,
    Demand,
}

impl Primitive {
    /// Its response element, as the WSDL pairs it.
    fn response(self) -> &'static str {
        match self {
            Primitive::Verify => "paVerifyPaymentNoticeRes",
            Primitive::Get => "paGetPaymentRes",
            Primitive::GetV2 => "paGetPaymentV2Response",
            Primitive::SendRt => "paSendRTRes",
            Primitive::SendRtV2 => "paSendRTV2Response",
            Primitive::Demand => "paDemandPaymentNoticeResponse",
        }
    }

    /// The primitive of a `SOAPAction` header (the WSDL's `soapAction`, quoted or not).
    fn of_action(action: &str) -> Option<Self> {
        let action = action.trim().trim_matches('"');
        let name = action.rsplit(['/', '#']).next().unwrap_or(action);
        Some(match name {
            "paVerifyPaymentNotice" => Primitive::Verify,
            "paGetPayment" => Primitive::Get,
            "paGetPaymentV2" => Primitive::GetV2,
            "paSendRT" => Primitive::SendRt,
            "paSendRTV2" => Primitive::SendRtV2,
            "paDemandPaymentNotice" => Primitive::Demand,
            _ => return None,
        })
    }

    fn is_receipt(self) -> bool {
        matches!(self, Primitive::SendRt | Primitive::SendRtV2)
    }
}

fn fault(element: &str, fault: StationFault, text: &str, id_pa: &str) -> String {
    soap(element, &ko(fault.code(), text, &cut(id_pa, 35)))
}

fn money(amount: &Money) -> String {
    let cents = amount.minor_units();
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A text for an element of 1 to `max` characters: trimmed, cut, never empty, escaped.
fn text(value: &str, max: usize, otherwise: &str) -> String {
    let value = cut(value, max);
    let value = if value.is_empty() {
        otherwise.to_owned()
    } else {
        value
    };
    escape(value.as_str()).into_owned()
}

/// Where a share of a notice's amount goes.
struct TransferData {
    amount: Money,
    fiscal_code: String,
    company: Option<String>,
    iban: String,
    remittance: String,
    category: String,
}

/// What the answers say of a notice, before it is written.
struct NoticeData {
    amount: Money,
    due: chrono::NaiveDate,
    description: String,
    company: String,
    debtor_id: Option<String>,
    debtor_name: String,
    transfers: Vec<TransferData>,
}

/// The `paVerifyPaymentNoticeRes` of a notice: one option, to be paid as it is (`EQ`).
fn verify_answer(d: &NoticeData, fiscal_code: &str) -> String {
    let description = text(&d.description, MAX_TEXT_CHARS, "-");
    soap(
        Primitive::Verify.response(),
        &format!(
            "<outcome>OK</outcome><paymentList><paymentOptionDescription>\
             <amount>{amount}</amount><options>EQ</options><dueDate>{due}</dueDate>\
             <detailDescription>{description}</detailDescription><allCCP>false</allCCP>\
             </paymentOptionDescription></paymentList>\
             <paymentDescription>{description}</paymentDescription>\
             <fiscalCodePA>{fiscal_code}</fiscalCodePA><companyName>{company}</companyName>",
            amount = money(&d.amount),
            due = d.due,
            company = text(&d.company, MAX_TEXT_CHARS, fiscal_code),
        ),
    )
}

/// The debtor of a `paGetPayment` answer: `F` and a person's 16-character fiscal code, `G`
/// and a company's 11 digits, or `F` `ANONIMO` (paForNode.xsd,
/// `stEntityUniqueIdentifierValue`: 2 to 16 characters).
fn debtor(id: Option<&str>, name: &str) -> String {
    let id = id.map(str::trim).unwrap_or_default().to_ascii_uppercase();
    let (kind, value) = if id.len() == 11 && id.bytes().all(|b| b.is_ascii_digit()) {
        ("G", id)
    } else if id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        ("F", id)
    } else {
        ("F", "ANONIMO".to_owned())
    };
    format!(
        "<debtor><uniqueIdentifier><entityUniqueIdentifierType>{kind}</entityUniqueIdentifierType>\
         <entityUniqueIdentifierValue>{value}</entityUniqueIdentifierValue></uniqueIdentifier>\
         <fullName>{}</fullName></debtor>",
        text(name, 70, "ANONIMO")
    )
}

/// The `paGetPaymentRes` (`ctPaymentPA`) or `paGetPaymentV2Response` (`ctPaymentPAV2`:
/// the company's name is required, and each transfer names its beneficiary).
fn get_answer(kind: Primitive, iuv: &str, d: &NoticeData, fiscal_code: &str) -> String {
    let v2 = kind == Primitive::GetV2;
    let transfers: String = d
        .transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let company = match (&t.company, v2) {
                (Some(c), true) => {
                    format!(
                        "<companyName>{}</companyName>",
                        text(c, MAX_TEXT_CHARS, "-")
                    )
                }
                _ => String::new(),
            };
            format!(
                "<transfer><idTransfer>{}</idTransfer><transferAmount>{}</transferAmount>\
                 <fiscalCodePA>{}</fiscalCodePA>{company}<IBAN>{}</IBAN>\
                 <remittanceInformation>{}</remittanceInformation>\
                 <transferCategory>{}</transferCategory></transfer>",
                i + 1,
                money(&t.amount),
                escape(t.fiscal_code.as_str()),
                escape(t.iban.as_str()),
                text(&t.remittance, MAX_TEXT_CHARS, "-"),
                text(&t.category, MAX_TEXT_CHARS, "-"),
            )
        })
        .collect();
    soap(
        kind.response(),
        &format!(
            "<outcome>OK</outcome><data>\
             <creditorReferenceId>{iuv}</creditorReferenceId>\
             <paymentAmount>{amount}</paymentAmount><dueDate>{due}</dueDate>\
             <description>{description}</description><companyName>{company}</companyName>\
             {debtor}<transferList>{transfers}</transferList></data>",
            amount = money(&d.amount),
            due = d.due,
            description = text(&d.description, MAX_TEXT_CHARS, "-"),
            company = text(&d.company, MAX_TEXT_CHARS, fiscal_code),
            debtor = debtor(d.debtor_id.as_deref(), &d.debtor_name),
        ),
    )
}

type Refusal = (StationFault, String);

impl PagoPaGateway {
    /// The station: answers every request pagoPA's node sends a body (one URL for all,
    /// as pagoPA configures one per station), each with its own response element of
    /// `paForNode.xsd`. The primitive is read from the body's element, or else from the
    /// `SOAPAction` header.
    ///
    /// - `paVerifyPaymentNotice`, `paGetPayment`, `paGetPaymentV2`: the amount, due date
    ///   and description of the notice, its debtor and its transfers (one to five
    ///   beneficiaries: the creditor's IBAN with the payment type's taxonomy code, or
    ///   the transfers of the debt position option it pays). A notice already paid,
    ///   expired, cancelled or unknown is refused with the fault code pagoPA expects, so
    ///   the payer is never charged for it.
    /// - `paSendRT`, `paSendRTV2`: the receipt goes through
    ///   [`Payments::handle_callback`] and is answered as
    ///   [`PagoPaGateway::receipt_response`] says, in the response element of its version.
    /// - `paDemandPaymentNotice` (spontaneous payments from a catalogue) is not offered:
    ///   answered `KO` with `PAA_SYSTEM_ERROR`, as a station that does not configure
    ///   the service answers.
    ///
    /// Every request must carry the channel's credential, and name a body this gateway
    /// serves (`idPA`, else `PAA_ID_DOMINIO_ERRATO`) with its broker and station
    /// (`PAA_ID_INTERMEDIARIO_ERRATO`, `PAA_STAZIONE_INT_ERRATA`) when they are set
    /// ([`PagoPaCreditor::with_station`], [`PagoPaGateway::with_station`]).
    pub async fn station_response(
        &self,
        payments: &Payments,
        request: &payments_core::CallbackRequest,
    ) -> String {
        let action = request.header("soapaction").and_then(Primitive::of_action);
        let fallback = action.unwrap_or(Primitive::Verify).response();
        let body = match read_soap::<Body>(&request.body, super::MAX_RECEIPT_BYTES) {
            Ok(Envelope { body }) => body,
            Err(e) => {
                return fault(
                    fallback,
                    StationFault::Syntax,
                    &format!("the request does not read: {e}"),
                    "",
                );
            }
        };
        let found = [
            (Primitive::Verify, body.verify),
            (Primitive::Get, body.get),
            (Primitive::GetV2, body.get_v2),
            (Primitive::SendRt, body.send_rt),
            (Primitive::SendRtV2, body.send_rt_v2),
            (Primitive::Demand, body.demand),
        ]
        .into_iter()
        .find_map(|(kind, req)| req.map(|r| (kind, r)));
        let Some((kind, req)) = found else {
            return fault(
                fallback,
                StationFault::Syntax,
                "the body holds none of the requests of paForNode.wsdl",
                "",
            );
        };
        let element = kind.response();
        let id_pa = req.idPA.clone().unwrap_or_default();
        if self.authenticate(request).is_err() {
            return fault(
                element,
                StationFault::System,
                "the request does not carry the station's credential",
                &id_pa,
            );
        }
        let addressed = self.creditor_of(id_pa.trim());
        if let Some(f) = self.check_ids(
            addressed,
            id_pa.trim(),
            req.idBrokerPA.as_deref().unwrap_or_default(),
            req.idStation.as_deref().unwrap_or_default(),
        ) {
            return fault(element, f, f.reason(), &id_pa);
        }
        if kind.is_receipt() {
            let result = payments.handle_callback(GATEWAY_ID, request).await;
            return super::receipt::response_to(
                element,
                Self::receipt_fault(&result)
                    .as_ref()
                    .map(|(f, m)| (*f, m.as_str())),
                &id_pa,
            );
        }
        if kind == Primitive::Demand {
            return fault(
                element,
                StationFault::System,
                "paDemandPaymentNotice is not offered by this station",
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
        match self.notice_data(payments, &fiscal_code, &notice).await {
            Ok(Ok(d)) if kind == Primitive::Verify => verify_answer(&d, &fiscal_code),
            Ok(Ok(d)) => get_answer(kind, notice.iuv(), &d, &fiscal_code),
            Ok(Err((f, text))) => fault(element, f, &text, &id_pa),
            Err(_) => fault(
                element,
                StationFault::System,
                "the station cannot read its positions now",
                &id_pa,
            ),
        }
    }

    /// The creditor with `fiscal_code`, when this gateway serves it.
    pub(super) fn creditor_of(&self, fiscal_code: &str) -> Option<CreditorId> {
        self.by_fiscal_code
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fiscal_code)
            .copied()
    }

    /// Whether a request names a body served here (`addressed`, found by `id_pa`; any
    /// body when a default configuration is set), its broker and its station; the fault
    /// otherwise.
    pub(super) fn check_ids(
        &self,
        addressed: Option<CreditorId>,
        id_pa: &str,
        broker: &str,
        station: &str,
    ) -> Option<StationFault> {
        if id_pa.is_empty() || (addressed.is_none() && self.default_creditor.is_none()) {
            return Some(StationFault::WrongBody);
        }
        let own = addressed
            .and_then(|c| self.creditor_config(c))
            .and_then(|c| c.station);
        let expected = own.as_ref().or(self.station.as_ref());
        match expected {
            Some((b, _)) if b != broker.trim() => Some(StationFault::WrongBroker),
            Some((_, s)) if s != station.trim() => Some(StationFault::WrongStation),
            _ => None,
        }
    }

    /// What the answers say of `notice`: the open transaction line it pays, or the debt
    /// position option it is (a notice printed ahead), or why it cannot be paid.
    async fn notice_data(
        &self,
        payments: &Payments,
        fiscal_code: &str,
        notice: &NoticeNumber,
    ) -> Result<std::result::Result<NoticeData, Refusal>> {
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
            return self.option_data(payments, fiscal_code, notice).await;
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
        if let Some((f, why)) = refused {
            return Ok(Err((f, format!("notice {notice} is {why}"))));
        }
        self.line_data(payments, &tx, line, fiscal_code).await
    }

    /// The notice of line `index` of `tx`: its due date is its item's, its transfers
    /// those of the debt position option it pays, or one to the creditor's IBAN.
    async fn line_data(
        &self,
        payments: &Payments,
        tx: &Transaction,
        index: usize,
        fiscal_code: &str,
    ) -> Result<std::result::Result<NoticeData, Refusal>> {
        let l = &tx.lines[index];
        let notice = tx.instruction.as_ref().and_then(|i| match i {
            payments_core::Instruction::PagoPa(p) => p.notices.get(index).cloned(),
            _ => None,
        });
        let config = self.creditor_config(tx.creditor_id);
        let due = notice
            .as_ref()
            .and_then(|n| n.due_date)
            .unwrap_or_else(|| payments_core::rome_day(tx.expires_at));
        if let Some(refusal) = overdue(config.as_ref(), &l.payment_type_id, due, payments) {
            return Ok(Err(refusal));
        }
        let named = notice
            .as_ref()
            .map(|n| n.company_name.clone())
            .filter(|c| !c.trim().is_empty())
            .or_else(|| config.as_ref().and_then(|c| c.company_name.clone()));
        // The creditor is read only for a notice that names no company.
        let company = match named {
            Some(name) => name,
            None => payments.creditor(tx.creditor_id).await?.name,
        };
        let transfers = match payments
            .position_option_of(tx.creditor_id, &l.source)
            .await?
        {
            Some((p, i)) if p.options[i].amount == l.amount => {
                option_transfers(&p, i, fiscal_code, &company)
            }
            _ => {
                let Some(iban) = config.as_ref().and_then(|c| c.iban.clone()) else {
                    return Ok(Err((
                        StationFault::System,
                        "the creditor has no IBAN configured for pagoPA".into(),
                    )));
                };
                let category = notice
                    .as_ref()
                    .and_then(|n| n.taxonomy.clone())
                    .or_else(|| {
                        config
                            .as_ref()
                            .and_then(|c| c.taxonomy.get(&l.payment_type_id).cloned())
                    });
                let Some(category) = category else {
                    return Ok(Err((
                        StationFault::System,
                        "the payment type has no taxonomy code for pagoPA".into(),
                    )));
                };
                vec![TransferData {
                    amount: l.amount,
                    fiscal_code: fiscal_code.to_owned(),
                    company: Some(company.clone()),
                    iban,
                    remittance: l.reason.clone(),
                    category,
                }]
            }
        };
        Ok(Ok(NoticeData {
            amount: l.amount,
            due,
            description: l.reason.clone(),
            company,
            debtor_id: tx.payer.fiscal_code.clone(),
            debtor_name: tx.payer.name.clone(),
            transfers,
        }))
    }

    /// The debt position option with `notice`, if it can be paid now.
    async fn option_data(
        &self,
        payments: &Payments,
        fiscal_code: &str,
        notice: &NoticeNumber,
    ) -> Result<std::result::Result<NoticeData, Refusal>> {
        let unknown = || Ok(Err((StationFault::Unknown, format!("no notice {notice}"))));
        let Some(creditor) = self.creditor_of(fiscal_code) else {
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
        let config = self.creditor_config(creditor);
        let o = &p.options[index];
        if let Some(refusal) = overdue(config.as_ref(), &p.payment_type_id, o.due_date, payments) {
            return Ok(Err(refusal));
        }
        let company = match config.and_then(|c| c.company_name) {
            Some(name) => name,
            None => cut(&payments.creditor(creditor).await?.name, MAX_TEXT_CHARS),
        };
        Ok(Ok(NoticeData {
            amount: o.amount,
            due: o.due_date,
            description: o.description.clone(),
            company: company.clone(),
            debtor_id: Some(p.payer.fiscal_code.clone()),
            debtor_name: p.payer.name.clone(),
            transfers: option_transfers(&p, index, fiscal_code, &company),
        }))
    }
}

/// The transfers of option `index` of `p`: the creditor's own (named `company`) and the
/// other beneficiaries'.
fn option_transfers(
    p: &DebtPosition,
    index: usize,
    fiscal_code: &str,
    company: &str,
) -> Vec<TransferData> {
    p.options[index]
        .transfers
        .iter()
        .map(|t| TransferData {
            amount: t.amount,
            fiscal_code: t.fiscal_code.clone(),
            company: (t.fiscal_code == fiscal_code).then(|| company.to_owned()),
            iban: t.iban.clone().unwrap_or_default(),
            remittance: t.remittance.clone(),
            category: t.taxonomy.clone(),
        })
        .collect()
}

/// The refusal of a notice due on `due` whose payment type the creditor does not take
/// once overdue ([`PagoPaCreditor::refuse_when_overdue`]), if today (Europe/Rome) is
/// later.
fn overdue(
    config: Option<&PagoPaCreditor>,
    payment_type: &payments_core::PaymentTypeId,
    due: chrono::NaiveDate,
    payments: &Payments,
) -> Option<Refusal> {
    let refused = config.is_some_and(|c| c.overdue_refused.contains(payment_type));
    (refused && payments.today() > due).then(|| {
        (
            StationFault::Expired,
            format!("the notice was due on {due} and is not payable after"),
        )
    })
}
