//! The admin API under `/admin/v1`, guarded by the operator token (`Authorization: Bearer …`):
//! accounts, API keys, senders, credits and the ledger, opt-outs, messages, channels and
//! templates. The webhook, upstream and simulator routes of the same API are in `lifecycle`;
//! what both share (the error type, the operator extractor, parameter parsing, the message's
//! wire shape) is in `operator`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_core::{MessageDetail, Viewer};
use switchboard_domain::wire::{
    Account, AdminErrorBody, ApiKey, ApiKeyCreated, Balance, Channel, CreateAccount, CreateApiKey, CreateChannel,
    CreateSender, CreateSmppCredential, CreateTemplate, CreateTemplateVersion, LedgerEntry, MAX_ALLOWED_COUNTRIES,
    MAX_LOW_BALANCE_THRESHOLD, Message, OptOut, OptOutRequest, Page, SearchPage, Sender, SmppBind, SmppCredential,
    SmppCredentialCreated, StatusEvent, Template, TemplateVersion, TopUp, UpdateAccount, UpdateChannel, UpdateSender,
    UpdateTemplateVersion,
};
use switchboard_domain::{Dialect, MessageId, MessageStatus, Msisdn, Timestamp};
use switchboard_ledger::{Credits, EntryKind};
use switchboard_records::{
    AccountRecord, ApiKeyRecord, ChannelRecord, LedgerFilter, LedgerRecord, MessageFilter, OptOutRecord, Scanned,
    SenderChange, SenderRecord, SmppCredentialRecord, TemplateRecord, TemplateVersionRecord,
};
use uuid::Uuid;

use crate::AppState;
use crate::extract::{Body, OptionalBody, Path, Query};
use crate::operator::{AdminResult, ApiError, Operator, account_id, message_wire, part_wire, uuid_param};

/// The routes of the admin API.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/accounts", post(create_account).get(list_accounts))
        .route("/admin/v1/accounts/{account}", get(get_account).patch(update_account))
        .route("/admin/v1/accounts/{account}/keys", post(create_key).get(list_keys))
        .route("/admin/v1/accounts/{account}/keys/{key}", delete(revoke_key))
        .route("/admin/v1/accounts/{account}/smpp-credentials", post(create_smpp_credential).get(list_smpp_credentials))
        .route("/admin/v1/accounts/{account}/smpp-credentials/{system_id}", delete(revoke_smpp_credential))
        .route("/admin/v1/smpp/binds", get(list_smpp_binds))
        .route("/admin/v1/accounts/{account}/senders", post(create_sender).get(list_senders))
        .route("/admin/v1/accounts/{account}/senders/{address}", patch(update_sender))
        .route("/admin/v1/accounts/{account}/credits", post(top_up))
        .route("/admin/v1/accounts/{account}/balance", get(balance))
        .route("/admin/v1/accounts/{account}/ledger", get(ledger))
        .route("/admin/v1/accounts/{account}/opt-outs", post(add_opt_out).get(list_opt_outs))
        .route("/admin/v1/accounts/{account}/opt-outs/{sender}/{recipient}", delete(remove_opt_out))
        .route("/admin/v1/accounts/{account}/messages", get(list_messages))
        .route("/admin/v1/accounts/{account}/channels", post(create_channel).get(list_channels))
        .route("/admin/v1/accounts/{account}/channels/{channel}", get(get_channel).patch(update_channel))
        .route("/admin/v1/accounts/{account}/templates", post(create_template).get(list_templates))
        .route("/admin/v1/accounts/{account}/templates/{template}", get(get_template))
        .route("/admin/v1/accounts/{account}/templates/{template}/versions", post(add_template_version))
        .route("/admin/v1/accounts/{account}/templates/{template}/versions/{version}", patch(update_template_version))
        .route("/admin/v1/messages", get(search_messages))
        .route("/admin/v1/messages/{id}", get(get_message))
}

pub(crate) fn account_wire(a: &AccountRecord) -> Account {
    Account {
        id: a.id.as_uuid(),
        name: a.name.clone(),
        sms_credits: a.balance.sms,
        mms_credits: a.balance.mms,
        rate_limit: a.rate_limit,
        refund_carrier_failures: a.refund_carrier_failures,
        allowed_countries: a.destinations.allowed_regions.as_ref().map(|set| set.iter().copied().collect()),
        accept_fixed_or_mobile: a.destinations.fixed_or_mobile,
        low_balance_threshold: a.low_balance_threshold,
        created_at: a.created_at,
    }
}

fn key_wire(k: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: k.id.clone(),
        account_id: k.account_id.as_uuid(),
        name: k.name.clone(),
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

fn sender_wire(s: &SenderRecord) -> Sender {
    Sender {
        address: s.address.as_str().to_owned(),
        account_id: s.account_id.as_uuid(),
        active: s.active,
        sms: s.sms,
        mms: s.mms,
        created_at: s.created_at,
    }
}

pub(crate) fn ledger_wire(e: &LedgerRecord) -> LedgerEntry {
    LedgerEntry {
        id: e.id,
        kind: e.kind.as_str().to_owned(),
        sms_delta: e.delta.sms,
        mms_delta: e.delta.mms,
        sms_balance: e.balance_after.sms,
        mms_balance: e.balance_after.mms,
        message_id: e.message_id,
        reference: e.reference.clone(),
        created_at: e.created_at,
    }
}

fn channel_wire(c: &ChannelRecord) -> Channel {
    Channel {
        id: c.id,
        account_id: c.account_id.as_uuid(),
        name: c.name.clone(),
        sender: c.sender.as_str().to_owned(),
        active: c.active,
        mms: c.mms,
        created_at: c.created_at,
    }
}

fn template_version_wire(v: &TemplateVersionRecord) -> TemplateVersion {
    TemplateVersion {
        id: v.id,
        template_id: v.template_id,
        texts: v.texts.clone(),
        active: v.active,
        created_at: v.created_at,
    }
}

fn template_wire(t: &TemplateRecord) -> Template {
    Template {
        id: t.id,
        account_id: t.account_id.as_uuid(),
        name: t.name.clone(),
        created_at: t.created_at,
        versions: t.versions.iter().map(template_version_wire).collect(),
    }
}

fn opt_out_wire(o: &OptOutRecord) -> OptOut {
    OptOut {
        sender: o.sender.as_str().to_owned(),
        recipient: o.recipient.as_str().to_owned(),
        created_at: o.created_at,
    }
}

/// Paging of admin lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageParams {
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

impl PageParams {
    fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if (1..=1000).contains(&limit) { Ok(limit) } else { Err(ApiError::invalid("limit: must be 1 to 1000")) }
    }

    fn cursor<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| c.parse().map_err(|_| ApiError::invalid("cursor: not a cursor from this API")))
            .transpose()
    }
}

/// Cuts one extra item off a page fetched with `limit + 1` and makes the cursor.
fn page<R, W>(mut items: Vec<R>, limit: u32, cursor: impl Fn(&R) -> String, wire: impl Fn(&R) -> W) -> Page<W> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(&cursor) } else { None };
    Page { data: items.iter().map(wire).collect(), next_cursor }
}

/// Create an account.
#[utoipa::path(post, path = "/admin/v1/accounts", tag = "Admin", request_body(content = CreateAccount, example = json!({"name": "Acme Retail"})), security(("operator" = [])),
    responses((status = 201, body = Account), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody)))]
pub(crate) async fn create_account(
    State(s): State<AppState>,
    _: Operator,
    Body(req, ..): Body<CreateAccount, ApiError>,
) -> AdminResult<(StatusCode, Json<Account>)> {
    let account = s.core.create_account(&req.name).await?;
    Ok((StatusCode::CREATED, Json(account_wire(&account))))
}

/// List accounts, newest first.
#[utoipa::path(get, path = "/admin/v1/accounts", tag = "Admin", params(PageParams), security(("operator" = [])),
    responses((status = 200, body = Page<Account>), (status = 401, body = AdminErrorBody)))]
pub(crate) async fn list_accounts(
    State(s): State<AppState>,
    _: Operator,
    Query(p, ..): Query<PageParams, ApiError>,
) -> AdminResult<Json<Page<Account>>> {
    let limit = p.limit()?;
    let items = s.core.accounts(p.cursor()?, limit + 1).await?;
    Ok(Json(page(items, limit, |a| a.id.to_string(), account_wire)))
}

/// Read an account with its balances.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Account), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn get_account(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Account>> {
    Ok(Json(account_wire(&s.core.account(account_id(&account)?).await?)))
}

/// Change an account's settings: its Mudbase request rate limit, whether messages the
/// carrier reports undelivered or failed are refunded, the countries it sends to, whether
/// it accepts fixed-or-mobile numbers, and its low-balance threshold.
#[utoipa::path(patch, path = "/admin/v1/accounts/{account}", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = UpdateAccount, example = json!({"rateLimit": 500, "refundCarrierFailures": true, "allowedCountries": ["US", "CA"], "acceptFixedOrMobile": true, "lowBalanceThreshold": 1000})),
    security(("operator" = [])), responses((status = 200, body = Account), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn update_account(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<UpdateAccount, ApiError>,
) -> AdminResult<Json<Account>> {
    let account = account_id(&account)?;
    if req.allowed_countries.as_ref().and_then(Option::as_ref).is_some_and(|l| l.len() > MAX_ALLOWED_COUNTRIES) {
        return Err(ApiError::invalid(format!("allowedCountries: at most {MAX_ALLOWED_COUNTRIES} countries")));
    }
    // Checked before anything changes, so that a refused request changes nothing.
    if req.low_balance_threshold.flatten().is_some_and(|t| !(1..=MAX_LOW_BALANCE_THRESHOLD).contains(&t)) {
        return Err(ApiError::invalid(format!(
            "lowBalanceThreshold: must be 1 to {MAX_LOW_BALANCE_THRESHOLD} SMS credits, or null for none"
        )));
    }
    let mut record = match req.rate_limit {
        Some(limit) => s.core.set_rate_limit(account, limit).await?,
        None => s.core.account(account).await?,
    };
    if let Some(refund) = req.refund_carrier_failures {
        record = s.core.set_refund_carrier_failures(account, refund).await?;
    }
    if req.allowed_countries.is_some() || req.accept_fixed_or_mobile.is_some() {
        let mut destinations = record.destinations.clone();
        if let Some(allowed) = req.allowed_countries {
            destinations.allowed_regions = allowed.map(|list| list.into_iter().collect());
        }
        if let Some(accept) = req.accept_fixed_or_mobile {
            destinations.fixed_or_mobile = accept;
        }
        record = s.core.set_destinations(account, destinations).await?;
    }
    if let Some(threshold) = req.low_balance_threshold {
        record = s.core.set_low_balance_threshold(account, threshold).await?;
    }
    Ok(Json(account_wire(&record)))
}

/// Create an API key. The secret is in this response only.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/keys", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = Option<CreateApiKey>, description = "Optional: a key needs no name", example = json!({"name": "checkout service"})),
    security(("operator" = [])), responses((status = 201, body = ApiKeyCreated), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn create_key(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    OptionalBody(body, ..): OptionalBody<CreateApiKey, ApiError>,
) -> AdminResult<(StatusCode, Json<ApiKeyCreated>)> {
    let name = body.name;
    let (record, key) = s.core.create_key(account_id(&account)?, name.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key: key_wire(&record),
            api_key: format!("{}:{}", key.id, key.secret),
            secret: key.secret,
        }),
    ))
}

/// List an account's API keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/keys", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Page<ApiKey>), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_keys(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<ApiKey>>> {
    let keys = s.core.keys(account_id(&account)?).await?;
    Ok(Json(Page { data: keys.iter().map(key_wire).collect(), next_cursor: None }))
}

/// Revoke an API key; it stops working at once on this node and within the auth cache period
/// (5 s by default) on others.
#[utoipa::path(delete, path = "/admin/v1/accounts/{account}/keys/{key}", tag = "Admin", params(("account" = Uuid, Path), ("key" = String, Path)),
    security(("operator" = [])), responses((status = 200, body = ApiKey), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn revoke_key(
    State(s): State<AppState>,
    _: Operator,
    Path((account, key), ..): Path<(String, String), ApiError>,
) -> AdminResult<Json<ApiKey>> {
    Ok(Json(key_wire(&s.core.revoke_key(account_id(&account)?, &key).await?)))
}

fn smpp_credential_wire(c: &SmppCredentialRecord) -> SmppCredential {
    SmppCredential {
        system_id: c.system_id.clone(),
        account_id: c.account_id.as_uuid(),
        max_binds: c.max_binds,
        window: c.window,
        max_per_second: c.max_per_second,
        created_at: c.created_at,
        revoked_at: c.revoked_at,
    }
}

/// Create an SMPP credential: the `system_id` and password an ESME binds with to the SMPP
/// server. The password is made by the server and is in this response only.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/smpp-credentials", tag = "Admin", params(("account" = Uuid, Path)),
    request_body(content = CreateSmppCredential, example = json!({"systemId": "acme01", "window": 50})),
    security(("operator" = [])), responses((status = 201, body = SmppCredentialCreated), (status = 404, body = AdminErrorBody),
    (status = 409, body = AdminErrorBody), (status = 422, body = AdminErrorBody)))]
pub(crate) async fn create_smpp_credential(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(body, ..): Body<CreateSmppCredential, ApiError>,
) -> AdminResult<(StatusCode, Json<SmppCredentialCreated>)> {
    let limits = switchboard_core::smpp::SmppLimits {
        max_binds: body.max_binds,
        window: body.window,
        max_per_second: body.max_per_second,
    };
    let (record, password) = s.core.create_smpp_credential(account_id(&account)?, &body.system_id, limits).await?;
    Ok((
        StatusCode::CREATED,
        Json(SmppCredentialCreated { credential: smpp_credential_wire(&record), password: password.0 }),
    ))
}

/// List an account's SMPP credentials (never their passwords).
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/smpp-credentials", tag = "Admin", params(("account" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = Page<SmppCredential>), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_smpp_credentials(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<SmppCredential>>> {
    let all = s.core.smpp_credentials(account_id(&account)?).await?;
    Ok(Json(Page { data: all.iter().map(smpp_credential_wire).collect(), next_cursor: None }))
}

/// Revoke an SMPP credential: new binds with it fail at once on this node and within the
/// auth cache period on others; binds already made stay until they end.
#[utoipa::path(delete, path = "/admin/v1/accounts/{account}/smpp-credentials/{system_id}", tag = "Admin",
    params(("account" = Uuid, Path), ("system_id" = String, Path)),
    security(("operator" = [])), responses((status = 200, body = SmppCredential), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn revoke_smpp_credential(
    State(s): State<AppState>,
    _: Operator,
    Path((account, system_id), ..): Path<(String, String), ApiError>,
) -> AdminResult<Json<SmppCredential>> {
    Ok(Json(smpp_credential_wire(&s.core.revoke_smpp_credential(account_id(&account)?, &system_id).await?)))
}

/// List the SMPP binds held on this node: account, credential, mode, peer, window in use and
/// counts.
#[utoipa::path(get, path = "/admin/v1/smpp/binds", tag = "Admin", security(("operator" = [])),
    responses((status = 200, body = Page<SmppBind>)))]
pub(crate) async fn list_smpp_binds(State(s): State<AppState>, _: Operator) -> AdminResult<Json<Page<SmppBind>>> {
    use std::sync::atomic::Ordering::Relaxed;
    let data = s
        .core
        .smpp_binds()
        .list()
        .iter()
        .map(|b| SmppBind {
            id: b.id,
            account_id: b.account.as_uuid(),
            system_id: b.system_id.clone(),
            mode: b.mode.as_str().to_owned(),
            peer: b.peer.to_string(),
            bound_at: b.bound_at,
            window_in_use: b.in_window.load(Relaxed),
            window: b.window,
            submits: b.submits.load(Relaxed),
            accepted: b.accepted.load(Relaxed),
            delivers: b.delivers.load(Relaxed),
            delivered: b.delivered.load(Relaxed),
        })
        .collect();
    Ok(Json(Page { data, next_cursor: None }))
}

/// Assign a sender number to an account.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/senders", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = CreateSender, example = json!({"address": "+18005559876", "sms": true, "mms": true, "active": true})),
    security(("operator" = [])), responses((status = 201, body = Sender), (status = 400, body = AdminErrorBody), (status = 409, description = "Assigned already", body = AdminErrorBody)))]
pub(crate) async fn create_sender(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<CreateSender, ApiError>,
) -> AdminResult<(StatusCode, Json<Sender>)> {
    let sender = s.core.add_sender(account_id(&account)?, &req.address, req.active, req.sms, req.mms).await?;
    Ok((StatusCode::CREATED, Json(sender_wire(&sender))))
}

/// List an account's senders.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/senders", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Page<Sender>), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_senders(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<Sender>>> {
    let senders = s.core.senders(account_id(&account)?).await?;
    Ok(Json(Page { data: senders.iter().map(sender_wire).collect(), next_cursor: None }))
}

/// Activate, deactivate, or change the capabilities of a sender.
#[utoipa::path(patch, path = "/admin/v1/accounts/{account}/senders/{address}", tag = "Admin",
    params(("account" = Uuid, Path), ("address" = String, Path, description = "E.164 (+ escaped as %2B or not) or an alphanumeric sender ID (a space escaped as %20)")), request_body(content = UpdateSender, example = json!({"mms": false})),
    security(("operator" = [])), responses((status = 200, body = Sender), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn update_sender(
    State(s): State<AppState>,
    _: Operator,
    Path((account, address), ..): Path<(String, String), ApiError>,
    Body(req, ..): Body<UpdateSender, ApiError>,
) -> AdminResult<Json<Sender>> {
    let change = SenderChange { active: req.active, sms: req.sms, mms: req.mms };
    Ok(Json(sender_wire(&s.core.update_sender(account_id(&account)?, &address, change).await?)))
}

/// Add SMS and/or MMS credits. Writes a `topup` ledger entry.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/credits", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = TopUp, example = json!({"sms": 10000, "mms": 500, "reference": "invoice 2026-117"})),
    security(("operator" = [])), responses((status = 201, body = LedgerEntry), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn top_up(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<TopUp, ApiError>,
) -> AdminResult<(StatusCode, Json<LedgerEntry>)> {
    let account = account_id(&account)?;
    s.core.account(account).await?;
    let entry = s.core.top_up(account, Credits::new(req.sms, req.mms), req.reference.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(ledger_wire(&entry))))
}

/// Read an account's balances.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/balance", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Balance), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn balance(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Balance>> {
    let a = s.core.account(account_id(&account)?).await?;
    Ok(Json(Balance { sms_credits: a.balance.sms, mms_credits: a.balance.mms }))
}

/// Filters and paging of an account's ledger.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerParams {
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Only entries of this kind: `topup`, `charge` or `refund`.
    kind: Option<String>,
    /// Only entries made at or after this time (RFC 3339, or a date).
    from: Option<String>,
    /// Only entries made before this time (RFC 3339, or a date).
    to: Option<String>,
    /// Only the entries of this message (its charge and refund).
    message: Option<String>,
}

impl LedgerParams {
    /// The filter these parameters name; a value that does not parse is a bad request.
    pub(crate) fn filter(&self) -> Result<LedgerFilter, ApiError> {
        Ok(LedgerFilter {
            kind: self
                .kind
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| EntryKind::parse(k).ok_or_else(|| ApiError::invalid("kind: one of topup, charge, refund")))
                .transpose()?,
            message: self
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| m.parse::<MessageId>().map_err(|_| ApiError::invalid("message: not a message id")))
                .transpose()?,
            from: time_param("from", self.from.as_deref())?,
            to: time_param("to", self.to.as_deref())?,
        })
    }
}

/// An optional time parameter: RFC 3339 or a date; empty is absent.
pub(crate) fn time_param(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            Timestamp::parse_lenient(v)
                .ok_or_else(|| ApiError::invalid(format!("{name}: not a time (RFC 3339, e.g. 2026-03-15T14:30:00Z)")))
        })
        .transpose()
}

/// A search page on the wire, with its cursor.
pub(crate) fn search_page<R, W>(
    found: Scanned<R>,
    cursor: impl Fn(Uuid) -> String,
    wire: impl Fn(&R) -> W,
) -> SearchPage<W> {
    SearchPage {
        data: found.items.iter().map(wire).collect(),
        next_cursor: found.next.map(cursor),
        capped: found.capped,
    }
}

/// List an account's ledger entries, newest first, each with its cause (the message it
/// charged or refunded, or a top-up's reference), optionally only those of one kind, one
/// message or a time range. Filtered by kind or time, a page examines at most 10,000 entries:
/// see `capped`.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/ledger", tag = "Admin", params(("account" = Uuid, Path), LedgerParams),
    security(("operator" = [])), responses((status = 200, body = SearchPage<LedgerEntry>), (status = 400, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn ledger(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Query(p, ..): Query<LedgerParams, ApiError>,
) -> AdminResult<Json<SearchPage<LedgerEntry>>> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit: must be 1 to 1000"));
    }
    let before = p
        .cursor
        .as_deref()
        .map(|c| c.parse::<Uuid>().map_err(|_| ApiError::invalid("cursor: not a cursor from this API")))
        .transpose()?;
    let found = s.core.ledger_entries(Viewer::Operator, account_id(&account)?, &p.filter()?, before, limit).await?;
    Ok(Json(search_page(found, |id| id.to_string(), ledger_wire)))
}

/// Suppress a recipient for one of the account's senders.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/opt-outs", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = OptOutRequest, example = json!({"sender": "+18005559876", "recipient": "+18005551234"})),
    security(("operator" = [])), responses((status = 201, body = OptOut), (status = 400, body = AdminErrorBody)))]
pub(crate) async fn add_opt_out(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<OptOutRequest, ApiError>,
) -> AdminResult<(StatusCode, Json<OptOut>)> {
    let o = s.core.add_opt_out(account_id(&account)?, &req.sender, &req.recipient).await?;
    Ok((StatusCode::CREATED, Json(opt_out_wire(&o))))
}

/// List an account's opt-outs.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/opt-outs", tag = "Admin", params(("account" = Uuid, Path), PageParams),
    security(("operator" = [])), responses((status = 200, body = Page<OptOut>)))]
pub(crate) async fn list_opt_outs(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Query(p, ..): Query<PageParams, ApiError>,
) -> AdminResult<Json<Page<OptOut>>> {
    let items = s.core.opt_outs(account_id(&account)?, p.limit()?).await?;
    Ok(Json(Page { data: items.iter().map(opt_out_wire).collect(), next_cursor: None }))
}

/// Lift an opt-out.
#[utoipa::path(delete, path = "/admin/v1/accounts/{account}/opt-outs/{sender}/{recipient}", tag = "Admin",
    params(("account" = Uuid, Path), ("sender" = String, Path), ("recipient" = String, Path)), security(("operator" = [])),
    responses((status = 204, description = "Lifted"), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn remove_opt_out(
    State(s): State<AppState>,
    _: Operator,
    Path((account, sender, recipient), ..): Path<(String, String, String), ApiError>,
) -> AdminResult<StatusCode> {
    s.core.remove_opt_out(account_id(&account)?, &sender, &recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List an account's messages, newest first.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/messages", tag = "Admin", params(("account" = Uuid, Path), PageParams),
    security(("operator" = [])), responses((status = 200, body = Page<Message>), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_messages(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Query(p, ..): Query<PageParams, ApiError>,
) -> AdminResult<Json<Page<Message>>> {
    let limit = p.limit()?;
    let account = account_id(&account)?;
    s.core.account(account).await?;
    let items = s.core.messages(account, p.cursor::<MessageId>()?, limit + 1).await?;
    Ok(Json(page(items, limit, |m| m.id.to_string(), message_wire)))
}

/// Filters and paging of a message search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
    /// The message with this id (`msg_…`), if it matches the other filters.
    id: Option<String>,
    /// Only this account's messages.
    account: Option<String>,
    /// Only messages to this number, E.164, matched whole (never as a prefix).
    recipient: Option<String>,
    /// Only messages in this status.
    status: Option<String>,
    /// Only messages that came this way: `textingline`, `mudbase`, `bird`, `smpp`, `reply`
    /// (a keyword's answer) or `inbound`.
    dialect: Option<String>,
    /// Only messages created at or after this time (RFC 3339, or a date).
    from: Option<String>,
    /// Only messages created before this time (RFC 3339, or a date).
    to: Option<String>,
}

impl SearchParams {
    /// The page size; out of 1 to 1000 is a bad request.
    pub(crate) fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if (1..=1000).contains(&limit) { Ok(limit) } else { Err(ApiError::invalid("limit: must be 1 to 1000")) }
    }

    /// The cursor, the message id and the filter these parameters name; a value that does not
    /// parse is a bad request.
    pub(crate) fn query(&self) -> Result<(Option<MessageId>, Option<MessageId>, MessageFilter), ApiError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let message_id = |name: &str, v: Option<String>| {
            v.map(|v| v.trim().parse::<MessageId>().map_err(|_| ApiError::invalid(format!("{name}: not a message id"))))
                .transpose()
        };
        let cursor = message_id("cursor", given(&self.cursor))?;
        let id = message_id("id", given(&self.id))?;
        let filter = MessageFilter {
            account: given(&self.account)
                .map(|a| uuid_param("account", a.trim()).map(switchboard_domain::AccountId::from_uuid))
                .transpose()?,
            recipient: given(&self.recipient)
                .map(|r| {
                    Msisdn::parse(r.trim())
                        .map_err(|_| ApiError::invalid("recipient: not an E.164 number (+ and 8 to 15 digits)"))
                })
                .transpose()?,
            status: given(&self.status)
                .map(|st| {
                    MessageStatus::parse(st.trim()).ok_or_else(|| {
                        let known: Vec<&str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
                        ApiError::invalid(format!("status: one of {}", known.join(", ")))
                    })
                })
                .transpose()?,
            dialect: given(&self.dialect)
                .map(|d| {
                    Dialect::parse(d.trim()).ok_or_else(|| {
                        let known: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
                        ApiError::invalid(format!("dialect: one of {}", known.join(", ")))
                    })
                })
                .transpose()?,
            from: time_param("from", self.from.as_deref())?,
            to: time_param("to", self.to.as_deref())?,
        };
        Ok((cursor, id, filter))
    }
}

/// Find messages of every account, newest first: one by id, or by account, recipient
/// (matched whole), status, dialect and time range. A page examines at most 10,000 messages of
/// the time range (ids are time-ordered, so a narrower range searches further back): see
/// `capped`.
#[utoipa::path(get, path = "/admin/v1/messages", tag = "Admin", params(SearchParams), security(("operator" = [])),
    responses((status = 200, body = SearchPage<Message>), (status = 400, body = AdminErrorBody)))]
pub(crate) async fn search_messages(
    State(s): State<AppState>,
    _: Operator,
    Query(p, ..): Query<SearchParams, ApiError>,
) -> AdminResult<Json<SearchPage<Message>>> {
    let limit = p.limit()?;
    let (cursor, id, filter) = p.query()?;
    let found = s.core.find_messages(Viewer::Operator, id, &filter, cursor, limit).await?;
    Ok(Json(search_page(found, |id| MessageId::from_uuid(id).to_string(), message_wire)))
}

/// Read any message with its status history, parts, charge and refund, and webhook
/// deliveries with their attempts.
#[utoipa::path(get, path = "/admin/v1/messages/{id}", tag = "Admin", params(("id" = String, Path)), security(("operator" = [])),
    responses((status = 200, body = Message), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn get_message(
    State(s): State<AppState>,
    _: Operator,
    Path(id, ..): Path<String, ApiError>,
) -> AdminResult<Json<Message>> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "message not found");
    let id: MessageId = id.parse().map_err(|_| not_found())?;
    let detail = s.core.message_detail(Viewer::Operator, id).await?;
    Ok(Json(message_detail_wire(&detail)))
}

/// A message with everything recorded about it, as the admin API shows it.
pub(crate) fn message_detail_wire(d: &MessageDetail) -> Message {
    let mut message = message_wire(&d.message);
    message.events =
        d.events.iter().map(|e| StatusEvent { status: e.status, at: e.at, error_type: e.error_type }).collect();
    message.parts = d.parts.iter().map(part_wire).collect();
    message.ledger = d.ledger.iter().map(ledger_wire).collect();
    message.webhook_deliveries = d
        .deliveries
        .iter()
        .map(|(delivery, attempts)| {
            crate::lifecycle::delivery_wire(delivery, attempts.iter().map(crate::lifecycle::attempt_wire).collect())
        })
        .collect();
    message
}

/// Create a channel sending from one of the account's senders; it can send MMS when its
/// sender can.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/channels", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = CreateChannel, example = json!({"name": "Order updates", "sender": "+18005559876", "active": true})),
    security(("operator" = [])), responses((status = 201, body = Channel), (status = 400, description = "Invalid, or the sender is not the account's", body = AdminErrorBody),
    (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn create_channel(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<CreateChannel, ApiError>,
) -> AdminResult<(StatusCode, Json<Channel>)> {
    let channel = s.core.create_channel(account_id(&account)?, &req.name, &req.sender, req.active).await?;
    Ok((StatusCode::CREATED, Json(channel_wire(&channel))))
}

/// List an account's channels.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/channels", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Page<Channel>), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_channels(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<Channel>>> {
    let channels = s.core.channels(account_id(&account)?).await?;
    Ok(Json(Page { data: channels.iter().map(channel_wire).collect(), next_cursor: None }))
}

/// Read one of an account's channels.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/channels/{channel}", tag = "Admin", params(("account" = Uuid, Path), ("channel" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = Channel), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn get_channel(
    State(s): State<AppState>,
    _: Operator,
    Path((account, channel), ..): Path<(String, String), ApiError>,
) -> AdminResult<Json<Channel>> {
    let account = account_id(&account)?;
    let channel = uuid_param("channel", &channel)?;
    Ok(Json(channel_wire(&s.core.channel(account, channel).await?)))
}

/// Rename, activate or deactivate a channel.
#[utoipa::path(patch, path = "/admin/v1/accounts/{account}/channels/{channel}", tag = "Admin", params(("account" = Uuid, Path), ("channel" = Uuid, Path)),
    request_body(content = UpdateChannel, example = json!({"active": false})), security(("operator" = [])),
    responses((status = 200, body = Channel), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn update_channel(
    State(s): State<AppState>,
    _: Operator,
    Path((account, channel), ..): Path<(String, String), ApiError>,
    Body(req, ..): Body<UpdateChannel, ApiError>,
) -> AdminResult<Json<Channel>> {
    let account = account_id(&account)?;
    let channel = uuid_param("channel", &channel)?;
    let record = s.core.update_channel(account, channel, req.name.as_deref(), req.active).await?;
    Ok(Json(channel_wire(&record)))
}

/// Create a message template, without versions.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/templates", tag = "Admin", params(("account" = Uuid, Path)), request_body(content = CreateTemplate, example = json!({"name": "shipping"})),
    security(("operator" = [])), responses((status = 201, body = Template), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody),
    (status = 404, body = AdminErrorBody), (status = 409, description = "The account has a template with this name", body = AdminErrorBody)))]
pub(crate) async fn create_template(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
    Body(req, ..): Body<CreateTemplate, ApiError>,
) -> AdminResult<(StatusCode, Json<Template>)> {
    let template = s.core.create_template(account_id(&account)?, &req.name).await?;
    Ok((StatusCode::CREATED, Json(template_wire(&template))))
}

/// List an account's templates with their versions.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/templates", tag = "Admin", params(("account" = Uuid, Path)), security(("operator" = [])),
    responses((status = 200, body = Page<Template>), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn list_templates(
    State(s): State<AppState>,
    _: Operator,
    Path(account, ..): Path<String, ApiError>,
) -> AdminResult<Json<Page<Template>>> {
    let templates = s.core.templates(account_id(&account)?).await?;
    Ok(Json(Page { data: templates.iter().map(template_wire).collect(), next_cursor: None }))
}

/// Read one of an account's templates with its versions, oldest first.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}/templates/{template}", tag = "Admin", params(("account" = Uuid, Path), ("template" = Uuid, Path)),
    security(("operator" = [])), responses((status = 200, body = Template), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn get_template(
    State(s): State<AppState>,
    _: Operator,
    Path((account, template), ..): Path<(String, String), ApiError>,
) -> AdminResult<Json<Template>> {
    let account = account_id(&account)?;
    let template = uuid_param("template", &template)?;
    Ok(Json(template_wire(&s.core.template(account, template).await?)))
}

/// Add a version to a template: a text per locale, whose `{{placeholders}}` must be well formed.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/templates/{template}/versions", tag = "Admin",
    params(("account" = Uuid, Path), ("template" = Uuid, Path)), request_body(content = CreateTemplateVersion, example = json!({"texts": {"en": "Your order {{order}} has shipped"}, "active": true})), security(("operator" = [])),
    responses((status = 201, body = TemplateVersion), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn add_template_version(
    State(s): State<AppState>,
    _: Operator,
    Path((account, template), ..): Path<(String, String), ApiError>,
    Body(req, ..): Body<CreateTemplateVersion, ApiError>,
) -> AdminResult<(StatusCode, Json<TemplateVersion>)> {
    let account = account_id(&account)?;
    let template = uuid_param("template", &template)?;
    let version = s.core.add_template_version(account, template, req.texts, req.active).await?;
    Ok((StatusCode::CREATED, Json(template_version_wire(&version))))
}

/// Activate or deactivate a template version.
#[utoipa::path(patch, path = "/admin/v1/accounts/{account}/templates/{template}/versions/{version}", tag = "Admin",
    params(("account" = Uuid, Path), ("template" = Uuid, Path), ("version" = Uuid, Path)), request_body(content = UpdateTemplateVersion, example = json!({"active": true})),
    security(("operator" = [])),
    responses((status = 200, body = TemplateVersion), (status = 400, body = AdminErrorBody), (status = 401, body = AdminErrorBody), (status = 404, body = AdminErrorBody)))]
pub(crate) async fn update_template_version(
    State(s): State<AppState>,
    _: Operator,
    Path((account, template, version), ..): Path<(String, String, String), ApiError>,
    Body(req, ..): Body<UpdateTemplateVersion, ApiError>,
) -> AdminResult<Json<TemplateVersion>> {
    let account = account_id(&account)?;
    let template = uuid_param("template", &template)?;
    let version = uuid_param("version", &version)?;
    let record = s.core.set_template_version_active(account, template, version, req.active).await?;
    Ok(Json(template_version_wire(&record)))
}
