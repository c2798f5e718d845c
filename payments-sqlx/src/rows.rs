//! Between rows and domain values: cents, microseconds, ids as text, JSON columns.

use chrono::{DateTime, NaiveDate, Utc};
use payments_core::{
    Actor, Cart, Currency, Error, ItemState, MethodKind, Money, OutboxMessage, OutboxStatus,
    PayableItem, Result, Source, Transaction, TransactionEvent, TxStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A bound value of a query built at run time.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// SQL built at run time with numbered placeholders (`$1`, `$2`, …), valid in both dialects.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// Appends placeholders bound to `args`, separated by commas (the inside of an
    /// `IN (…)`).
    pub(crate) fn list(&mut self, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.arg(a);
        }
        self
    }

    /// Appends a table of rows sent as one JSON parameter, `rows` (an array of arrays),
    /// named `j`, whose one column `value` is a row: its fields read as `j.value->>0`,
    /// `j.value->>1`, … (text, or NULL; cast what is not text). A bulk statement built on
    /// it has the same text whatever its number of rows, so it is prepared once and binds
    /// one parameter: no placeholder per value, and one round trip per chunk.
    pub(crate) fn json_rows(&mut self, rows: String, sqlite: bool) -> &mut Self {
        if sqlite {
            // `jsonb_each`: the text is parsed once, and each row's `value` is a JSONB
            // blob, from which every `->>` reads directly. With `json_each` each `->>`
            // parsed its row's text again (half the processor time of an import).
            self.push("jsonb_each(").arg(Arg::Text(rows)).push(") AS j")
        } else {
            self.push("jsonb_array_elements(CAST(")
                .arg(Arg::Text(rows))
                .push(" AS jsonb)) AS j(value)")
        }
    }

    /// Appends `(SELECT …)` of the texts `values`, sent as one JSON parameter (see
    /// [`json_rows`](Self::json_rows)): the inside of an `IN` whose statement is prepared
    /// once whatever the number of values.
    pub(crate) fn json_list<'a>(
        &mut self,
        values: impl IntoIterator<Item = &'a str>,
        sqlite: bool,
    ) -> Result<&mut Self> {
        let rows: Vec<[&str; 1]> = values.into_iter().map(|v| [v]).collect();
        let rows = to_json(&rows)?;
        self.push("(SELECT j.value->>0 FROM ");
        Ok(self.json_rows(rows, sqlite).push(")"))
    }

    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for a in &self.args {
            q = match a {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(t) => q.bind(t.clone()),
            };
        }
        q
    }
}

pub(crate) fn db_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::storage(what, e)
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(m: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| corrupt("a timestamp out of range"))
}

pub(crate) fn corrupt(what: impl Into<String>) -> Error {
    Error::Storage {
        message: format!("unreadable row: {}", what.into()),
        source: None,
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::storage("encoding a JSON column", e))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::storage("decoding a JSON column", e))
}

pub(crate) fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col)
        .map_err(|e| Error::storage("reading a column", e))
}

pub(crate) fn parse_id<T: std::str::FromStr>(row: &AnyRow, col: &str) -> Result<T> {
    get::<String>(row, col)?
        .parse()
        .map_err(|_| corrupt(format!("{col} is not an id")))
}

pub(crate) fn money(cents: i64, currency: &str) -> Result<Money> {
    let currency: Currency = currency.parse().map_err(|_| corrupt("currency"))?;
    Money::from_minor(cents, currency).map_err(|_| corrupt("amount"))
}

pub(crate) fn status(s: &str) -> Result<TxStatus> {
    TxStatus::parse(s).ok_or_else(|| corrupt(format!("status {s}")))
}

pub(crate) const ITEM_COLUMNS: &str = "id, creditor_id, cart_id, payer_id, module, source_key, payment_type_id, reason, \
     amount_cents, currency, due_date, extra, state, transaction_id, created_at";

pub(crate) fn item(row: &AnyRow) -> Result<PayableItem> {
    let state = match get::<String>(row, "state")?.as_str() {
        "open" => ItemState::Open,
        "removed" => ItemState::Removed,
        "locked" => ItemState::Locked(parse_id(row, "transaction_id")?),
        "paid" => ItemState::Paid(parse_id(row, "transaction_id")?),
        "refunded" => ItemState::Refunded(parse_id(row, "transaction_id")?),
        other => return Err(corrupt(format!("item state {other}"))),
    };
    let due_date = match get::<Option<String>>(row, "due_date")? {
        Some(d) => Some(d.parse::<NaiveDate>().map_err(|_| corrupt("due_date"))?),
        None => None,
    };
    Ok(PayableItem {
        id: parse_id(row, "id")?,
        creditor_id: parse_id(row, "creditor_id")?,
        cart_id: parse_id(row, "cart_id")?,
        payer_id: get::<String>(row, "payer_id")?.into(),
        source: Source::new(
            get::<String>(row, "module")?,
            get::<String>(row, "source_key")?,
        ),
        payment_type_id: parse_id(row, "payment_type_id")?,
        reason: get(row, "reason")?,
        amount: money(get(row, "amount_cents")?, &get::<String>(row, "currency")?)?,
        due_date,
        extra: from_json(&get::<String>(row, "extra")?)?,
        state,
        created_at: from_micros(get(row, "created_at")?)?,
    })
}

/// The state column and transaction id of an item state.
pub(crate) fn item_state(state: &ItemState) -> (&'static str, Option<String>) {
    match state {
        ItemState::Open => ("open", None),
        ItemState::Removed => ("removed", None),
        ItemState::Locked(t) => ("locked", Some(t.to_string())),
        ItemState::Paid(t) => ("paid", Some(t.to_string())),
        ItemState::Refunded(t) => ("refunded", Some(t.to_string())),
        // A state added to the core later: refused rather than stored wrongly.
        #[allow(unreachable_patterns)]
        _ => ("unknown", None),
    }
}

pub(crate) const CART_COLUMNS: &str = "id, creditor_id, payer, created_at";

pub(crate) fn cart(row: &AnyRow) -> Result<Cart> {
    Ok(Cart {
        id: parse_id(row, "id")?,
        creditor_id: parse_id(row, "creditor_id")?,
        payer: from_json(&get::<String>(row, "payer")?)?,
        created_at: from_micros(get(row, "created_at")?)?,
    })
}

pub(crate) const TX_COLUMNS: &str = "id, creditor_id, cart_id, payer, method_id, method_kind, gateway_id, lines, \
     total_cents, currency, status, provider_ref, idempotency_key, instruction, created_at, updated_at, expires_at";

pub(crate) fn transaction(row: &AnyRow) -> Result<Transaction> {
    let kind: String = get(row, "method_kind")?;
    Ok(Transaction {
        id: parse_id(row, "id")?,
        creditor_id: parse_id(row, "creditor_id")?,
        cart_id: parse_id(row, "cart_id")?,
        payer: from_json(&get::<String>(row, "payer")?)?,
        method_id: parse_id(row, "method_id")?,
        method_kind: MethodKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("method kind {kind}")))?,
        gateway_id: get::<String>(row, "gateway_id")?.into(),
        lines: from_json(&get::<String>(row, "lines")?)?,
        total: money(get(row, "total_cents")?, &get::<String>(row, "currency")?)?,
        status: status(&get::<String>(row, "status")?)?,
        provider_ref: get(row, "provider_ref")?,
        idempotency_key: get(row, "idempotency_key")?,
        instruction: get::<Option<String>>(row, "instruction")?
            .map(|s| from_json(&s))
            .transpose()?,
        created_at: from_micros(get(row, "created_at")?)?,
        updated_at: from_micros(get(row, "updated_at")?)?,
        expires_at: from_micros(get(row, "expires_at")?)?,
    })
}

pub(crate) const EVENT_COLUMNS: &str =
    "id, transaction_id, at, actor, from_status, to_status, provider_ref, note";

pub(crate) fn event(row: &AnyRow) -> Result<TransactionEvent> {
    Ok(TransactionEvent {
        id: parse_id(row, "id")?,
        transaction_id: parse_id(row, "transaction_id")?,
        at: from_micros(get(row, "at")?)?,
        actor: from_json::<Actor>(&get::<String>(row, "actor")?)?,
        from: get::<Option<String>>(row, "from_status")?
            .map(|s| status(&s))
            .transpose()?,
        to: status(&get::<String>(row, "to_status")?)?,
        provider_ref: get(row, "provider_ref")?,
        note: get(row, "note")?,
    })
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, transaction_id, creditor_id, payload, status, attempts, next_attempt_at, \
     last_error, created_at, delivered_at";

pub(crate) fn outbox(row: &AnyRow) -> Result<OutboxMessage> {
    let st: String = get(row, "status")?;
    Ok(OutboxMessage {
        id: parse_id(row, "id")?,
        transaction_id: parse_id(row, "transaction_id")?,
        creditor_id: parse_id(row, "creditor_id")?,
        payload: {
            let text: String = get(row, "payload")?;
            match serde_json::from_str(&text) {
                Ok(payload) => payload,
                // Handed over as it is: its delivery sets it aside, alone.
                Err(e) => {
                    payments_core::OutboxPayload::Unreadable(payments_core::UnreadablePayload {
                        text: text.chars().take(1000).collect(),
                        error: e.to_string(),
                    })
                }
            }
        },
        status: OutboxStatus::parse(&st).ok_or_else(|| corrupt(format!("outbox status {st}")))?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).map_err(|_| corrupt("attempts"))?,
        next_attempt_at: from_micros(get(row, "next_attempt_at")?)?,
        last_error: get(row, "last_error")?,
        created_at: from_micros(get(row, "created_at")?)?,
        delivered_at: get::<Option<i64>>(row, "delivered_at")?
            .map(from_micros)
            .transpose()?,
    })
}
