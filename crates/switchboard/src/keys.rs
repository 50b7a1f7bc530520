//! Where the server's keys come from: the `server_keys` setting, or the key file beside the
//! data (`<data_dir>/server-keys`, mode 0600), made on first start. An installation whose
//! database still holds the server secret of an older version moves it into a new key file
//! (see `ServerKeys::upgrade`), and the core then removes it from the database.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use switchboard_core::ServerKeys;
use switchboard_storage::{Backend, Store};

use crate::Settings;

/// The server's keys for `build`: from the settings, from the key file, or made now (a new
/// installation, or one upgraded from a version that kept its secret in the database). On
/// PostgreSQL, whose nodes must share the keys, where they live must be said
/// (`server_keys_file` or `server_keys`): a data folder need not outlive a node.
pub async fn load(settings: &Settings, store: &dyn Store) -> anyhow::Result<ServerKeys> {
    let legacy = store.legacy_server_secret().await?;
    let keys = match existing(settings)? {
        Some(keys) => keys,
        None => {
            let path = settings.keys_file();
            if store.backend() == Backend::Postgres && settings.server_keys_file.is_none() {
                bail!(
                    "on PostgreSQL, say where the server keys live: set server_keys_file to a file that every node \
                     reads and that is kept (and backed up) apart from the database, or set server_keys; it is made \
                     there on first start"
                );
            }
            let keys = match &legacy {
                Some(legacy) => {
                    tracing::info!(path = %path.display(), "moving the server secret out of the database into the key file");
                    ServerKeys::upgrade(legacy.clone(), now())
                }
                None if !store.key_fingerprints().await?.is_empty() => bail!(
                    "the server keys are missing: this database was set up with keys that are not at {} (copy the \
                     key file of the installation there, or set server_keys)",
                    path.display()
                ),
                None => {
                    tracing::info!(path = %path.display(), "generated the server keys; back this file up apart from the database");
                    ServerKeys::generate()
                }
            };
            write_file(&path, &keys)?;
            keys
        }
    };
    if let Some(legacy) = legacy
        && !keys.holds_legacy(&legacy)
    {
        bail!(
            "this database still holds the server secret of an older version, and the server keys given do not: \
             start once without server_keys and without a key file at {} so that the secret moves into a new key \
             file, and use that file",
            settings.keys_file().display()
        );
    }
    Ok(keys)
}

/// The keys the settings name: `server_keys`, or the key file if there is one.
pub(crate) fn existing(settings: &Settings) -> anyhow::Result<Option<ServerKeys>> {
    if let Some(value) = &settings.server_keys {
        let text = crate::secret_value(value).context("server_keys")?;
        return ServerKeys::parse(&text).context("server_keys").map(Some);
    }
    read_file(&settings.keys_file())
}

/// The name of the first of `keys`' fingerprints that differs from the one a database
/// recorded under that name (see `ServerKeys::fingerprints`), if any: a server refuses to
/// start on that database with those keys. A database that recorded none takes any keys.
pub fn differing_fingerprint(keys: &ServerKeys, recorded: &[(String, Vec<u8>)]) -> Option<String> {
    keys.fingerprints()
        .into_iter()
        .find(|(name, fingerprint)| recorded.iter().any(|(n, f)| n == name && f != fingerprint))
        .map(|(name, _)| name)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Reads a key file, tightening its mode to 0600 if it is looser; `None` if there is none.
pub fn read_file(path: &Path) -> anyhow::Result<Option<ServerKeys>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the key file {}", path.display())),
    };
    tighten(path);
    ServerKeys::parse(&text).with_context(|| format!("the key file {}", path.display())).map(Some)
}

/// Restricts a key file readable by others to its owner, or warns when that cannot be done (a
/// read-only mounted secret, say): the keys are still read.
#[cfg(unix)]
fn tighten(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(mode) = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777) else { return };
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the key file was readable by others; made it 0600")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e, "the key file is readable by others and could not be restricted")
        }
    }
}

#[cfg(not(unix))]
fn tighten(_: &Path) {}

/// Writes a key file whole or not at all: a private temporary file beside it, synced, then
/// renamed over it, and the folder synced, so that a crash leaves the old keys or the new.
pub fn write_file(path: &Path, keys: &ServerKeys) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("server-keys");
    let temporary = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
    let written = (|| -> anyhow::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&temporary)?;
        f.write_all(keys.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing the key file {}", path.display()))
}

/// `switchboard keys rotate`: with `stage`, adds a key that every node given the new keys
/// verifies and opens with (and signs notifications with) while the current key still signs;
/// without, makes the staged key (a new one if none is staged) the one that signs and seals
/// from the next start, and retires the current one. Keys retired more than `grace_hours` ago
/// are removed unless a stored webhook secret is still sealed under them (the database is read
/// to tell). With the `server_keys` setting, prints the new keys for the operator to set on
/// every node; otherwise rewrites the key file. Returns what to tell the operator.
pub async fn rotate(settings: &Settings, grace_hours: u64, stage: bool) -> anyhow::Result<String> {
    let grace = i64::try_from(grace_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    let Some(mut keys) = existing(settings)? else {
        bail!("there is no key file at {} (the server makes it on first start)", settings.keys_file().display());
    };
    let (id, what) = if stage {
        (
            keys.stage(),
            "staged: every node verifies and opens with it once restarted with these keys; rotate again \
                        (without --stage) to make it sign",
        )
    } else {
        let in_use = sealing_keys(settings).await?;
        (
            keys.rotate(now(), grace, &in_use),
            "added: it signs and seals once the server restarts (every node, with the same keys)",
        )
    };
    if settings.server_keys.is_some() {
        let line = keys.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
        return Ok(format!("{line}\n# key {id} {what}: set server_keys to the line above on every node\n"));
    }
    let path = settings.keys_file();
    write_file(&path, &keys)?;
    Ok(format!("key {id} {what}; {} now holds keys {:?}\n", path.display(), keys.ids()))
}

/// The ids of the keys that stored webhook secrets are sealed under.
async fn sealing_keys(settings: &Settings) -> anyhow::Result<Vec<u32>> {
    let database = settings.database();
    let store = switchboard_storage::connect(&database, &switchboard_storage::ConnectOptions::default())
        .await
        .with_context(|| {
            format!("opening the database {} to see which keys seal secrets", crate::settings::redact_url(&database))
        })?;
    let mut ids: Vec<u32> = store
        .sealed_webhook_secrets()
        .await?
        .iter()
        .map(|(_, sealed)| switchboard_core::sealed_key_id(sealed))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_file_is_private_and_rotates_in_place() {
        let dir = std::env::temp_dir().join(format!("switchboard-keys-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("server-keys");
        let keys = ServerKeys::generate();
        write_file(&path, &keys).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        assert_eq!(read_file(&path).unwrap(), Some(keys.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "tightened");
        }
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let settings =
            Settings { server_keys_file: Some(path.clone()), data_dir: dir.join("data"), ..Settings::default() };
        let said = rotate(&settings, 48, true).await.unwrap();
        assert!(said.contains("key 2 staged"), "{said}");
        assert_eq!(read_file(&path).unwrap().unwrap().staged(), Some(2));
        let said = rotate(&settings, 48, false).await.unwrap();
        assert!(said.contains("key 2 added"), "{said}");
        let rotated = read_file(&path).unwrap().unwrap();
        assert_eq!(rotated.ids(), vec![2, 1]);
        assert_eq!(rotated.hasher().hash("x"), keys.hasher().hash("x"));
        // Nothing but the key file (and the database read to see which keys seal secrets) is
        // left in the folder.
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            name == "server-keys" || name == "data"
        }));
        assert_eq!(read_file(&dir.join("absent")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn keys_from_the_settings_rotate_to_a_line_to_set() {
        let keys = ServerKeys::generate();
        let line = keys.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
        let dir = std::env::temp_dir().join(format!("switchboard-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = Settings { server_keys: Some(line), data_dir: dir.clone(), ..Settings::default() };
        let said = rotate(&settings, 0, false).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let first = said.lines().next().unwrap();
        assert_eq!(ServerKeys::parse(first).unwrap().ids(), vec![2, 1]);
    }
}
