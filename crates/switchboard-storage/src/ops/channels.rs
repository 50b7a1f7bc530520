//! Channels (a named sender of an account) and message templates with their versions.

use std::collections::{BTreeMap, HashMap};

use switchboard_domain::{AccountId, Timestamp};
use uuid::Uuid;

use crate::engine::Tx;
use crate::rows::{CHANNEL_SELECT, TemplateRow, VERSION_COLUMNS, corrupt};
use crate::{ChannelChange, ChannelRecord, Result, StorageError, TemplateRecord, TemplateVersionRecord};

/// See [`crate::Store::create_channel`].
pub(crate) async fn create(tx: &mut impl Tx, c: &ChannelRecord) -> Result<ChannelRecord> {
    tx.execute(
        "INSERT INTO channels (id, account_id, name, sender, active, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            c.id.into(),
            c.account_id.into(),
            c.name.as_str().into(),
            (&c.sender).into(),
            c.active.into(),
            c.created_at.into(),
        ],
    )
    .await?;
    get(tx, c.id).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::get_channel`].
pub(crate) async fn get(tx: &mut impl Tx, id: Uuid) -> Result<Option<ChannelRecord>> {
    tx.fetch_optional(&format!("{CHANNEL_SELECT} WHERE c.id = $1"), &[id.into()]).await
}

/// See [`crate::Store::list_channels`].
pub(crate) async fn list(tx: &mut impl Tx, account: AccountId) -> Result<Vec<ChannelRecord>> {
    tx.fetch_all(&format!("{CHANNEL_SELECT} WHERE c.account_id = $1 ORDER BY c.id LIMIT 1000"), &[account.into()]).await
}

/// See [`crate::Store::update_channel`].
pub(crate) async fn update(
    tx: &mut impl Tx,
    account: AccountId,
    id: Uuid,
    change: &ChannelChange,
) -> Result<ChannelRecord> {
    let changed = tx
        .execute(
            "UPDATE channels SET name = COALESCE($1, name), active = COALESCE($2, active) WHERE id = $3 AND account_id = $4",
            &[change.name.as_deref().into(), change.active.into(), id.into(), account.into()],
        )
        .await?;
    if changed != 1 {
        return Err(StorageError::NotFound);
    }
    get(tx, id).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::create_template`].
pub(crate) async fn create_template(tx: &mut impl Tx, account: AccountId, name: &str) -> Result<TemplateRecord> {
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO templates (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)",
        &[id.into(), account.into(), name.into(), Timestamp::now().into()],
    )
    .await?;
    get_template(tx, id).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::add_template_version`].
pub(crate) async fn add_version(
    tx: &mut impl Tx,
    account: AccountId,
    template: Uuid,
    texts: &BTreeMap<String, String>,
    active: bool,
) -> Result<TemplateVersionRecord> {
    let id = Uuid::now_v7();
    let texts = serde_json::to_string(texts).map_err(|e| corrupt("template texts", e))?;
    let added = tx
        .execute(
            "INSERT INTO template_versions (id, template_id, account_id, texts, active, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM templates WHERE id = $2 AND account_id = $3)",
            &[
                id.into(),
                template.into(),
                account.into(),
                texts.as_str().into(),
                active.into(),
                Timestamp::now().into(),
            ],
        )
        .await?;
    if added != 1 {
        return Err(StorageError::NotFound);
    }
    version(tx, id).await
}

/// See [`crate::Store::set_template_version_active`].
pub(crate) async fn set_version_active(
    tx: &mut impl Tx,
    account: AccountId,
    template: Uuid,
    version_id: Uuid,
    active: bool,
) -> Result<TemplateVersionRecord> {
    let changed = tx
        .execute(
            "UPDATE template_versions SET active = $1 WHERE id = $2 AND template_id = $3 AND account_id = $4",
            &[active.into(), version_id.into(), template.into(), account.into()],
        )
        .await?;
    if changed != 1 {
        return Err(StorageError::NotFound);
    }
    version(tx, version_id).await
}

async fn version(tx: &mut impl Tx, id: Uuid) -> Result<TemplateVersionRecord> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE id = $1");
    tx.fetch_optional(&sql, &[id.into()]).await?.ok_or(StorageError::NotFound)
}

/// See [`crate::Store::get_template`].
pub(crate) async fn get_template(tx: &mut impl Tx, id: Uuid) -> Result<Option<TemplateRecord>> {
    let templates =
        tx.fetch_all("SELECT id, account_id, name, created_at FROM templates WHERE id = $1", &[id.into()]).await?;
    let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE template_id = $1");
    let versions = tx.fetch_all(&sql, &[id.into()]).await?;
    Ok(assemble(templates, versions).pop())
}

/// See [`crate::Store::list_templates`].
pub(crate) async fn list_templates(tx: &mut impl Tx, account: AccountId) -> Result<Vec<TemplateRecord>> {
    let templates = tx
        .fetch_all(
            "SELECT id, account_id, name, created_at FROM templates WHERE account_id = $1 ORDER BY id LIMIT 1000",
            &[account.into()],
        )
        .await?;
    let sql = format!("SELECT {VERSION_COLUMNS} FROM template_versions WHERE account_id = $1");
    let versions = tx.fetch_all(&sql, &[account.into()]).await?;
    Ok(assemble(templates, versions))
}

/// Puts templates and their versions together, keeping the templates' order.
fn assemble(templates: Vec<TemplateRow>, versions: Vec<TemplateVersionRecord>) -> Vec<TemplateRecord> {
    let mut out: Vec<TemplateRecord> = templates
        .into_iter()
        .map(|t| TemplateRecord {
            id: t.id,
            account_id: t.account_id,
            name: t.name,
            created_at: t.created_at,
            versions: Vec::new(),
        })
        .collect();
    let index: HashMap<Uuid, usize> = out.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for v in versions {
        if let Some(&i) = index.get(&v.template_id) {
            out[i].versions.push(v);
        }
    }
    for t in &mut out {
        t.versions.sort_by_key(|v| v.id);
    }
    out
}
