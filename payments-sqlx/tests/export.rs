//! Exports and searches on the database: CSV with either separator, XLSX, JSON lines;
//! formulas neutralised; filters and access as in the search.

mod common;

use std::sync::Arc;

use common::{sandbox, session, shop};
use payments_core::testing::Fixture;
use payments_core::*;
use payments_sqlx::{COLUMNS, ExportFormat, SqlxStore};

struct Data {
    store: Arc<SqlxStore>,
    fx: Fixture,
    paid: Vec<Transaction>,
}

/// Three paid transactions of two items each, and one left pending.
async fn data(store: SqlxStore) -> Data {
    let store = Arc::new(store);
    let sandbox = sandbox();
    let (s, fx) = shop(store.clone(), sandbox.clone()).await;
    let mut paid = Vec::new();
    for n in 0..4 {
        let (actor, cart) = s
            .cart(&fx, &format!("payer{n}"), &[(&format!("{n}-a"), "10.05")])
            .await;
        // A reason a spreadsheet would run as a formula.
        let evil = NewFreeItem::new(
            fx.fees.id,
            "2,50",
            "=HYPERLINK(\"http://evil.example\";\"click\")",
        )
        .with_extra("case_number", format!("@{n}"))
        .with_extra("office", "anagrafe");
        s.payments
            .add_free_item(&actor, cart.id, evil)
            .await
            .unwrap();
        let c = s
            .payments
            .checkout(&actor, cart.id, fx.method(MethodKind::Card).id, "k")
            .await
            .unwrap();
        if n < 3 {
            let cb = sandbox
                .complete(&session(&c), PaymentOutcome::Paid)
                .unwrap();
            paid.push(
                s.payments
                    .handle_callback("sandbox", &cb)
                    .await
                    .unwrap()
                    .transaction,
            );
        }
    }
    Data { store, fx, paid }
}

fn paid_only(fx: &Fixture) -> MovementQuery {
    MovementQuery {
        statuses: vec![TxStatus::Paid],
        ..MovementQuery::new(fx.creditor.id)
    }
}

async fn exports(store: SqlxStore) {
    let d = data(store).await;
    let op = Actor::operator(d.fx.creditor.id, Role::Viewer, "anna");

    for separator in [b';', b','] {
        let mut out = Vec::new();
        let n = d
            .store
            .export(
                &op,
                &paid_only(&d.fx),
                ExportFormat::Csv { separator },
                &mut out,
            )
            .await
            .unwrap();
        assert_eq!(n, 6, "one row per item of the paid transactions");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(separator)
            .from_reader(out.as_slice());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            COLUMNS
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 6);
        let newest = d.paid.last().unwrap();
        assert_eq!(
            &rows[0][0],
            newest.id.to_string(),
            "newest transaction first"
        );
        assert_eq!((&rows[0][11], &rows[1][11]), ("1", "2"), "lines in order");
        assert_eq!(&rows[0][9], "12.55", "the total, exact");
        assert_eq!(&rows[0][17], "10.05");
        assert_eq!(&rows[1][17], "2.50");
        assert_eq!(&rows[0][3], "paid");
        assert_eq!(&rows[0][7], "Citizen payer2");
        assert!(
            rows[1][16].starts_with("'=HYPERLINK"),
            "a formula is neutralised: {}",
            &rows[1][16]
        );
        assert!(
            rows.iter()
                .all(|r| !r.iter().any(|c| c.starts_with(['=', '+', '-', '@'])))
        );
    }

    let mut out = Vec::new();
    let n = d
        .store
        .export(&op, &paid_only(&d.fx), ExportFormat::JsonLines, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 6);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["transaction_id"], d.paid[2].id.to_string());
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["amount"], "2.50");

    let path = common::temp_dir().join("movements.xlsx");
    let file = std::fs::File::create(&path).unwrap();
    let n = d
        .store
        .export(
            &op,
            &MovementQuery::new(d.fx.creditor.id),
            ExportFormat::Xlsx,
            file,
        )
        .await
        .unwrap();
    assert_eq!(n, 8, "every transaction, pending included");
    use calamine::{Reader, Xlsx, open_workbook};
    let mut book: Xlsx<_> = open_workbook(&path).unwrap();
    let sheet = book.worksheet_range("Sheet1").unwrap();
    assert_eq!(sheet.height(), 9, "a header and eight rows");
    let header: Vec<String> = sheet
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header, COLUMNS);
    let second = sheet.rows().nth(2).unwrap();
    assert!(second[16].to_string().starts_with("'=HYPERLINK"));
    assert_eq!(second[11].to_string(), "2");
    assert_eq!(second[17].to_string(), "2.50");

    // An operator of another creditor gets a refusal, and nothing is written.
    let other = Actor::operator(CreditorId::new(), Role::Manager, "bruno");
    let mut out = Vec::new();
    let r = d
        .store
        .export(
            &other,
            &paid_only(&d.fx),
            ExportFormat::Csv { separator: b';' },
            &mut out,
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })));
    assert!(out.is_empty());
}

#[tokio::test]
async fn sqlite_exports_csv_xlsx_and_json_lines() {
    exports(common::sqlite().await).await;
}

#[tokio::test]
async fn postgres_exports_csv_xlsx_and_json_lines() {
    let Some(url) = common::postgres_url("postgres_exports_csv_xlsx_and_json_lines") else {
        return;
    };
    exports(common::postgres(&url).await).await;
}

/// 1,203 transactions created in groups of seven in the same microsecond, ids in an order
/// of their own: the export gives every one once, in the search's order (creation time,
/// then id, newest first), across the chunks it reads them in on SQLite (500 each).
async fn large_exports_keep_the_search_order(store: SqlxStore) {
    let creditor = CreditorId::new();
    let base = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    let mut values = Vec::new();
    for n in 0..1203u64 {
        // Ids not in creation order: n times a prime, modulo a larger prime.
        let id = format!("00000000-0000-7000-8000-{:012x}", (n * 7919) % 1_000_003);
        let line = format!(
            r#"{{"item_id":"00000000-0000-7000-9000-{n:012x}","source":{{"module":"tributi","key":"k{n}"}},"payment_type_id":"00000000-0000-7000-a000-000000000001","reason":"Voce {n}","amount":{{"amount":"{n}.05","currency":"EUR"}}}}"#
        );
        values.push(format!(
            "('{id}', '{creditor}', '00000000-0000-7000-b000-000000000001', 'p{n}', \
             '{{\"id\":\"p{n}\",\"name\":\"Citizen \\\"{n}\\\"\",\"email\":null,\"fiscal_code\":null,\"locale\":\"it\"}}', \
             '00000000-0000-7000-a000-0000000000d1', 'card', 'sandbox', '[{line}]', {cents}, 'EUR', 'paid', NULL, \
             'k', NULL, {at}, {at}, {at})",
            cents = n * 100 + 5,
            at = base + (n / 7) as i64,
        ));
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO transactions (id, creditor_id, cart_id, payer_id, payer, method_id, \
         method_kind, gateway_id, lines, total_cents, currency, status, provider_ref, \
         idempotency_key, instruction, created_at, updated_at, expires_at) VALUES {}",
        values.join(", ")
    )))
    .execute(store.pool())
    .await
    .unwrap();

    let mut out = Vec::new();
    let n = store
        .export(
            &Actor::System,
            &MovementQuery::new(creditor),
            ExportFormat::JsonLines,
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(n, 1203);
    let rows: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<String> = rows
        .iter()
        .map(|r| r["transaction_id"].as_str().unwrap().to_owned())
        .collect();

    let mut searched = Vec::new();
    let mut q = MovementQuery {
        limit: MAX_PAGE_SIZE,
        ..MovementQuery::new(creditor)
    };
    loop {
        let page = store.search(&q).await.unwrap();
        searched.extend(page.page.items.iter().map(|t| t.id.to_string()));
        match page.page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(searched.len(), 1203);
    assert_eq!(exported, searched, "the export goes in the search's order");
    // Two states: no index gives the order, so the export reads row by row; same rows,
    // same order.
    let mut out = Vec::new();
    let two_states = MovementQuery {
        statuses: vec![TxStatus::Paid, TxStatus::Pending],
        ..MovementQuery::new(creditor)
    };
    store
        .export(
            &Actor::System,
            &two_states,
            ExportFormat::JsonLines,
            &mut out,
        )
        .await
        .unwrap();
    let by_rows: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["transaction_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(by_rows, searched, "row by row, the same order");
    // Each row carries its own transaction's cells, escapes undone.
    for r in &rows {
        let n: u64 = r["source_key"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(r["payer_name"], format!("Citizen \"{n}\""));
        assert_eq!(r["amount"], format!("{n}.05"));
        assert_eq!(r["total"], format!("{n}.05"));
        let at = chrono::DateTime::from_timestamp_micros(base + (n / 7) as i64).unwrap();
        assert_eq!(
            r["created_at"],
            at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "RFC 3339, UTC, microseconds"
        );
    }
}

#[tokio::test]
async fn sqlite_large_exports_keep_the_search_order() {
    large_exports_keep_the_search_order(common::sqlite().await).await;
}

#[tokio::test]
async fn postgres_large_exports_keep_the_search_order() {
    let Some(url) = common::postgres_url("postgres_large_exports_keep_the_search_order") else {
        return;
    };
    large_exports_keep_the_search_order(common::postgres(&url).await).await;
}
