//! Stripe's webhooks and Nexi XPay's notifications on any body: signed as the provider
//! would sign them, so the reading behind the signature check is reached. They may refuse
//! the input, never panic, and an event they accept is consistent.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use payments_core::{CallbackRequest, Gateway};
use payments_gateways::nexi::{NexiGateway, result_mac};
use payments_gateways::stripe::StripeGateway;

const SECRET: &str = "whsec_fuzz";
const MAC_KEY: &str = "fuzz mac key";

// Built once: a gateway holds an HTTP client, slow to make.
static STRIPE: LazyLock<StripeGateway> =
    LazyLock::new(|| StripeGateway::new("sk_fuzz", SECRET).unwrap());
static NEXI: LazyLock<NexiGateway> =
    LazyLock::new(|| NexiGateway::new("ALIAS_WEB_FUZZ", MAC_KEY, "https://x.example/n").unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let request = if which % 2 == 0 {
        let t = chrono::Utc::now().timestamp();
        let header = StripeGateway::signature_header(SECRET, t, body);
        CallbackRequest::new(body.to_vec()).with_header("Stripe-Signature", header)
    } else {
        // Sign the fields present, as XPay does, so the MAC check passes when it can.
        let field = |name: &str| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mac = result_mac(
            &field("codTrans"),
            &field("esito"),
            &field("importo"),
            &field("divisa"),
            &field("data"),
            &field("orario"),
            &field("codAut"),
            MAC_KEY,
        );
        let mut signed = body.to_vec();
        signed.extend_from_slice(format!("&mac={mac}").as_bytes());
        CallbackRequest::new(signed)
    };
    let result = futures::executor::block_on(async {
        if which % 2 == 0 {
            STRIPE.parse_callback(&request).await
        } else {
            NEXI.parse_callback(&request).await
        }
    });
    if let Ok(event) = result {
        assert!(
            event.provider_ref.is_some(),
            "an event names the provider's reference"
        );
        assert!(event.amount.minor_units() >= 0);
        assert!(event.part.is_none());
    }
});
