//! Sends a text on a Bird channel, then follows it until the upstream has taken it.
//!
//! ```sh
//! SWITCHBOARD_URL=http://127.0.0.1:8080 SWITCHBOARD_API_KEY=key_…:sk_… \
//!     cargo run -p switchboard-client --example bird_channel -- WORKSPACE CHANNEL +31612345678 "Your table is ready"
//! ```
//!
//! The workspace is the account id; the operator creates the channel on one of its senders
//! (`POST /admin/v1/accounts/{account}/channels`).

use std::process::ExitCode;
use std::time::Duration;

use switchboard_client::{BirdAuth, ClientError, Switchboard, Uuid};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workspace, channel, to, text] = args.as_slice() else {
        eprintln!("usage: bird_channel WORKSPACE CHANNEL TO TEXT (with SWITCHBOARD_URL and SWITCHBOARD_API_KEY set)");
        return ExitCode::from(2);
    };
    let (Ok(workspace), Ok(channel)) = (Uuid::parse_str(workspace), Uuid::parse_str(channel)) else {
        eprintln!("WORKSPACE and CHANNEL are UUIDs");
        return ExitCode::from(2);
    };
    let url = std::env::var("SWITCHBOARD_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let Ok(key) = std::env::var("SWITCHBOARD_API_KEY") else {
        eprintln!("set SWITCHBOARD_API_KEY to the key as the admin API shows it: key_…:sk_…");
        return ExitCode::from(2);
    };
    match run(&url, workspace, channel, &key, to, text).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Bird's validation errors name each field and its problems.
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, workspace: Uuid, channel: Uuid, key: &str, to: &str, text: &str) -> Result<(), ClientError> {
    let switchboard = Switchboard::builder(url).timeout(Duration::from_secs(10)).build()?;
    let bird = switchboard.bird(workspace, BirdAuth::AccessKey(key.into()));
    let sent = bird.send_text(channel, to, text).await?;
    println!("{} {}", sent.id, sent.status);
    for _ in 0..20 {
        let now = bird.message(channel, &sent.id.to_string()).await?;
        if !matches!(now.status.as_str(), "accepted" | "processing") {
            println!("{} {}{}", now.id, now.status, now.reason.map(|r| format!(": {r}")).unwrap_or_default());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("{} is still on its way; read it again later", sent.id);
    Ok(())
}
