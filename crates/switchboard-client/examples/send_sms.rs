//! Sends one SMS through the TextingLine dialect and reads it back.
//!
//! ```sh
//! SWITCHBOARD_URL=http://127.0.0.1:8080 SWITCHBOARD_API_KEY=key_…:sk_… \
//!     cargo run -p switchboard-client --example send_sms -- +18005559876 +18005551234 "Your code is 482910"
//! ```
//!
//! The send is safe to repeat: it carries an idempotency key, and a failure that may pass is
//! tried again under the same key, so the message is stored and charged once.

use std::process::ExitCode;

use switchboard_client::wire::TlSendRequest;
use switchboard_client::{ClientError, ErrorCode, TextingLineClient};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to, body] = args.as_slice() else {
        eprintln!("usage: send_sms FROM TO BODY (with SWITCHBOARD_URL and SWITCHBOARD_API_KEY set)");
        return ExitCode::from(2);
    };
    let url = std::env::var("SWITCHBOARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let Some((key_id, secret)) = std::env::var("SWITCHBOARD_API_KEY")
        .ok()
        .and_then(|k| k.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned())))
    else {
        eprintln!("set SWITCHBOARD_API_KEY to the key as the admin API shows it: key_…:sk_…");
        return ExitCode::from(2);
    };
    match run(&url, &key_id, &secret, from, to, body).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Api(e)) if e.code == Some(ErrorCode::Number(33023)) => {
            eprintln!("the account's balance cannot pay for it; top it up first ({})", e.message);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, key_id: &str, secret: &str, from: &str, to: &str, body: &str) -> Result<(), ClientError> {
    let client = TextingLineClient::new(url, key_id, secret)?;
    let request = TlSendRequest { to: to.into(), from: from.into(), body: Some(body.into()), ..Default::default() };
    let sent = client.send(&request).await?;
    println!(
        "{} {:?} after {} attempt(s), idempotency key {}",
        sent.message.id,
        sent.message.status,
        sent.attempts,
        sent.idempotency_key.as_deref().unwrap_or("none")
    );
    if let Some(error) = &sent.message.error_type {
        // A 201 can carry a failed message: an opted-out recipient, a refused destination.
        println!("not sent: {error:?}: {}", sent.message.error_message.as_deref().unwrap_or_default());
    }
    let now = client.message(&sent.message.id.to_string()).await?;
    println!("now {:?}", now.status);
    Ok(())
}
