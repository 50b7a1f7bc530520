//! Webhook endpoints and their deliveries: claiming the due ones, storing what each attempt
//! did, and the endpoints' sealed secrets.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use switchboard_domain::{AccountId, EventId, MessageId, Timestamp};
use uuid::Uuid;

use crate::engine::{Param, Tx};
use crate::rows::{ATTEMPT_COLUMNS, WEBHOOK_COLUMNS, delivery_columns, events_column};
use crate::{
    AttemptRecord, DeliveryFilter, DeliveryOutcome, DeliveryRecord, DeliveryResult, DeliveryState, PageRequest, Result,
    SealedSecret, StorageError, WebhookChange, WebhookRecord,
};

/// See [`crate::Store::create_webhook`].
pub(crate) async fn create(tx: &mut impl Tx, w: &WebhookRecord) -> Result<()> {
    let events = events_column(&w.events);
    tx.execute(
        "INSERT INTO webhook_endpoints (id, account_id, url, secret, events, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            w.id.into(),
            w.account_id.into(),
            w.url.as_str().into(),
            w.secret.0.as_slice().into(),
            events.as_str().into(),
            w.active.into(),
            w.created_at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// See [`crate::Store::get_webhook`].
pub(crate) async fn get(tx: &mut impl Tx, id: Uuid) -> Result<Option<WebhookRecord>> {
    tx.fetch_optional(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_webhooks`].
pub(crate) async fn list(tx: &mut impl Tx, account: AccountId) -> Result<Vec<WebhookRecord>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id LIMIT 1000"
    );
    tx.fetch_all(&sql, &[account.into()]).await
}

/// See [`crate::Store::update_webhook`].
pub(crate) async fn update(
    tx: &mut impl Tx,
    account: AccountId,
    id: Uuid,
    change: &WebhookChange,
) -> Result<WebhookRecord> {
    let events = change.events.as_deref().map(events_column);
    let sql = format!(
        "UPDATE webhook_endpoints SET url = COALESCE($1, url), secret = COALESCE($2, secret), \
         events = COALESCE($3, events), active = COALESCE($4, active) WHERE id = $5 AND account_id = $6 \
         RETURNING {WEBHOOK_COLUMNS}"
    );
    let params = [
        change.url.as_deref().into(),
        Param::Bytes(change.secret.as_ref().map(|s| s.0.as_slice())),
        events.as_deref().into(),
        change.active.into(),
        id.into(),
        account.into(),
    ];
    tx.fetch_optional(&sql, &params).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::delete_webhook`]. Deliveries a racing transaction adds for the endpoint
/// after this one commits are canceled when claimed (see [`claim`]).
pub(crate) async fn delete(tx: &mut impl Tx, account: AccountId, id: Uuid) -> Result<()> {
    let deleted = tx
        .execute("DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2", &[id.into(), account.into()])
        .await?;
    if deleted != 1 {
        return Err(StorageError::NotFound);
    }
    tx.execute(
        "UPDATE webhook_deliveries SET state = 'canceled', updated_at = $3 \
         WHERE endpoint_id = $1 AND account_id = $2 AND state = 'pending'",
        &[id.into(), account.into(), Timestamp::now().into()],
    )
    .await?;
    Ok(())
}

/// See [`crate::Store::sealed_webhook_secrets`].
pub(crate) async fn sealed_secrets(tx: &mut impl Tx) -> Result<Vec<(Uuid, SealedSecret)>> {
    let rows: Vec<(Uuid, Vec<u8>)> = tx.fetch_all("SELECT id, secret FROM webhook_endpoints ORDER BY id", &[]).await?;
    Ok(rows.into_iter().map(|(id, s)| (id, SealedSecret(s))).collect())
}

/// See [`crate::Store::reseal_webhook_secret`].
pub(crate) async fn reseal_secret(tx: &mut impl Tx, id: Uuid, old: &SealedSecret, new: &SealedSecret) -> Result<bool> {
    let changed = tx
        .execute(
            "UPDATE webhook_endpoints SET secret = $1 WHERE id = $2 AND secret = $3",
            &[new.0.as_slice().into(), id.into(), old.0.as_slice().into()],
        )
        .await?;
    Ok(changed == 1)
}

/// See [`crate::Store::claim_deliveries`].
pub(crate) async fn claim(
    tx: &mut impl Tx,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
    busy: &[String],
) -> Result<Vec<DeliveryRecord>> {
    let backend = tx.backend();
    let sql = format!(
        concat!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1, updated_at = $2 \
             WHERE state = 'pending' AND (event_id, target) IN (SELECT event_id, target FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= $2 AND target {} ORDER BY next_attempt_at LIMIT $3{}) \
             RETURNING ",
            delivery_columns!()
        ),
        backend.not_in_list(4),
        backend.skip_locked()
    );
    let busy: Vec<&str> = busy.iter().map(String::as_str).collect();
    let claimed: Vec<DeliveryRecord> =
        tx.fetch_all(&sql, &[lease_until.into(), now.into(), limit.into(), Param::Texts(&busy)]).await?;
    let mut secrets: HashMap<Uuid, Option<Vec<u8>>> = HashMap::new();
    let mut out = Vec::with_capacity(claimed.len());
    for mut d in claimed {
        if let Some(endpoint) = d.endpoint_id {
            if let Entry::Vacant(slot) = secrets.entry(endpoint) {
                let secret: Option<(Vec<u8>,)> =
                    tx.fetch_optional("SELECT secret FROM webhook_endpoints WHERE id = $1", &[endpoint.into()]).await?;
                slot.insert(secret.map(|(s,)| s));
            }
            let Some(Some(secret)) = secrets.get(&endpoint) else {
                // Its endpoint was deleted while the event was being recorded.
                tx.execute(
                    "UPDATE webhook_deliveries SET state = 'canceled', updated_at = $1 WHERE event_id = $2 AND target = $3",
                    &[now.into(), d.event_id.into(), d.target.as_str().into()],
                )
                .await?;
                continue;
            };
            d.secret = Some(SealedSecret(secret.clone()));
        }
        out.push(d);
    }
    out.sort_by(|a, b| (a.event_id, &a.target).cmp(&(b.event_id, &b.target)));
    Ok(out)
}

/// See [`crate::Store::record_deliveries`]. Results are applied by delivery (so that
/// concurrent calls lock rows in one order), keeping the given order of results for one.
pub(crate) async fn record(tx: &mut impl Tx, results: &[DeliveryResult]) -> Result<()> {
    let mut sorted: Vec<&DeliveryResult> = results.iter().collect();
    sorted.sort_by(|a, b| (a.event_id, &a.target).cmp(&(b.event_id, &b.target)));
    for r in sorted {
        let (event, target, attempt): (Param, Param, Param) =
            (r.event_id.into(), r.target.as_str().into(), r.attempt.into());
        let (state, next) = match r.outcome {
            DeliveryOutcome::Delivered => (DeliveryState::Delivered, None),
            DeliveryOutcome::Retry { next_attempt_at } => (DeliveryState::Pending, Some(next_attempt_at)),
            DeliveryOutcome::Failed => (DeliveryState::Failed, None),
            DeliveryOutcome::Release => {
                // The claim is lifted without counting the attempt.
                tx.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts - 1, next_attempt_at = $1 \
                     WHERE event_id = $2 AND target = $3 AND state = 'pending' AND attempts = $4",
                    &[r.record.at.into(), event, target, attempt],
                )
                .await?;
                continue;
            }
        };
        let status = r.record.status_code.map(i64::from);
        let finished_at = r.record.at.plus_millis(i64::from(r.record.duration_ms));
        let done = tx
            .execute(
                "UPDATE webhook_deliveries SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
                 last_status = $3, last_error = $4, updated_at = $5 \
                 WHERE event_id = $6 AND target = $7 AND state = 'pending' AND attempts = $8",
                &[
                    state.as_str().into(),
                    next.into(),
                    status.into(),
                    (&r.record.error).into(),
                    finished_at.into(),
                    event,
                    target,
                    attempt,
                ],
            )
            .await?;
        if done == 1 {
            tx.execute(
                "INSERT INTO webhook_attempts (event_id, target, attempt, at, status_code, error, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id, target, attempt) DO NOTHING",
                &[
                    event,
                    target,
                    attempt,
                    r.record.at.into(),
                    status.into(),
                    (&r.record.error).into(),
                    r.record.duration_ms.into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// See [`crate::Store::list_deliveries`].
pub(crate) async fn list_deliveries(
    tx: &mut impl Tx,
    account: AccountId,
    filter: &DeliveryFilter,
    page: PageRequest<EventId>,
) -> Result<Vec<DeliveryRecord>> {
    let before = page.before.map_or(Uuid::max(), |e| e.as_uuid());
    tx.fetch_all(
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE account_id = $1 AND event_id < $2 \
             AND ($3 IS NULL OR endpoint_id = $3) AND ($4 IS NULL OR message_id = $4) \
             AND ($5 IS NULL OR state = $5) ORDER BY event_id DESC, target LIMIT $6"
        ),
        &[
            account.into(),
            before.into(),
            filter.endpoint.into(),
            filter.message.into(),
            filter.state.map(|s| s.as_str()).into(),
            page.limit.min(1000).into(),
        ],
    )
    .await
}

/// See [`crate::Store::delivery_attempts`].
pub(crate) async fn attempts(tx: &mut impl Tx, event: EventId, target: &str) -> Result<Vec<AttemptRecord>> {
    let sql =
        format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE event_id = $1 AND target = $2 ORDER BY attempt");
    tx.fetch_all(&sql, &[event.into(), target.into()]).await
}

/// See [`crate::Store::message_deliveries`].
pub(crate) async fn of_message(tx: &mut impl Tx, message: MessageId) -> Result<Vec<DeliveryRecord>> {
    tx.fetch_all(
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries WHERE message_id = $1 ORDER BY event_id, target LIMIT 1000"
        ),
        &[message.into()],
    )
    .await
}

/// See [`crate::Store::resend_deliveries`].
pub(crate) async fn resend(
    tx: &mut impl Tx,
    event: EventId,
    endpoint: Option<Uuid>,
    now: Timestamp,
) -> Result<Vec<DeliveryRecord>> {
    let resent: Vec<DeliveryRecord> = tx
        .fetch_all(
            concat!(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $1, updated_at = $1, \
                 resent_at = $1, resent_after = attempts \
                 WHERE event_id = $2 AND state = 'failed' AND ($3 IS NULL OR endpoint_id = $3) RETURNING ",
                delivery_columns!()
            ),
            &[now.into(), event.into(), endpoint.into()],
        )
        .await?;
    if !resent.is_empty() {
        return Ok(resent);
    }
    let states: Vec<(String,)> = tx
        .fetch_all(
            "SELECT state FROM webhook_deliveries WHERE event_id = $1 AND ($2 IS NULL OR endpoint_id = $2) \
             ORDER BY target",
            &[event.into(), endpoint.into()],
        )
        .await?;
    if states.is_empty() {
        return Err(StorageError::NotFound);
    }
    let states: Vec<String> = states.into_iter().map(|(s,)| s).collect();
    Err(StorageError::Conflict(format!("only a failed delivery can be resent; this one is {}", states.join(", "))))
}
