//! Checks one received webhook request: its three signature headers against its raw body.
//!
//! ```sh
//! WEBHOOK_SECRET=whsec_… cargo run -p switchboard-client --example verify_webhook -- \
//!     "$WEBHOOK_ID" "$WEBHOOK_TIMESTAMP" "$WEBHOOK_SIGNATURE" < body.json
//! ```
//!
//! A receiver does the same in its HTTP handler, before parsing the body: with a framework's
//! header map, `SignedHeaders::from_lookup(|name| headers.get(name)?.to_str().ok())`.

use std::io::Read;
use std::process::ExitCode;

use switchboard_client::webhooks::{SignedHeaders, Verifier, WebhookEvent};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [id, timestamp, signature] = args.as_slice() else {
        eprintln!(
            "usage: verify_webhook WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE < body (with WEBHOOK_SECRET set)"
        );
        return ExitCode::from(2);
    };
    let verifier = match std::env::var("WEBHOOK_SECRET").map(|s| Verifier::parse(&s)) {
        Ok(Ok(verifier)) => verifier,
        Ok(Err(e)) => {
            eprintln!("WEBHOOK_SECRET: {e}");
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!("set WEBHOOK_SECRET to the endpoint's secret (whsec_…)");
            return ExitCode::from(2);
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("reading the body: {e}");
        return ExitCode::from(2);
    }
    let headers = SignedHeaders { id, timestamp, signature };
    if let Err(why) = verifier.verify(&headers, &body) {
        // Answer such a request 401 and do not act on it.
        eprintln!("refused: {why}");
        return ExitCode::FAILURE;
    }
    match serde_json::from_slice::<WebhookEvent>(&body) {
        Ok(event) => println!("authentic: {} {:?} {} {:?}", event.id, event.kind, event.data.id, event.data.status),
        Err(_) => println!("authentic (not an account endpoint's event: a Bird notification, say)"),
    }
    ExitCode::SUCCESS
}
