//! `switchboard send`: one message, or every row of a CSV file, through the server's API with an
//! account's API key (never the operator token).
//!
//! A file is read twice, streaming, so its size does not matter: first every row is checked by
//! the server's own stateless rules, counted in segments and priced, and the total compared with
//! the balance; then the rows are sent. Each row's idempotency key is the file's SHA-256 and the
//! row's number, so running the same command again after an interruption sends only the rows
//! the server has not accepted, and a changed file is a new job.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};
use switchboard_client::{BirdAuth, ClientError, MudbaseAuth, RetryPolicy, Switchboard, TextingLineClient};
use switchboard_domain::wire::TlSendRequest;
use switchboard_domain::{Encoding, MessageKind};
use switchboard_ledger::{Credits, Tariff};
use switchboard_validation::{Policy, SendFields};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

/// The variable holding an API key, as `key_id:secret`.
pub const API_KEY_VAR: &str = "SWITCHBOARD_API_KEY";
/// The variable naming a profile of the profiles file.
pub const PROFILE_VAR: &str = "SWITCHBOARD_PROFILE";

/// The dialect a single message is sent through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// `POST /api/v1/messaging/message`, HTTP Basic.
    Textingline,
    /// `POST /api/messaging/projects/{project}/messaging/sms`, `X-API-Key`.
    Mudbase,
    /// `POST /workspaces/{workspace}/channels/{channel}/messages`, `Authorization: AccessKey`.
    Bird,
}

/// `switchboard send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Base URL of the server [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_SERVER", alias = "server")]
    pub url: Option<String>,
    /// The API key, `key_id:secret` [default: SWITCHBOARD_API_KEY, else the profile's].
    #[arg(long, env = API_KEY_VAR, hide_env_values = true)]
    pub key: Option<String>,
    /// The profile of `~/.config/switchboard/profiles.toml` to take `url` and `api_key` from
    /// (a table per profile; `default` unless named).
    #[arg(long, env = PROFILE_VAR)]
    pub profile: Option<String>,
    /// The dialect a single message goes through.
    #[arg(long, value_enum, default_value = "textingline")]
    pub dialect: Dialect,
    /// Mudbase's project, Bird's workspace: the account's id.
    #[arg(long, visible_aliases = ["project", "workspace"])]
    pub account: Option<Uuid>,
    /// Bird: the channel to send on (it sends from the channel's sender, so `--from` is not
    /// used).
    #[arg(long)]
    pub channel: Option<Uuid>,
    /// The recipient, E.164.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    pub to: Option<String>,
    /// The sender: a number assigned to the account. With `--csv`, for rows without a `from`.
    #[arg(long)]
    pub from: Option<String>,
    /// The text.
    #[arg(long, conflicts_with = "csv")]
    pub body: Option<String>,
    /// A media URL: the message is an MMS (TextingLine).
    #[arg(long, conflicts_with = "csv")]
    pub media_url: Option<String>,
    /// An idempotency key, so the command can be repeated safely (TextingLine).
    #[arg(long, conflicts_with = "csv")]
    pub idempotency_key: Option<String>,
    /// Send every row of this CSV file (columns `to`, and `body` or `template`, optionally
    /// `from` and `media_url`; any others fill `{{column}}` placeholders), through TextingLine.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// With `--csv`: the text of every row, its `{{column}}` placeholders filled from the row.
    #[arg(long, requires = "csv")]
    pub template: Option<String>,
    /// With `--csv`: check, count and price the file, compare with the balance, send nothing.
    #[arg(long, requires = "csv")]
    pub dry_run: bool,
    /// With `--csv`: send the valid rows of a file with invalid ones (which are skipped).
    #[arg(long, requires = "csv")]
    pub skip_invalid: bool,
    /// With `--csv`: sends in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// With `--csv`: most messages sent per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// With `--csv`: the results file (row, line, message id, status, error), appended to as it
    /// goes [default: FILE.<hash>.results.csv beside the file].
    #[arg(long, requires = "csv")]
    pub results: Option<PathBuf>,
}

/// Runs `switchboard send`.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let (url, key) = credentials(&args)?;
    let (key_id, secret) = key.split_once(':').context("the API key must be key_id:secret")?;
    // Sends that fail on the way are tried again with the same idempotency key.
    let server = Switchboard::builder(url.as_str()).retry(RetryPolicy::default().max_attempts(6)).build()?;
    let client = server.textingline(key_id, secret);
    if let Some(path) = &args.csv {
        return send_csv(&client, path, &args).await;
    }
    let to = args.to.as_deref().unwrap_or_default();
    let from = || args.from.as_deref().context("--from is required");
    if args.dialect != Dialect::Textingline && (args.media_url.is_some() || args.idempotency_key.is_some()) {
        bail!("--media-url and --idempotency-key are TextingLine's");
    }
    let printed = match args.dialect {
        Dialect::Textingline => {
            let from = from()?;
            let request = TlSendRequest {
                to: to.to_owned(),
                from: from.to_owned(),
                body: args.body.clone(),
                media_url: args.media_url.clone(),
                idempotency_key: args.idempotency_key.clone(),
            };
            let sent = client.send(&request).await.map_err(dialect_error)?;
            let failed = sent.message.status == switchboard_domain::wire::TlStatus::Failed;
            let text = serde_json::to_string_pretty(&sent.message)?;
            if failed {
                println!("{text}");
                bail!("the message failed: {}", sent.message.error_message.as_deref().unwrap_or("no reason given"));
            }
            text
        }
        Dialect::Mudbase => {
            let project = args.account.context("--project (the account's id) is required with --dialect mudbase")?;
            let mudbase = server.mudbase(project, MudbaseAuth::ApiKey(key.clone()));
            let body = args.body.as_deref().context("--body is required with --dialect mudbase")?;
            let sent = mudbase.send_sms(&[to], body, Some(from()?)).await.map_err(dialect_error)?;
            serde_json::to_string_pretty(&sent)?
        }
        Dialect::Bird => {
            let workspace = args.account.context("--workspace (the account's id) is required with --dialect bird")?;
            let channel = args.channel.context("--channel is required with --dialect bird")?;
            if args.from.is_some() {
                bail!("--from is not used with --dialect bird: the channel's sender sends");
            }
            let bird = server.bird(workspace, BirdAuth::AccessKey(key.clone()));
            let body = args.body.as_deref().context("--body is required with --dialect bird")?;
            let sent = bird.send_text(channel, to, body).await.map_err(dialect_error)?;
            serde_json::to_string_pretty(&sent)?
        }
    };
    println!("{printed}");
    Ok(())
}

/// The dialect's own error, as the server gave it.
fn dialect_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Api(api) => anyhow::anyhow!("the server refused it: {api}\n{}", api.body),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The server's URL and the API key: flags and variables first, then the profile.
fn credentials(args: &SendArgs) -> anyhow::Result<(String, String)> {
    let profile = match (&args.url, &args.key, &args.profile) {
        (Some(_), Some(_), None) => None,
        _ => read_profile(args.profile.as_deref())?,
    };
    let url = args
        .url
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.url.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let key = args.key.clone().or_else(|| profile.and_then(|p| p.api_key)).with_context(|| {
        format!("no API key: give --key key_id:secret, set {API_KEY_VAR}, or add api_key to a profile")
    })?;
    Ok((url, key))
}

/// One profile of the profiles file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    api_key: Option<String>,
}

/// The profiles file: `$XDG_CONFIG_HOME/switchboard/profiles.toml`, else
/// `~/.config/switchboard/profiles.toml`.
fn profiles_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("switchboard").join("profiles.toml"))
}

/// The named profile (`default` if none is named); `None` when there is no file and no profile
/// was asked for.
fn read_profile(name: Option<&str>) -> anyhow::Result<Option<Profile>> {
    let Some(path) = profiles_path() else { return Ok(None) };
    if !path.exists() {
        if let Some(name) = name {
            bail!("profile {name}: {} does not exist", path.display());
        }
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(&path)?.mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} holds API keys and may be read by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut profiles: BTreeMap<String, Profile> =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let wanted = name.unwrap_or("default");
    match profiles.remove(wanted) {
        Some(p) => Ok(Some(p)),
        None if name.is_none() => Ok(None),
        None => bail!("{} has no profile {wanted}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

/// One row, ready to send.
#[derive(Debug)]
struct Row {
    /// Its number among the data rows, from 1.
    number: u64,
    /// Its line in the file (a quoted field may span lines).
    line: u64,
    request: TlSendRequest,
}

/// What a row is, read from the file.
enum Checked {
    Valid { row: Row, kind: MessageKind, encoding: Encoding, segments: u32 },
    Invalid { line: u64, reason: String },
}

/// Which columns hold what.
struct Columns {
    to: usize,
    from: Option<usize>,
    body: Option<usize>,
    template: Option<usize>,
    media_url: Option<usize>,
    names: Vec<String>,
}

impl Columns {
    fn new(headers: &csv::StringRecord, template: Option<&str>) -> anyhow::Result<Self> {
        let names: Vec<String> = headers.iter().map(|h| h.trim().to_owned()).collect();
        let find = |name: &str| names.iter().position(|h| h.eq_ignore_ascii_case(name));
        let columns = Columns {
            to: find("to").context("the file has no `to` column")?,
            from: find("from"),
            body: find("body"),
            template: find("template"),
            media_url: find("media_url"),
            names: names.clone(),
        };
        if columns.body.is_none() && columns.template.is_none() && template.is_none() && columns.media_url.is_none() {
            bail!("the file has no `body`, `template` or `media_url` column, and no --template was given");
        }
        Ok(columns)
    }
}

/// Fills `{{column}}` placeholders from the row.
fn fill(template: &str, columns: &Columns, record: &csv::StringRecord) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "the template has a `{{` without `}}`".to_owned())?;
        let name = after[..end].trim();
        let index = columns
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("the template names {{{{{name}}}}}, which is no column"))?;
        out.push_str(record.get(index).unwrap_or_default());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads one record into a row and checks it as the server would.
fn read_row(
    record: &csv::StringRecord,
    number: u64,
    columns: &Columns,
    args: &SendArgs,
    job: &str,
    policy: &Policy,
) -> Checked {
    let line = record.position().map_or(0, |p| p.line());
    let field = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim).filter(|v| !v.is_empty());
    let invalid = |reason: String| Checked::Invalid { line, reason };
    let to = record.get(columns.to).unwrap_or_default().trim();
    let Some(from) = field(columns.from).or(args.from.as_deref()) else {
        return invalid("no `from` in the row and no --from".into());
    };
    let body = match (field(columns.body), field(columns.template), args.template.as_deref()) {
        (Some(body), ..) => Some(body.to_owned()),
        (None, Some(template), _) | (None, None, Some(template)) => match fill(template, columns, record) {
            Ok(text) => Some(text),
            Err(reason) => return invalid(reason),
        },
        (None, None, None) => None,
    };
    let media_url = field(columns.media_url).map(str::to_owned);
    let key = format!("csv-{job}-{number}");
    let fields = SendFields {
        to,
        from,
        alphanumeric_from: false,
        body: body.as_deref(),
        media_url: media_url.as_deref(),
        idempotency_key: Some(&key),
    };
    match policy.check_send(fields) {
        Ok(command) => Checked::Valid {
            kind: command.kind,
            encoding: command.text.encoding,
            segments: command.text.segments,
            row: Row {
                number,
                line,
                request: TlSendRequest {
                    to: to.to_owned(),
                    from: from.to_owned(),
                    body,
                    media_url,
                    idempotency_key: Some(key),
                },
            },
        },
        Err(e) => invalid(e.to_string()),
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The job's name: the first 24 hex digits of the SHA-256 of the file and of the options that
/// shape its messages (`--template`, `--from`), so a changed file or option is a new job.
fn job_hash(path: &Path, args: &SendArgs) -> anyhow::Result<String> {
    let mut reader = Hashing {
        inner: File::open(path).with_context(|| format!("opening {}", path.display()))?,
        hash: Sha256::new(),
    };
    std::io::copy(&mut reader, &mut std::io::sink())?;
    let mut hash = reader.hash;
    for option in [&args.template, &args.from] {
        hash.update([0xff]);
        hash.update(option.as_deref().unwrap_or_default().as_bytes());
    }
    Ok(hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect())
}

/// What the first pass found.
#[derive(Debug, Default)]
struct Plan {
    rows: u64,
    valid: u64,
    invalid: u64,
    first_invalid: Vec<(u64, String)>,
    sms: u64,
    mms: u64,
    gsm7: u64,
    ucs2: u64,
    segments: u64,
    /// Price of the valid rows not yet accepted.
    price: Credits,
    /// Valid rows not yet accepted.
    to_send: u64,
}

/// How many invalid rows are listed.
const LISTED_INVALID: usize = 10;

fn csv_reader(path: &Path) -> anyhow::Result<csv::Reader<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::None).from_reader(file))
}

/// Rows already accepted, by number: read from the results file of the same job.
struct Done {
    bits: Vec<u64>,
}

impl Done {
    fn contains(&self, row: u64) -> bool {
        let i = row as usize;
        self.bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn insert(&mut self, row: u64) {
        let i = row as usize;
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// The rows of `results` that have a message id.
    fn read(results: &Path) -> anyhow::Result<Self> {
        let mut done = Done { bits: Vec::new() };
        if !results.exists() {
            return Ok(done);
        }
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(results)?;
        for record in reader.records() {
            // A line cut short by a crash is no result.
            let Ok(record) = record else { continue };
            let (Some(row), Some(id)) = (record.get(0), record.get(2)) else { continue };
            if let (Ok(row), false) = (row.parse::<u64>(), id.is_empty()) {
                done.insert(row);
            }
        }
        Ok(done)
    }
}

async fn send_csv(client: &TextingLineClient, path: &Path, args: &SendArgs) -> anyhow::Result<()> {
    let job = job_hash(path, args)?;
    let results = args.results.clone().unwrap_or_else(|| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        path.with_file_name(format!("{name}.{job}.results.csv"))
    });
    let done = Done::read(&results)?;
    let policy = Policy::default();
    let tariff = Tariff::default();

    // First pass: check, count and price.
    let mut plan = Plan::default();
    let mut reader = csv_reader(path)?;
    let columns = Columns::new(reader.headers()?, args.template.as_deref())?;
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).with_context(|| format!("reading {}", path.display()))? {
        plan.rows += 1;
        match read_row(&record, plan.rows, &columns, args, &job, &policy) {
            Checked::Valid { row, kind, encoding, segments } => {
                plan.valid += 1;
                match kind {
                    MessageKind::Sms => plan.sms += 1,
                    MessageKind::Mms => plan.mms += 1,
                }
                match encoding {
                    Encoding::Gsm7 => plan.gsm7 += 1,
                    Encoding::Ucs2 => plan.ucs2 += 1,
                }
                plan.segments += u64::from(segments);
                if !done.contains(row.number) {
                    plan.to_send += 1;
                    let price = tariff.price(kind);
                    plan.price = Credits::new(plan.price.sms + price.sms, plan.price.mms + price.mms);
                }
            }
            Checked::Invalid { line, reason, .. } => {
                plan.invalid += 1;
                if plan.first_invalid.len() < LISTED_INVALID {
                    plan.first_invalid.push((line, reason));
                }
            }
        }
    }
    let balance = client.balance().await.map_err(dialect_error).context("reading the balance")?;
    let already = plan.valid - plan.to_send;
    eprintln!(
        "{}: {} rows, {} valid, {} invalid; {} SMS and {} MMS; {} GSM-7 and {} UCS-2, {} segments",
        path.display(),
        plan.rows,
        plan.valid,
        plan.invalid,
        plan.sms,
        plan.mms,
        plan.gsm7,
        plan.ucs2,
        plan.segments
    );
    eprintln!(
        "price: {} SMS credits and {} MMS credits for {} messages ({} already accepted); balance: {} SMS credits and {} MMS credits",
        plan.price.sms, plan.price.mms, plan.to_send, already, balance.sms_credits, balance.mms_credits
    );
    for (line, reason) in &plan.first_invalid {
        eprintln!("line {line}: {reason}");
    }
    if plan.invalid as usize > plan.first_invalid.len() {
        eprintln!("… and {} more invalid rows", plan.invalid as usize - plan.first_invalid.len());
    }
    let short = plan.price.sms > balance.sms_credits || plan.price.mms > balance.mms_credits;
    if short {
        bail!(
            "the balance is short: the file needs {} SMS and {} MMS credits, the account has {} and {}; nothing was sent",
            plan.price.sms,
            plan.price.mms,
            balance.sms_credits,
            balance.mms_credits
        );
    }
    if plan.invalid > 0 && !args.skip_invalid {
        bail!("{} rows are invalid (listed above); fix them, or pass --skip-invalid to send the rest", plan.invalid);
    }
    if args.dry_run {
        eprintln!("dry run: nothing was sent");
        return Ok(());
    }
    if plan.to_send == 0 {
        eprintln!("every row was accepted already (results in {})", results.display());
        return Ok(());
    }

    // Second pass: send.
    let counts = Arc::new(Counts::default());
    counts.skipped.fetch_add(already + plan.invalid, std::sync::atomic::Ordering::Relaxed);
    let progress = Progress::start(plan.to_send, counts.clone());
    let (tx, rx) = mpsc::channel::<Outcome>(1024);
    let writer = tokio::task::spawn_blocking({
        let results = results.clone();
        move || write_results(&results, rx)
    });
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut pace = args.rate.filter(|r| *r > 0.0).map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut reader = csv_reader(path)?;
    let mut number = 0u64;
    let interrupted = {
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        loop {
            if !reader.read_record(&mut record)? {
                break false;
            }
            number += 1;
            if done.contains(number) {
                continue;
            }
            let Checked::Valid { row, .. } = read_row(&record, number, &columns, args, &job, &policy) else { continue };
            if let Some(pace) = &mut pace {
                tokio::select! {
                    _ = pace.tick() => {}
                    _ = &mut stop => break true,
                }
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit?,
                _ = &mut stop => break true,
            };
            while tasks.try_join_next().is_some() {}
            let (client, tx, counts) = (client.clone(), tx.clone(), counts.clone());
            tasks.spawn(async move {
                let outcome = send_row(&client, row).await;
                counts.count(&outcome);
                let _ = tx.send(outcome).await;
                drop(permit);
            });
        }
    };
    if interrupted {
        eprintln!("interrupted: waiting for the sends in flight, then stopping");
    }
    while tasks.join_next().await.is_some() {}
    drop(tx);
    writer.await??;
    progress.finish();
    let (sent, failed) = counts.totals();
    eprintln!("{sent} accepted, {failed} failed; results in {}", results.display());
    if interrupted {
        bail!("interrupted; run the same command again to send the rest");
    }
    if failed > 0 {
        bail!("{failed} rows failed (see {})", results.display());
    }
    Ok(())
}

/// What became of one row.
#[derive(Debug)]
struct Outcome {
    number: u64,
    line: u64,
    id: Option<String>,
    status: String,
    error: String,
}

/// Sends one row. The client tries a send that failed on the way again (no connection, 429,
/// 5xx) with the row's idempotency key, so it is never sent twice.
async fn send_row(client: &TextingLineClient, row: Row) -> Outcome {
    match client.send(&row.request).await {
        Ok(sent) => {
            let message = sent.message;
            let status = serde_json::to_value(message.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            Outcome {
                number: row.number,
                line: row.line,
                id: Some(message.id.to_string()),
                status,
                error: message.error_message.unwrap_or_default(),
            }
        }
        Err(e) => {
            Outcome { number: row.number, line: row.line, id: None, status: "error".into(), error: e.to_string() }
        }
    }
}

/// Appends outcomes to the results file as they come, flushed at least every second.
fn write_results(path: &Path, mut rx: mpsc::Receiver<Outcome>) -> anyhow::Result<()> {
    let new = !path.exists() || std::fs::metadata(path)?.len() == 0;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut out = csv::WriterBuilder::new().has_headers(false).from_writer(BufWriter::new(file));
    if new {
        out.write_record(["row", "line", "message_id", "status", "error"])?;
    }
    let mut flushed = Instant::now();
    while let Some(o) = rx.blocking_recv() {
        out.write_record([o.number.to_string(), o.line.to_string(), o.id.unwrap_or_default(), o.status, o.error])?;
        if flushed.elapsed() >= Duration::from_secs(1) {
            out.flush()?;
            flushed = Instant::now();
        }
    }
    out.flush()?;
    let file = out.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
    file.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?.sync_all()?;
    Ok(())
}

/// Counts of the rows as they are answered.
#[derive(Debug, Default)]
struct Counts {
    sent: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    skipped: std::sync::atomic::AtomicU64,
}

impl Counts {
    fn count(&self, o: &Outcome) {
        use std::sync::atomic::Ordering::Relaxed;
        if o.id.is_some() && o.status != "failed" {
            self.sent.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
    }

    fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.sent.load(Relaxed), self.failed.load(Relaxed))
    }

    fn line(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "sent {}, failed {}, skipped {}",
            self.sent.load(Relaxed),
            self.failed.load(Relaxed),
            self.skipped.load(Relaxed)
        )
    }
}

/// A progress bar on a terminal; a plain line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(total: u64, counts: Arc<Counts>) -> Self {
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} · {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let ticker = tokio::spawn({
                let bar = bar.clone();
                async move {
                    loop {
                        let (sent, failed) = counts.totals();
                        bar.set_position(sent + failed);
                        bar.set_message(counts.line());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
            Progress { bar: Some(bar), ticker }
        } else {
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let (sent, failed) = counts.totals();
                    let done = sent + failed;
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                    let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
                    eprintln!("{done}/{total} ({rate:.0}/s, eta {eta:.0} s): {}", counts.line());
                }
            });
            Progress { bar: None, ticker }
        }
    }

    fn finish(self) {
        self.ticker.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Columns {
        Columns::new(&csv::StringRecord::from(names.to_vec()), None).unwrap()
    }

    #[test]
    fn placeholders_are_filled_from_the_row() {
        let c = columns(&["to", "template", "name", "code"]);
        let record = csv::StringRecord::from(vec!["+18002000001", "", "Ada", "4711"]);
        assert_eq!(fill("Hi {{name}}, your code is {{ code }}.", &c, &record).unwrap(), "Hi Ada, your code is 4711.");
        assert!(fill("Hi {{nome}}", &c, &record).unwrap_err().contains("{{nome}}"));
        assert!(fill("Hi {{name", &c, &record).is_err());
    }

    #[test]
    fn done_rows_are_remembered_in_a_bitset() {
        let mut done = Done { bits: Vec::new() };
        for row in [1, 64, 65, 1_000_000] {
            done.insert(row);
        }
        assert!(done.contains(1) && done.contains(64) && done.contains(65) && done.contains(1_000_000));
        assert!(!done.contains(2) && !done.contains(999_999) && !done.contains(5_000_000));
        assert_eq!(done.bits.len(), 1_000_000 / 64 + 1);
    }

    #[test]
    fn files_need_a_recipient_and_a_text() {
        assert!(Columns::new(&csv::StringRecord::from(vec!["body"]), None).is_err());
        assert!(Columns::new(&csv::StringRecord::from(vec!["to", "name"]), None).is_err());
        assert!(Columns::new(&csv::StringRecord::from(vec!["to", "name"]), Some("Hi {{name}}")).is_ok());
    }
}
