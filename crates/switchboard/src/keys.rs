//! Where the server's keys come from: the `server_keys` setting, or the key file beside the
//! data (`<data_dir>/server-keys`, mode 0600), made on first start. An installation whose
//! database still holds the server secret of an older version moves it into a new key file
//! (see `ServerKeys::upgrade`), and the core then removes it from the database.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use switchboard_core::ServerKeys;
use switchboard_storage::Store;

use crate::Settings;

/// The server's keys for `build`: from the settings, from the key file, or made now (a new
/// installation, or one upgraded from a version that kept its secret in the database).
pub async fn load(settings: &Settings, store: &dyn Store) -> anyhow::Result<ServerKeys> {
    if let Some(value) = &settings.server_keys {
        let text = crate::secret_value(value).context("server_keys")?;
        return ServerKeys::parse(&text).context("server_keys");
    }
    let path = settings.keys_file();
    if let Some(keys) = read_file(&path)? {
        return Ok(keys);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let keys = match store.legacy_server_secret().await? {
        Some(legacy) => {
            tracing::info!(path = %path.display(), "moving the server secret out of the database into the key file");
            ServerKeys::upgrade(legacy, now)
        }
        None if store.keys_fingerprint().await?.is_some() => bail!(
            "the server keys are missing: this database was set up with keys that are not at {} (copy the key \
             file of the installation there, or set server_keys)",
            path.display()
        ),
        None => {
            tracing::info!(path = %path.display(), "generated the server keys; back this file up apart from the database");
            ServerKeys::generate()
        }
    };
    write_file(&path, &keys)?;
    Ok(keys)
}

/// Reads a key file, tightening its mode to 0600 if it is looser; `None` if there is none.
pub fn read_file(path: &Path) -> anyhow::Result<Option<ServerKeys>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the key file {}", path.display())),
    };
    tighten(path)?;
    ServerKeys::parse(&text).with_context(|| format!("the key file {}", path.display())).map(Some)
}

#[cfg(unix)]
fn tighten(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the key file was readable by others; made it 0600");
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

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

/// `switchboard keys rotate`: adds a new key that signs and seals from the next start and
/// retires the current one, removing keys retired more than `grace_hours` ago. With the
/// `server_keys` setting, prints the new keys for the operator to set on every node;
/// otherwise rewrites the key file. Returns what to tell the operator.
pub fn rotate(settings: &Settings, grace_hours: u64) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let grace = i64::try_from(grace_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    if let Some(value) = &settings.server_keys {
        let mut keys = ServerKeys::parse(&crate::secret_value(value).context("server_keys")?).context("server_keys")?;
        let id = keys.rotate(now, grace);
        let line = keys.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
        return Ok(format!(
            "{line}\n# key {id} added: set server_keys to the line above on every node, then restart them\n"
        ));
    }
    let path = settings.keys_file();
    let Some(mut keys) = read_file(&path)? else {
        bail!("there is no key file at {} (the server makes it on first start)", path.display());
    };
    let id = keys.rotate(now, grace);
    write_file(&path, &keys)?;
    Ok(format!(
        "key {id} added to {}; it signs and seals once the server restarts (every node, with the same file); \
         keys now: {:?}\n",
        path.display(),
        keys.ids()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_private_and_rotates_in_place() {
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
        let settings = Settings { server_keys_file: Some(path.clone()), ..Settings::default() };
        let said = rotate(&settings, 48).unwrap();
        assert!(said.contains("key 2 added"), "{said}");
        let rotated = read_file(&path).unwrap().unwrap();
        assert_eq!(rotated.ids(), vec![2, 1]);
        assert_eq!(rotated.hasher().hash("x"), keys.hasher().hash("x"));
        // Nothing but the key file is left in the folder.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(read_file(&dir.join("absent")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_from_the_settings_rotate_to_a_line_to_set() {
        let keys = ServerKeys::generate();
        let line = keys.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
        let settings = Settings { server_keys: Some(line), ..Settings::default() };
        let said = rotate(&settings, 0).unwrap();
        let first = said.lines().next().unwrap();
        assert_eq!(ServerKeys::parse(first).unwrap().ids(), vec![2, 1]);
    }
}
