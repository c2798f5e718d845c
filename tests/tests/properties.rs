//! Property tests: a transaction's total is the exact sum of its items, whatever the amounts.

mod common;

use common::Env;
use payments_core::*;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_transaction_total_is_the_exact_sum_of_its_items(
        cents in proptest::collection::vec(1i64..=250_000, 1..20),
        decimal_comma in any::<bool>(),
    ) {
        runtime().block_on(async {
            let env = Env::new().await;
            let (alice, cart) = env.cart("alice").await;
            for (n, c) in cents.iter().enumerate() {
                // Write the amount as a person would, with a comma or a point.
                let text = format!("{}.{:02}", c / 100, c % 100);
                let text = if decimal_comma { text.replace('.', ",") } else { text };
                let item = if n % 2 == 0 {
                    env.payments.add_item(&alice, cart.id, env.tari(&format!("k{n}"), &text.replace(',', "."))).await
                } else {
                    env.payments.add_free_item(&alice, cart.id, env.fee(&text)).await
                };
                // Free payments of fees go from € 1 to € 500: others are refused, not rounded.
                match item {
                    Ok(i) => prop_assert_eq!(i.amount.minor_units(), *c),
                    Err(Error::Validation(e)) => prop_assert!((*c < 100 || *c > 50_000) && e.fields() == ["amount"]),
                    Err(e) => prop_assert!(false, "unexpected {}", e),
                }
            }
            let contents = env.payments.cart(&alice, cart.id).await.unwrap();
            let expected: i64 = contents.items.iter().map(|i| i.amount.minor_units()).sum();
            let checkout = env.payments.checkout(&alice, cart.id, env.card(), "k").await.unwrap();
            let tx = checkout.transaction;
            prop_assert_eq!(tx.total.minor_units(), expected);
            prop_assert_eq!(tx.total, contents.total);
            prop_assert_eq!(tx.lines.len(), contents.items.len());
            let lines: rust_decimal::Decimal = tx.lines.iter().map(|l| l.amount.amount()).sum();
            prop_assert_eq!(tx.total.amount(), lines);
            Ok(())
        })?;
    }
}
