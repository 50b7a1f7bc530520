//! The command line: `serve`, `migrate`, `openapi`, `keys`, `backup`, `restore`, and
//! `admin …` over the admin HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use switchboard_client::{AdminClient, DeliveryQuery, LedgerQuery, MessageQuery};
use switchboard_domain::wire::webhooks::{CreateWebhook, InjectInbound, InjectReceipt, InjectReceipts, UpdateWebhook};
use switchboard_domain::wire::{
    CreateChannel, CreateSender, CreateTemplateVersion, TopUp, UpdateChannel, UpdateSender,
};
use switchboard_domain::{Dialect, ErrorType, EventId, MessageId, MessageStatus, Msisdn, Region, Timestamp};
use uuid::Uuid;

/// Switchboard: an SMS/MMS messaging gateway.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ServeArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Operate a running server through its admin API.
    Admin(AdminArgs),
    /// Send one message, or every row of a CSV file, with an account's API key.
    Send(Box<crate::send::SendArgs>),
    /// Manage the server's keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write a consistent copy of the embedded SQLite database, while the server serves
    /// (PostgreSQL: use pg_dump).
    Backup(BackupArgs),
    /// Put a backup in place of the embedded SQLite database, with the server stopped
    /// (PostgreSQL: use pg_restore).
    Restore(RestoreArgs),
    /// Inspect the settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// The settings themselves.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings in force (defaults, the file, `SWITCHBOARD_*` variables and flags
    /// merged; secrets hidden) with where each came from, and exit non-zero if any would
    /// stop the server from starting.
    Check(ServeArgs),
}

/// `switchboard backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the settings come from (which database, which key file).
    #[command(flatten)]
    pub settings: ServeArgs,
    /// The file to write; it must not exist. It holds key hashes and sealed secrets: it is
    /// made readable by its owner only.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Also copy the server key file to FILE.keys (mode 0600): the database is of no use
    /// without the server keys.
    #[arg(long)]
    pub with_keys: bool,
}

/// `switchboard restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the settings come from (which database, which key file).
    #[command(flatten)]
    pub settings: ServeArgs,
    /// The backup to restore (made by `switchboard backup`).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The server key file kept with the backup, to put in place of the key file; by default
    /// FILE.keys beside the backup, if there is one.
    #[arg(long, value_name = "KEYS")]
    pub keys: Option<PathBuf>,
}

/// The server's keys (the key file, or the `server_keys` setting).
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key (the staged one, if any) sign tokens and seal webhook secrets from the
    /// next start, keeping the current one for what it signed and sealed, and remove unused
    /// keys retired more than `--grace-hours` ago. Restart the server afterwards.
    Rotate {
        /// Where the settings come from.
        #[command(flatten)]
        settings: ServeArgs,
        /// How long a retired key is kept, in hours; at least the access tokens' lifetime. A
        /// key that still seals a stored webhook secret is kept however old.
        #[arg(long, default_value_t = 48)]
        grace_hours: u64,
        /// Only stage the new key: every node given the new keys verifies and opens with it,
        /// while the current key still signs. On several nodes, stage, restart every node,
        /// then rotate again without `--stage`.
        #[arg(long)]
        stage: bool,
    },
}

/// Where the server's settings come from; flags win over the file and the environment.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML settings file (also SWITCHBOARD_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (also SWITCHBOARD_LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// sqlite://… or postgres://… (also SWITCHBOARD_DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Logs as `text` or `json` lines on standard error (also SWITCHBOARD_LOG_FORMAT).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// The data folder: the embedded database, the key file and the operator token (also
    /// SWITCHBOARD_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Any setting, as NAME=VALUE (`--set webhook_timeout_ms=5000`, `--set blocked_countries=KP,IR`);
    /// repeatable, and wins over the file and the environment.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = setting_flag)]
    pub set: Vec<(String, String)>,
}

impl ServeArgs {
    /// The flags as settings, in the order they apply: the named ones, then `--set`.
    pub fn flags(&self) -> Vec<(String, String)> {
        let mut flags = Vec::new();
        let named = [
            ("listen", self.listen.clone()),
            ("database_url", self.database_url.clone()),
            ("log_format", self.log_format.clone()),
            ("data_dir", self.data_dir.as_ref().map(|d| d.display().to_string())),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                flags.push((name.to_owned(), value));
            }
        }
        flags.extend(self.set.iter().cloned());
        flags
    }
}

/// `NAME=VALUE`.
fn setting_flag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// How to reach the admin API.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the server.
    #[arg(long, env = "SWITCHBOARD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Operator token; by default SWITCHBOARD_OPERATOR_TOKEN, else `<data dir>/operator-token`.
    #[arg(long, env = "SWITCHBOARD_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data folder, where a generated token is kept.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-data")]
    pub data_dir: PathBuf,
    /// The operation.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Admin operations.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// SMPP credentials (what ESMEs bind to the SMPP server with) and the binds held.
    #[command(subcommand)]
    Smpp(SmppCmd),
    /// Sender numbers.
    #[command(subcommand)]
    Senders(SendersCmd),
    /// Credits and the ledger.
    #[command(subcommand)]
    Credits(CreditsCmd),
    /// Opt-outs.
    #[command(subcommand, name = "opt-outs")]
    OptOuts(OptOutsCmd),
    /// Messages.
    #[command(subcommand)]
    Messages(MessagesCmd),
    /// Channels: named senders of an account.
    #[command(subcommand)]
    Channels(ChannelsCmd),
    /// Message templates and their versions.
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Webhook endpoints, their deliveries and the notification secret.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Stand in for a carrier: inbound messages and delivery receipts.
    #[command(subcommand)]
    Simulator(SimulatorCmd),
    /// Upstreams (carrier links and relays) and how each stands.
    #[command(subcommand)]
    Upstreams(UpstreamsCmd),
}

/// Account operations.
#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Create an account.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List accounts.
    List {
        /// Most to show.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show an account.
    Get {
        /// Account id.
        account: Uuid,
    },
    /// Set an account's Mudbase request rate limit (requests per second).
    SetRateLimit {
        /// Account id.
        account: Uuid,
        /// Requests per second (at least 1).
        #[arg(long, conflicts_with = "default", required_unless_present = "default")]
        rate: Option<u32>,
        /// Go back to the server's default.
        #[arg(long)]
        default: bool,
    },
    /// Set whether messages the carrier reports undelivered or failed are refunded.
    SetRefundCarrierFailures {
        /// Account id.
        account: Uuid,
        /// Refund them.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        /// Do not refund them.
        #[arg(long)]
        off: bool,
    },
    /// Set the countries an account sends to and whether it accepts numbers that may be fixed
    /// lines (fixed-or-mobile, as every North American number is).
    SetDestinations {
        /// Account id.
        account: Uuid,
        /// The only countries it may send to, comma-separated ISO 3166-1 alpha-2 codes
        /// (`US,CA`).
        #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "all_countries")]
        countries: Option<Vec<Region>>,
        /// Let it send to every country.
        #[arg(long)]
        all_countries: bool,
        /// Whether fixed-or-mobile numbers are accepted.
        #[arg(long, value_parser = on_off)]
        fixed_or_mobile: Option<bool>,
    },
    /// Set the SMS balance below which a charge posts an `account.balance_low` webhook event
    /// (once each time a charge takes the balance from at or above it to below it).
    SetLowBalanceThreshold {
        /// Account id.
        account: Uuid,
        /// SMS credits (at least 1).
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        credits: Option<i64>,
        /// Remove the alert.
        #[arg(long)]
        none: bool,
    },
}

/// Reads `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: expected on or off")),
    }
}

/// API key operations.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key; its secret is printed once.
    Create {
        /// Account id.
        account: Uuid,
        /// Label.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Revoke a key.
    Revoke {
        /// Account id.
        account: Uuid,
        /// Key id.
        key: String,
    },
}

/// SMPP server operations.
#[derive(Debug, Subcommand)]
pub enum SmppCmd {
    /// Create an SMPP credential; its password is printed once.
    Create {
        /// Account id.
        account: Uuid,
        /// The system_id to bind with (1 to 15 characters, unique).
        #[arg(long)]
        system_id: String,
        /// Most binds at once with it (default: the server's).
        #[arg(long)]
        max_binds: Option<u32>,
        /// Window per bind (default: the server's).
        #[arg(long)]
        window: Option<u32>,
        /// Messages a second per bind (default: the server's).
        #[arg(long)]
        max_per_second: Option<u32>,
    },
    /// List an account's SMPP credentials.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Revoke an SMPP credential.
    Revoke {
        /// Account id.
        account: Uuid,
        /// Its system_id.
        system_id: String,
    },
    /// List the binds held on the node that answers.
    Binds,
}

/// Sender operations.
#[derive(Debug, Subcommand)]
pub enum SendersCmd {
    /// Assign an E.164 number to an account.
    Add {
        /// Account id.
        account: Uuid,
        /// E.164 number.
        address: String,
        /// Add it inactive.
        #[arg(long)]
        inactive: bool,
        /// It can send MMS.
        #[arg(long)]
        mms: bool,
        /// It cannot send SMS.
        #[arg(long)]
        no_sms: bool,
    },
    /// List senders.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Change a sender.
    Update {
        /// Account id.
        account: Uuid,
        /// E.164 number.
        address: String,
        /// Active or not.
        #[arg(long)]
        active: Option<bool>,
        /// SMS capable or not.
        #[arg(long)]
        sms: Option<bool>,
        /// MMS capable or not.
        #[arg(long)]
        mms: Option<bool>,
    },
}

/// Credit operations.
#[derive(Debug, Subcommand)]
pub enum CreditsCmd {
    /// Add credits.
    TopUp {
        /// Account id.
        account: Uuid,
        /// SMS credits.
        #[arg(long, default_value_t = 0)]
        sms: i64,
        /// MMS credits.
        #[arg(long, default_value_t = 0)]
        mms: i64,
        /// Reference stored on the ledger entry.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Show balances.
    Balance {
        /// Account id.
        account: Uuid,
    },
    /// List ledger entries, newest first, each with its cause.
    Ledger {
        /// Account id.
        account: Uuid,
        /// Most to show (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only entries of this kind.
        #[arg(long, value_parser = ["topup", "charge", "refund"])]
        kind: Option<String>,
        /// Only the entries of this message (msg_…).
        #[arg(long)]
        message: Option<MessageId>,
        /// Only entries made at or after this time (RFC 3339, or a date).
        #[arg(long, value_parser = time_arg)]
        from: Option<Timestamp>,
        /// Only entries made before this time (RFC 3339, or a date).
        #[arg(long, value_parser = time_arg)]
        to: Option<Timestamp>,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Reads a time: RFC 3339, or a date (midnight UTC).
fn time_arg(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_lenient(s).ok_or_else(|| format!("`{s}`: expected a time such as 2026-03-15T14:30:00Z or a date"))
}

/// Opt-out operations.
#[derive(Debug, Subcommand)]
pub enum OptOutsCmd {
    /// Suppress a recipient for a sender.
    Add {
        /// Account id.
        account: Uuid,
        /// Sender number.
        sender: String,
        /// Recipient number.
        recipient: String,
    },
    /// Lift an opt-out.
    Remove {
        /// Account id.
        account: Uuid,
        /// Sender number.
        sender: String,
        /// Recipient number.
        recipient: String,
    },
    /// List opt-outs.
    List {
        /// Account id.
        account: Uuid,
    },
}

/// Message operations.
#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// List an account's messages, newest first.
    List {
        /// Account id.
        account: Uuid,
        /// Most to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a message with its status history, parts, charge and refund, and webhook
    /// deliveries.
    Get {
        /// Message id (msg_…).
        id: String,
    },
    /// Find messages of every account, newest first.
    Search {
        /// Only the message with this id (msg_…).
        #[arg(long)]
        id: Option<MessageId>,
        /// Only this account's messages.
        #[arg(long)]
        account: Option<Uuid>,
        /// Only messages to this number (E.164, matched whole).
        #[arg(long, value_parser = msisdn_arg)]
        recipient: Option<Msisdn>,
        /// Only messages in this status.
        #[arg(long, value_parser = status_arg)]
        status: Option<MessageStatus>,
        /// Only messages that came this way.
        #[arg(long, value_parser = ["textingline", "mudbase", "bird", "smpp", "reply", "inbound"])]
        dialect: Option<String>,
        /// Only messages created at or after this time (RFC 3339, or a date).
        #[arg(long, value_parser = time_arg)]
        from: Option<Timestamp>,
        /// Only messages created before this time (RFC 3339, or a date).
        #[arg(long, value_parser = time_arg)]
        to: Option<Timestamp>,
        /// Most to show (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Reads an E.164 number.
fn msisdn_arg(s: &str) -> Result<Msisdn, String> {
    Msisdn::parse(s).map_err(|e| format!("`{s}`: {e}"))
}

/// Reads a message status by its name.
fn status_arg(s: &str) -> Result<MessageStatus, String> {
    MessageStatus::parse(s).ok_or_else(|| {
        let known: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{s}`: expected one of {}", known.join(", "))
    })
}

/// Channel operations.
#[derive(Debug, Subcommand)]
pub enum ChannelsCmd {
    /// Create a channel that sends from one of the account's senders.
    Create {
        /// Account id.
        account: Uuid,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The E.164 sender number it sends from.
        #[arg(long)]
        sender: String,
        /// Create it inactive.
        #[arg(long)]
        inactive: bool,
    },
    /// List the account's channels.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Rename, activate or deactivate a channel.
    Update {
        /// Account id.
        account: Uuid,
        /// Channel id.
        channel: Uuid,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// Activate it.
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Deactivate it.
        #[arg(long)]
        inactive: bool,
    },
}

/// Upstream operations.
#[derive(Debug, Subcommand)]
pub enum UpstreamsCmd {
    /// List the upstreams: connected or not, messages in flight against the window, sent and
    /// failed counts.
    List,
}

/// Template operations.
#[derive(Debug, Subcommand)]
pub enum TemplatesCmd {
    /// Create a template, without versions.
    Create {
        /// Account id.
        account: Uuid,
        /// Name, unique in the account.
        #[arg(long)]
        name: String,
    },
    /// List the account's templates with their versions.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Show a template with its versions, oldest first.
    Show {
        /// Account id.
        account: Uuid,
        /// Template id.
        template: Uuid,
    },
    /// Add a version: one text per locale.
    AddVersion {
        /// Account id.
        account: Uuid,
        /// Template id.
        template: Uuid,
        /// A locale's text, as LOCALE=TEXT (`en="Hi {{name}}"`); repeat for more locales.
        #[arg(long = "text", value_name = "LOCALE=TEXT", required = true, value_parser = locale_text)]
        texts: Vec<(String, String)>,
        /// Add it inactive.
        #[arg(long)]
        inactive: bool,
    },
    /// Activate a version.
    Activate {
        /// Account id.
        account: Uuid,
        /// Template id.
        template: Uuid,
        /// Version id.
        version: Uuid,
    },
    /// Deactivate a version.
    Deactivate {
        /// Account id.
        account: Uuid,
        /// Template id.
        template: Uuid,
        /// Version id.
        version: Uuid,
    },
}

/// Webhook operations.
#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Create a webhook endpoint; its signing secret is printed once.
    Create {
        /// Account id.
        account: Uuid,
        /// Where events are posted: an absolute http(s) URL.
        #[arg(long)]
        url: String,
        /// An event type to send, such as `message.delivered`; repeat for more; none for every type.
        #[arg(long = "event", value_name = "EVENT")]
        events: Vec<String>,
        /// The signing secret (`whsec_…`); generated when absent.
        #[arg(long)]
        secret: Option<String>,
        /// Create it inactive.
        #[arg(long)]
        inactive: bool,
    },
    /// List the account's webhook endpoints.
    List {
        /// Account id.
        account: Uuid,
    },
    /// Show a webhook endpoint.
    Show {
        /// Account id.
        account: Uuid,
        /// Webhook id.
        webhook: Uuid,
    },
    /// Change a webhook endpoint; a new signing secret is printed once.
    Update {
        /// Account id.
        account: Uuid,
        /// Webhook id.
        webhook: Uuid,
        /// New URL.
        #[arg(long)]
        url: Option<String>,
        /// The event types to send from now on; repeat for more.
        #[arg(long = "event", value_name = "EVENT", conflicts_with = "all_events")]
        events: Vec<String>,
        /// Send every event type from now on.
        #[arg(long)]
        all_events: bool,
        /// Activate it.
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Deactivate it.
        #[arg(long)]
        inactive: bool,
        /// Generate a new signing secret.
        #[arg(long, conflicts_with = "secret")]
        rotate_secret: bool,
        /// Use this signing secret (`whsec_…`) from now on.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Delete a webhook endpoint; its pending deliveries are canceled.
    Delete {
        /// Account id.
        account: Uuid,
        /// Webhook id.
        webhook: Uuid,
    },
    /// List the account's webhook deliveries with their attempts, newest event first.
    Deliveries {
        /// Account id.
        account: Uuid,
        /// Only deliveries to this webhook endpoint.
        #[arg(long)]
        webhook: Option<Uuid>,
        /// Only deliveries about this message (msg_…).
        #[arg(long)]
        message: Option<MessageId>,
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "delivered", "failed", "canceled"])]
        state: Option<String>,
        /// Most to show (1 to 100).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Resend an event's failed deliveries, with a fresh retry budget.
    Retry {
        /// Event id (evt_…).
        event: EventId,
        /// Only the delivery to this webhook endpoint.
        #[arg(long)]
        webhook: Option<Uuid>,
    },
    /// Show the secret that signs deliveries to the account's messages' own notification URLs.
    NotificationSecret {
        /// Account id.
        account: Uuid,
    },
}

/// Simulator operations: what a carrier would send.
#[derive(Debug, Subcommand)]
pub enum SimulatorCmd {
    /// Receive a message from a handset on one of the gateway's numbers.
    Inbound {
        /// The handset, E.164.
        #[arg(long)]
        from: String,
        /// The number it was sent to: a sender assigned to an account.
        #[arg(long)]
        to: String,
        /// Text.
        #[arg(long)]
        body: Option<String>,
        /// A media URL (an MMS); repeat for more.
        #[arg(long = "media-url", value_name = "URL")]
        media_urls: Vec<String>,
        /// The carrier's id for it.
        #[arg(long)]
        provider_ref: Option<String>,
    },
    /// Deliver one delivery receipt for a message part.
    Receipt {
        /// The upstream's id for the part (a message's `parts` list it).
        #[arg(long = "ref", value_name = "PROVIDER_REF")]
        provider_ref: String,
        /// What became of the part.
        #[arg(long, value_parser = ["delivered", "undelivered", "failed"])]
        status: String,
        /// Why it failed.
        #[arg(long, value_parser = error_type_parser())]
        error_type: Option<ErrorType>,
        /// The carrier's description.
        #[arg(long)]
        description: Option<String>,
    },
}

/// Parses an error type by its name (`invalid_destination`), listing the names in `--help`.
fn error_type_parser() -> impl TypedValueParser<Value = ErrorType> {
    PossibleValuesParser::new(ErrorType::ALL.iter().map(|e| e.as_str()))
        .try_map(|s| ErrorType::parse(&s).ok_or_else(|| format!("unknown error type `{s}`")))
}

/// What `webhooks update` sets the event types to: every type, the given ones, or unchanged.
fn events_update(events: Vec<String>, all_events: bool) -> Option<Vec<String>> {
    if all_events { Some(Vec::new()) } else { (!events.is_empty()).then_some(events) }
}

/// Parses `LOCALE=TEXT`; the text may itself contain `=`.
fn locale_text(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((locale, text)) if !locale.is_empty() => Ok((locale.to_owned(), text.to_owned())),
        _ => Err(format!("expected LOCALE=TEXT, got `{s}`")),
    }
}

/// The texts of `--text` arguments by locale; a locale given twice is an error.
fn texts_by_locale(texts: Vec<(String, String)>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut by_locale = BTreeMap::new();
    for (locale, text) in texts {
        if by_locale.insert(locale.clone(), text).is_some() {
            anyhow::bail!("--text: locale `{locale}` is given more than once");
        }
    }
    Ok(by_locale)
}

impl AdminArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let path = self.data_dir.join("operator-token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!("no --token, no SWITCHBOARD_OPERATOR_TOKEN, and {} cannot be read", path.display())
                    })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(AdminClient::new(&self.server, &token)?)
    }
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs an admin command and prints its JSON result.
pub async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    let c = args.client()?;
    match args.command {
        AdminCommand::Accounts(AccountsCmd::Create { name }) => print(&c.create_account(&name).await?),
        AdminCommand::Accounts(AccountsCmd::List { limit }) => print(&c.accounts(limit, None).await?),
        AdminCommand::Accounts(AccountsCmd::Get { account }) => print(&c.account(account).await?),
        AdminCommand::Accounts(AccountsCmd::SetRateLimit { account, rate, .. }) => {
            print(&c.set_rate_limit(account, rate).await?)
        }
        AdminCommand::Accounts(AccountsCmd::SetRefundCarrierFailures { account, on, .. }) => {
            print(&c.set_refund_carrier_failures(account, on).await?)
        }
        AdminCommand::Accounts(AccountsCmd::SetDestinations { account, countries, all_countries, fixed_or_mobile }) => {
            let countries = if all_countries { Some(None) } else { countries.map(Some) };
            if countries.is_none() && fixed_or_mobile.is_none() {
                anyhow::bail!("nothing to change: give --countries, --all-countries or --fixed-or-mobile");
            }
            print(&c.set_destinations(account, countries, fixed_or_mobile).await?)
        }
        AdminCommand::Accounts(AccountsCmd::SetLowBalanceThreshold { account, credits, .. }) => {
            print(&c.set_low_balance_threshold(account, credits).await?)
        }
        AdminCommand::Keys(KeysCmd::Create { account, name }) => print(&c.create_key(account, name.as_deref()).await?),
        AdminCommand::Keys(KeysCmd::List { account }) => print(&c.keys(account).await?),
        AdminCommand::Keys(KeysCmd::Revoke { account, key }) => print(&c.revoke_key(account, &key).await?),
        AdminCommand::Smpp(SmppCmd::Create { account, system_id, max_binds, window, max_per_second }) => {
            let body = switchboard_domain::wire::CreateSmppCredential { system_id, max_binds, window, max_per_second };
            print(&c.create_smpp_credential(account, &body).await?)
        }
        AdminCommand::Smpp(SmppCmd::List { account }) => print(&c.smpp_credentials(account).await?),
        AdminCommand::Smpp(SmppCmd::Revoke { account, system_id }) => {
            print(&c.revoke_smpp_credential(account, &system_id).await?)
        }
        AdminCommand::Smpp(SmppCmd::Binds) => print(&c.smpp_binds().await?),
        AdminCommand::Senders(SendersCmd::Add { account, address, inactive, mms, no_sms }) => {
            print(&c.add_sender(account, &CreateSender { address, active: !inactive, sms: !no_sms, mms }).await?)
        }
        AdminCommand::Senders(SendersCmd::List { account }) => print(&c.senders(account).await?),
        AdminCommand::Senders(SendersCmd::Update { account, address, active, sms, mms }) => {
            print(&c.update_sender(account, &address, &UpdateSender { active, sms, mms }).await?)
        }
        AdminCommand::Credits(CreditsCmd::TopUp { account, sms, mms, reference }) => {
            print(&c.top_up(account, &TopUp { sms, mms, reference }).await?)
        }
        AdminCommand::Credits(CreditsCmd::Balance { account }) => print(&c.balance(account).await?),
        AdminCommand::Credits(CreditsCmd::Ledger { account, limit, kind, message, from, to, cursor }) => {
            let query = LedgerQuery { limit: Some(limit), cursor, kind, message, from, to };
            print(&c.search_ledger(account, &query).await?)
        }
        AdminCommand::OptOuts(OptOutsCmd::Add { account, sender, recipient }) => {
            print(&c.add_opt_out(account, &sender, &recipient).await?)
        }
        AdminCommand::OptOuts(OptOutsCmd::Remove { account, sender, recipient }) => {
            c.remove_opt_out(account, &sender, &recipient).await?;
            print(&serde_json::json!({"removed": true}))
        }
        AdminCommand::OptOuts(OptOutsCmd::List { account }) => print(&c.opt_outs(account).await?),
        AdminCommand::Messages(MessagesCmd::List { account, limit }) => print(&c.messages(account, limit, None).await?),
        AdminCommand::Messages(MessagesCmd::Get { id }) => {
            let id = id.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            print(&c.message(id).await?)
        }
        AdminCommand::Messages(MessagesCmd::Search {
            id,
            account,
            recipient,
            status,
            dialect,
            from,
            to,
            limit,
            cursor,
        }) => {
            let dialect = dialect.as_deref().and_then(Dialect::parse);
            let query = MessageQuery { limit: Some(limit), cursor, id, account, recipient, status, dialect, from, to };
            print(&c.search_messages(&query).await?)
        }
        AdminCommand::Channels(ChannelsCmd::Create { account, name, sender, inactive }) => {
            print(&c.create_channel(account, &CreateChannel { name, sender, active: !inactive }).await?)
        }
        AdminCommand::Channels(ChannelsCmd::List { account }) => print(&c.channels(account).await?),
        AdminCommand::Channels(ChannelsCmd::Update { account, channel, name, active, inactive }) => {
            let active = (active || inactive).then_some(active);
            print(&c.update_channel(account, channel, &UpdateChannel { name, active }).await?)
        }
        AdminCommand::Templates(TemplatesCmd::Create { account, name }) => {
            print(&c.create_template(account, &name).await?)
        }
        AdminCommand::Templates(TemplatesCmd::List { account }) => print(&c.templates(account).await?),
        AdminCommand::Templates(TemplatesCmd::Show { account, template }) => {
            print(&c.template(account, template).await?)
        }
        AdminCommand::Templates(TemplatesCmd::AddVersion { account, template, texts, inactive }) => {
            let version = CreateTemplateVersion { texts: texts_by_locale(texts)?, active: !inactive };
            print(&c.add_template_version(account, template, &version).await?)
        }
        AdminCommand::Templates(TemplatesCmd::Activate { account, template, version }) => {
            print(&c.set_template_version_active(account, template, version, true).await?)
        }
        AdminCommand::Templates(TemplatesCmd::Deactivate { account, template, version }) => {
            print(&c.set_template_version_active(account, template, version, false).await?)
        }
        AdminCommand::Webhooks(WebhooksCmd::Create { account, url, events, secret, inactive }) => {
            let webhook = CreateWebhook {
                url,
                secret,
                events: (!events.is_empty()).then_some(events),
                active: inactive.then_some(false),
            };
            print(&c.create_webhook(account, &webhook).await?)
        }
        AdminCommand::Webhooks(WebhooksCmd::List { account }) => print(&c.webhooks(account).await?),
        AdminCommand::Webhooks(WebhooksCmd::Show { account, webhook }) => print(&c.webhook(account, webhook).await?),
        AdminCommand::Webhooks(WebhooksCmd::Update {
            account,
            webhook,
            url,
            events,
            all_events,
            active,
            inactive,
            rotate_secret,
            secret,
        }) => {
            let change = UpdateWebhook {
                url,
                events: events_update(events, all_events),
                active: (active || inactive).then_some(active),
                secret,
                rotate_secret,
            };
            print(&c.update_webhook(account, webhook, &change).await?)
        }
        AdminCommand::Webhooks(WebhooksCmd::Delete { account, webhook }) => {
            c.delete_webhook(account, webhook).await?;
            print(&serde_json::json!({"deleted": true}))
        }
        AdminCommand::Webhooks(WebhooksCmd::Deliveries { account, webhook, message, state, limit, cursor }) => {
            let query = DeliveryQuery { limit: Some(limit), cursor, webhook, message, state };
            print(&c.webhook_deliveries(account, &query).await?)
        }
        AdminCommand::Webhooks(WebhooksCmd::Retry { event, webhook }) => {
            print(&c.retry_delivery(event, webhook).await?)
        }
        AdminCommand::Webhooks(WebhooksCmd::NotificationSecret { account }) => {
            print(&c.notification_secret(account).await?)
        }
        AdminCommand::Upstreams(UpstreamsCmd::List) => print(&c.upstreams().await?),
        AdminCommand::Simulator(SimulatorCmd::Inbound { from, to, body, media_urls, provider_ref }) => {
            print(&c.inject_inbound(&InjectInbound { from, to, body, media_urls, provider_ref }).await?)
        }
        AdminCommand::Simulator(SimulatorCmd::Receipt { provider_ref, status, error_type, description }) => {
            let receipts =
                InjectReceipts { receipts: vec![InjectReceipt { provider_ref, status, error_type, description }] };
            print(&c.inject_receipts(&receipts).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        let argv = ["switchboard", "admin", "--token", "t"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Admin(admin) => Ok(admin.command),
            other => panic!("not an admin command: {other:?}"),
        }
    }

    const ACCOUNT: &str = "0190f5a4-7d3c-7b4e-9a1f-2b3c4d5e6f70";
    const OTHER: &str = "0190f5a4-7d3c-7b4e-9a1f-2b3c4d5e6f71";

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn add_version_takes_repeated_locale_texts() {
        let cmd = parse(&["templates", "add-version", ACCOUNT, OTHER, "--text", "en=Hi {{name}}", "--text", "nl=a=b"])
            .unwrap();
        let AdminCommand::Templates(TemplatesCmd::AddVersion { texts, inactive, .. }) = cmd else { panic!("{cmd:?}") };
        assert_eq!(texts, [("en".into(), "Hi {{name}}".into()), ("nl".into(), "a=b".into())]);
        assert!(!inactive);
        assert!(parse(&["templates", "add-version", ACCOUNT, OTHER]).is_err(), "at least one --text");
        assert!(parse(&["templates", "add-version", ACCOUNT, OTHER, "--text", "no-equals"]).is_err());
        assert!(parse(&["templates", "add-version", ACCOUNT, OTHER, "--text", "=text"]).is_err());
    }

    #[test]
    fn a_locale_given_twice_is_refused() {
        let texts = vec![("en".to_owned(), "a".to_owned()), ("en".to_owned(), "b".to_owned())];
        assert!(texts_by_locale(texts).is_err());
    }

    #[test]
    fn channel_update_takes_active_or_inactive_not_both() {
        let cmd = parse(&["channels", "update", ACCOUNT, OTHER, "--inactive"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Channels(ChannelsCmd::Update { active: false, inactive: true, .. })));
        let cmd = parse(&["channels", "update", ACCOUNT, OTHER, "--name", "Support"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Channels(ChannelsCmd::Update { active: false, inactive: false, .. })));
        assert!(parse(&["channels", "update", ACCOUNT, OTHER, "--active", "--inactive"]).is_err());
        let cmd = parse(&["channels", "create", ACCOUNT, "--name", "Support", "--sender", "+18005559876"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Channels(ChannelsCmd::Create { inactive: false, .. })));
    }

    #[test]
    fn set_destinations_reads_countries_and_on_off() {
        let cmd = parse(&["accounts", "set-destinations", ACCOUNT, "--countries", "us,CA", "--fixed-or-mobile", "off"])
            .unwrap();
        let AdminCommand::Accounts(AccountsCmd::SetDestinations { countries, all_countries, fixed_or_mobile, .. }) =
            cmd
        else {
            panic!("{cmd:?}")
        };
        let codes: Vec<String> = countries.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(
            (codes, all_countries, fixed_or_mobile),
            (vec!["US".to_owned(), "CA".to_owned()], false, Some(false))
        );
        assert!(parse(&["accounts", "set-destinations", ACCOUNT, "--all-countries", "--countries", "US"]).is_err());
        assert!(parse(&["accounts", "set-destinations", ACCOUNT, "--countries", "USA"]).is_err());
        assert!(parse(&["accounts", "set-destinations", ACCOUNT, "--fixed-or-mobile", "maybe"]).is_err());
    }

    #[test]
    fn set_low_balance_threshold_takes_credits_or_none() {
        let cmd = parse(&["accounts", "set-low-balance-threshold", ACCOUNT, "--credits", "500"]).unwrap();
        assert!(matches!(
            cmd,
            AdminCommand::Accounts(AccountsCmd::SetLowBalanceThreshold { credits: Some(500), none: false, .. })
        ));
        let cmd = parse(&["accounts", "set-low-balance-threshold", ACCOUNT, "--none"]).unwrap();
        assert!(matches!(
            cmd,
            AdminCommand::Accounts(AccountsCmd::SetLowBalanceThreshold { credits: None, none: true, .. })
        ));
        assert!(parse(&["accounts", "set-low-balance-threshold", ACCOUNT]).is_err(), "one is required");
        assert!(parse(&["accounts", "set-low-balance-threshold", ACCOUNT, "--credits", "5", "--none"]).is_err());
    }

    #[test]
    fn searches_take_their_filters() {
        let cmd = parse(&[
            "messages",
            "search",
            "--recipient",
            "+18005551234",
            "--status",
            "failed",
            "--dialect",
            "smpp",
            "--from",
            "2026-03-15",
        ])
        .unwrap();
        let AdminCommand::Messages(MessagesCmd::Search { recipient, status, dialect, from, .. }) = cmd else {
            panic!("not a search: {cmd:?}")
        };
        assert_eq!(recipient.map(|r| r.as_str().to_owned()).as_deref(), Some("+18005551234"));
        assert_eq!((status, dialect.as_deref()), (Some(MessageStatus::Failed), Some("smpp")));
        assert_eq!(from, Timestamp::parse_rfc3339("2026-03-15T00:00:00Z"));
        for bad in [["--recipient", "123"], ["--status", "lost"], ["--dialect", "fax"], ["--from", "soon"]] {
            assert!(parse(&["messages", "search", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
        let cmd = parse(&["credits", "ledger", ACCOUNT, "--kind", "refund", "--to", "2026-03-16T00:00:00Z"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Credits(CreditsCmd::Ledger { kind: Some(_), to: Some(_), .. })));
        assert!(parse(&["credits", "ledger", ACCOUNT, "--kind", "gift"]).is_err());
        let cmd = parse(&["webhooks", "retry", "evt_DsAdb4EBYBh3z25sBA1qpX"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Webhooks(WebhooksCmd::Retry { webhook: None, .. })));
        assert!(parse(&["webhooks", "retry", "nope"]).is_err());
    }

    #[test]
    fn set_refund_carrier_failures_takes_exactly_one_of_on_and_off() {
        let cmd = parse(&["accounts", "set-refund-carrier-failures", ACCOUNT, "--on"]).unwrap();
        assert!(matches!(
            cmd,
            AdminCommand::Accounts(AccountsCmd::SetRefundCarrierFailures { on: true, off: false, .. })
        ));
        let cmd = parse(&["accounts", "set-refund-carrier-failures", ACCOUNT, "--off"]).unwrap();
        assert!(matches!(
            cmd,
            AdminCommand::Accounts(AccountsCmd::SetRefundCarrierFailures { on: false, off: true, .. })
        ));
        assert!(parse(&["accounts", "set-refund-carrier-failures", ACCOUNT]).is_err(), "one is required");
        assert!(parse(&["accounts", "set-refund-carrier-failures", ACCOUNT, "--on", "--off"]).is_err());
    }

    #[test]
    fn webhook_create_takes_repeated_events() {
        let cmd = parse(&[
            "webhooks",
            "create",
            ACCOUNT,
            "--url",
            "https://example.com/hook",
            "--event",
            "message.delivered",
            "--event",
            "message.failed",
        ])
        .unwrap();
        let AdminCommand::Webhooks(WebhooksCmd::Create { url, events, secret, inactive, .. }) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(url, "https://example.com/hook");
        assert_eq!(events, ["message.delivered", "message.failed"]);
        assert_eq!(secret, None);
        assert!(!inactive);
        let cmd = parse(&["webhooks", "create", ACCOUNT, "--url", "https://example.com/hook", "--inactive"]).unwrap();
        assert!(
            matches!(cmd, AdminCommand::Webhooks(WebhooksCmd::Create { ref events, inactive: true, .. }) if events.is_empty())
        );
        assert!(parse(&["webhooks", "create", ACCOUNT]).is_err(), "--url is required");
    }

    #[test]
    fn webhook_update_refuses_contradictions() {
        let update = ["webhooks", "update", ACCOUNT, OTHER];
        let with = |extra: &[&'static str]| parse(&[&update[..], extra].concat());
        assert!(with(&["--active", "--inactive"]).is_err());
        assert!(with(&["--rotate-secret", "--secret", "whsec_abc"]).is_err());
        assert!(with(&["--all-events", "--event", "message.sent"]).is_err());
        let cmd = with(&["--inactive", "--rotate-secret"]).unwrap();
        assert!(matches!(
            cmd,
            AdminCommand::Webhooks(WebhooksCmd::Update { active: false, inactive: true, rotate_secret: true, .. })
        ));
        let cmd =
            with(&["--event", "message.sent", "--event", "message.inbound", "--url", "https://example.com/2"]).unwrap();
        let AdminCommand::Webhooks(WebhooksCmd::Update { url, events, all_events, secret, .. }) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(url.as_deref(), Some("https://example.com/2"));
        assert_eq!(secret, None);
        assert_eq!(events_update(events, all_events), Some(vec!["message.sent".into(), "message.inbound".into()]));
    }

    #[test]
    fn webhook_update_events_are_kept_replaced_or_cleared() {
        assert_eq!(events_update(Vec::new(), false), None);
        assert_eq!(events_update(Vec::new(), true), Some(Vec::new()));
        assert_eq!(events_update(vec!["message.sent".into()], false), Some(vec!["message.sent".into()]));
    }

    #[test]
    fn webhook_deliveries_takes_filters() {
        let message = MessageId::new().to_string();
        let cmd =
            parse(&["webhooks", "deliveries", ACCOUNT, "--webhook", OTHER, "--message", &message, "--state", "failed"])
                .unwrap();
        let AdminCommand::Webhooks(WebhooksCmd::Deliveries { webhook, message: m, state, limit, cursor, .. }) = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(webhook, Some(OTHER.parse().unwrap()));
        assert_eq!(m.map(|m| m.to_string()), Some(message));
        assert_eq!(state.as_deref(), Some("failed"));
        assert_eq!(limit, 50);
        assert_eq!(cursor, None);
        assert!(parse(&["webhooks", "deliveries", ACCOUNT, "--state", "lost"]).is_err());
        assert!(parse(&["webhooks", "deliveries", ACCOUNT, "--limit", "0"]).is_err());
        assert!(parse(&["webhooks", "deliveries", ACCOUNT, "--limit", "101"]).is_err());
        assert!(parse(&["webhooks", "deliveries", ACCOUNT, "--message", "not-an-id"]).is_err());
        assert!(parse(&["webhooks", "deliveries", ACCOUNT, "--webhook", "not-a-uuid"]).is_err());
    }

    #[test]
    fn simulator_inbound_takes_repeated_media_urls() {
        let cmd = parse(&[
            "simulator",
            "inbound",
            "--from",
            "+15551230000",
            "--to",
            "+18005559876",
            "--media-url",
            "https://example.com/a.jpg",
            "--media-url",
            "https://example.com/b.jpg",
        ])
        .unwrap();
        let AdminCommand::Simulator(SimulatorCmd::Inbound { from, to, body, media_urls, provider_ref }) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!((from.as_str(), to.as_str()), ("+15551230000", "+18005559876"));
        assert_eq!(body, None);
        assert_eq!(media_urls, ["https://example.com/a.jpg", "https://example.com/b.jpg"]);
        assert_eq!(provider_ref, None);
        assert!(parse(&["simulator", "inbound", "--from", "+15551230000"]).is_err(), "--to is required");
    }

    #[test]
    fn simulator_receipt_takes_a_known_status_and_error_type() {
        let cmd = parse(&[
            "simulator",
            "receipt",
            "--ref",
            "sim-1",
            "--status",
            "failed",
            "--error-type",
            "invalid_destination",
            "--description",
            "no such number",
        ])
        .unwrap();
        let AdminCommand::Simulator(SimulatorCmd::Receipt { provider_ref, status, error_type, description }) = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(provider_ref, "sim-1");
        assert_eq!(status, "failed");
        assert_eq!(error_type, Some(ErrorType::InvalidDestination));
        assert_eq!(description.as_deref(), Some("no such number"));
        let cmd = parse(&["simulator", "receipt", "--ref", "sim-1", "--status", "delivered"]).unwrap();
        assert!(matches!(cmd, AdminCommand::Simulator(SimulatorCmd::Receipt { error_type: None, .. })));
        assert!(parse(&["simulator", "receipt", "--ref", "sim-1", "--status", "sent"]).is_err());
        assert!(parse(&["simulator", "receipt", "--ref", "sim-1", "--status", "failed", "--error-type", "x"]).is_err());
        assert!(parse(&["simulator", "receipt", "--status", "delivered"]).is_err(), "--ref is required");
    }
}
