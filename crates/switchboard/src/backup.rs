//! `switchboard backup` and `switchboard restore`, for the embedded SQLite database.
//!
//! A backup is made while the server serves: a read-only connection writes a consistent copy
//! with `VACUUM INTO` (see `switchboard_storage::snapshot`) into a private file (0600) beside
//! the destination, which is checked (`integrity_check`, schema, counts, balances against the
//! ledger), synced, and only then given the destination's name (never over an existing file).
//! The database alone is not enough to run from: API-key hashes are keyed, and webhook secrets
//! sealed, with the server keys, which are kept apart from it; `--with-keys` copies the key
//! file beside the backup (`FILE.keys`), and the output says where they are either way.
//!
//! A restore puts a backup in the database's place, for a server that is stopped: it takes the
//! database's lock (see [`crate::lock`]), so it refuses while a server runs on it and no
//! server starts meanwhile. It copies the backup into a private file beside the database,
//! checks that copy, and checks that the server keys in force (or those kept with the backup)
//! are the ones the database was made with, before it changes anything. The database it
//! replaces is kept, with its WAL, as `switchboard.db.before-restore-<time>`, and the copy
//! takes its name in one rename. Nothing else runs: the server applies any newer migrations
//! when it starts.
//!
//! PostgreSQL is backed up and restored with its own tools (`pg_dump`, `pg_restore`); both
//! commands refuse a PostgreSQL URL and say so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchboard_core::ServerKeys;
use switchboard_domain::Timestamp;
use switchboard_storage::snapshot::{self, Summary};

use crate::lock::{DatabaseLock, LockError};
use crate::{Settings, keys};

/// How long the copy waits for SQLite's locks (a WAL being recovered, say) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `switchboard backup --to FILE [--with-keys]`: writes a consistent copy of the embedded
/// database to `to`, which must not exist, while a server may be serving from it; with
/// `with_keys`, copies the key file to `FILE.keys` too. Returns what to tell the operator.
pub async fn backup(settings: &Settings, to: &Path, with_keys: bool) -> anyhow::Result<String> {
    let database = sqlite_database(settings, "backup")?;
    if !database.is_file() {
        bail!("there is no database at {} to back up", database.display());
    }
    refuse_existing(to)?;
    let keys_copy = with_keys.then(|| keys_beside(to));
    if let Some(copy) = &keys_copy {
        refuse_existing(copy)?;
        if settings.server_keys.is_some() {
            bail!(
                "--with-keys copies the key file, but the server keys come from the server_keys setting: keep \
                 that value with the backup instead, and leave out --with-keys"
            );
        }
        if !settings.keys_file().is_file() {
            bail!("--with-keys: there is no key file at {}", settings.keys_file().display());
        }
    }
    let dir = parent(to);
    if !dir.is_dir() {
        bail!("the folder {} does not exist", dir.display());
    }
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("backup");
    let partial = dir.join(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple()));
    create_private(&partial)?;

    let began = Timestamp::now();
    let clock = Instant::now();
    let (source, into) = (database.clone(), partial.clone());
    let made = tokio::task::spawn_blocking(move || -> anyhow::Result<Summary> {
        snapshot::copy(&source, &into, BUSY_TIMEOUT)
            .with_context(|| format!("copying {} into {}", source.display(), into.display()))?;
        let summary = snapshot::inspect(&into).context("checking the copy")?;
        std::fs::File::open(&into)?.sync_all().context("syncing the copy to disk")?;
        Ok(summary)
    })
    .await
    .context("the copy stopped")
    .and_then(|made| made)
    .and_then(|summary| {
        place_new(&partial, to)?;
        Ok(summary)
    });
    let summary = match made {
        Ok(summary) => summary,
        Err(e) => {
            remove_with_journal(&partial);
            return Err(e);
        }
    };
    let took = clock.elapsed();
    let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or_default();

    let mut out = format!(
        "backed up {} to {}: {} in {:.2} s\n\
         it holds every write the server answered before {began}, when the copy began (and perhaps some after)\n{}",
        database.display(),
        to.display(),
        human_bytes(size),
        took.as_secs_f64(),
        describe(&summary),
    );
    let in_force = match &keys_copy {
        Some(copy) => {
            let keys = keys::read_file(&settings.keys_file())?
                .with_context(|| format!("there is no key file at {}", settings.keys_file().display()))?;
            keys::write_file(copy, &keys)?;
            out += &format!(
                "server keys: copied {} to {} (mode 0600); keep the two files together, and as safe as the keys \
                 themselves: with both, anyone can open the webhook secrets and sign access tokens\n",
                settings.keys_file().display(),
                copy.display(),
            );
            Some(keys)
        }
        None => {
            let from = match &settings.server_keys {
                Some(_) => "the value of the server_keys setting".to_owned(),
                None => {
                    format!("a copy of the key file {} (or back up with --with-keys)", settings.keys_file().display())
                }
            };
            out += &format!(
                "server keys: not in this copy. API-key hashes are keyed, and webhook secrets sealed, with the \
                 server keys, which live apart from the database: without them the copy cannot check API keys or \
                 open webhook secrets. Keep {from} with this backup, as safely as the keys themselves\n"
            );
            keys::existing(settings).unwrap_or(None)
        }
    };
    if let Some(name) = in_force.and_then(|k| keys::differing_fingerprint(&k, &summary.key_fingerprints)) {
        out += &format!(
            "WARNING: the server keys in force are not the ones this copy was made with ({name} differs): did they \
             change while it was made? keep the keys it was made with\n"
        );
    }
    Ok(out)
}

/// `switchboard restore --from FILE [--keys FILE]`: puts the backup `from` in place of the
/// embedded database, refusing while a server uses it; with the server keys given (or kept
/// with the backup as `FILE.keys`), puts them in place of the key file. Returns what to tell
/// the operator.
pub async fn restore(settings: &Settings, from: &Path, keys_from: Option<&Path>) -> anyhow::Result<String> {
    let database = sqlite_database(settings, "restore")?;
    if !from.is_file() {
        bail!("{} is not a file", from.display());
    }
    let wal = with_suffix(from, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        bail!(
            "{} has a write-ahead log beside it ({}): it is a database in use, or a copy of one taken file by \
             file, which may lack its latest writes; make the backup with `switchboard backup`",
            from.display(),
            wal.display()
        );
    }
    if database.exists() && same_file(from, &database) {
        bail!("{} is the database itself", from.display());
    }
    let keys_from = match keys_from {
        Some(path) => Some(path.to_owned()),
        None => Some(keys_beside(from)).filter(|p| p.is_file()),
    };
    let backup_keys = match &keys_from {
        Some(path) => {
            Some(keys::read_file(path)?.with_context(|| format!("there is no key file at {}", path.display()))?)
        }
        None => None,
    };
    let dir = parent(&database).to_owned();
    crate::private_dir(&dir)?;
    let _lock = DatabaseLock::take(&database).map_err(|e| match e {
        LockError::InUse { .. } => anyhow::anyhow!("{e}: stop it before restoring; nothing was changed"),
        LockError::Io { .. } => anyhow::anyhow!(
            "{e}: without the lock nothing tells whether a server uses the database; nothing was changed"
        ),
    })?;

    let name = database.file_name().and_then(|n| n.to_str()).unwrap_or("switchboard.db").to_owned();
    let incoming = dir.join(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple()));
    let checked = copy_private(from, &incoming).and_then(|()| {
        let summary = snapshot::inspect(&incoming)?;
        std::fs::File::open(&incoming)?.sync_all()?;
        let plan = keys_plan(settings, &summary, backup_keys, keys_from.as_deref())?;
        Ok((summary, plan))
    });
    let (summary, plan) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            remove_with_journal(&incoming);
            return Err(e.context(format!("{} was not restored; nothing was changed", from.display())));
        }
    };

    let stamp = compact_time();
    let kept = match replace_database(&incoming, &database, &stamp) {
        Ok(kept) => kept,
        Err(e) => {
            remove_with_journal(&incoming);
            return Err(e);
        }
    };
    let mut out = format!("restored {} into {}\n{}", from.display(), database.display(), describe(&summary));
    if summary.schema_version < switchboard_storage::SCHEMA_VERSION {
        out += &format!(
            "its schema is version {}; the server upgrades it to {} when it starts\n",
            summary.schema_version,
            switchboard_storage::SCHEMA_VERSION
        );
    }
    if let Some(kept) = &kept {
        out += &format!("the database it replaces is kept as {}\n", kept.display());
    }
    out += &match plan {
        KeysPlan::Setting => match &keys_from {
            Some(unused) => format!(
                "server keys: the server_keys setting holds this database's keys; {} was not put in place\n",
                unused.display()
            ),
            None => "server keys: the server_keys setting holds this database's keys\n".to_owned(),
        },
        KeysPlan::Keep(path) => {
            format!("server keys: the key file {} is this database's; it is kept\n", path.display())
        }
        KeysPlan::Fresh => "server keys: this database records none; the server makes them on first start\n".to_owned(),
        KeysPlan::Place { path, keys, from, replaces } => {
            let aside = match replaces {
                true => {
                    let aside = with_suffix(&path, &format!(".before-restore-{stamp}"));
                    std::fs::rename(&path, &aside).with_context(|| {
                        format!("the database is restored, but {} could not be moved aside", path.display())
                    })?;
                    format!(" (the one there is kept as {})", aside.display())
                }
                false => String::new(),
            };
            keys::write_file(&path, &keys).context("the database is restored, but its server keys are not")?;
            format!("server keys: put {} at {}{aside}\n", from.display(), path.display())
        }
    };
    out += "nothing else was run: start the server to serve it\n";
    Ok(out)
}

/// The embedded database the settings name; PostgreSQL is refused, with its tools named.
fn sqlite_database(settings: &Settings, command: &str) -> anyhow::Result<PathBuf> {
    let url = settings.database();
    if !url.starts_with("sqlite:") {
        let (tool, extra) = match command {
            "backup" => ("pg_dump (pg_dump -Fc)", ""),
            _ => ("pg_restore", ", with every node stopped"),
        };
        bail!(
            "`switchboard {command}` is for the embedded SQLite database, and this installation uses PostgreSQL \
             ({}): use {tool}{extra}, and keep the server keys (the server_keys_file or the server_keys setting) \
             with the dump; see docs/OPERATIONS.md, Backup and restore",
            crate::settings::redact_url(&url)
        );
    }
    snapshot::sqlite_file(&url).with_context(|| format!("{url} names no database file"))
}

/// What was found in a copy, as lines for the operator.
fn describe(summary: &Summary) -> String {
    let newest = summary.newest_message.map(|t| format!(" (newest {t})")).unwrap_or_default();
    let balances = match summary.unbalanced_accounts.as_slice() {
        [] => "every balance agrees with the ledger".to_owned(),
        ids => format!(
            "WARNING: the balances of {} account(s) differ from their ledgers: {}",
            ids.len(),
            ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "integrity check ok; schema version {}; {} accounts, {} messages{newest}, {} ledger entries; {balances}\n",
        summary.schema_version, summary.accounts, summary.messages, summary.ledger_entries,
    )
}

/// Where the server keys of a restored database come from.
enum KeysPlan {
    /// The `server_keys` setting, which fits.
    Setting,
    /// The key file in place, which fits.
    Keep(PathBuf),
    /// None needed: the database records no keys (the server makes them on first start).
    Fresh,
    /// The keys kept with the backup, put at `path` (moving aside the key file there, if any).
    Place { path: PathBuf, keys: ServerKeys, from: PathBuf, replaces: bool },
}

/// Decides where the restored database's server keys come from, refusing (before anything is
/// changed) what would leave a server that does not start: keys in force that are not the
/// database's, and no keys for a database that records some.
fn keys_plan(
    settings: &Settings,
    summary: &Summary,
    backup_keys: Option<ServerKeys>,
    backup_keys_path: Option<&Path>,
) -> anyhow::Result<KeysPlan> {
    let recorded = &summary.key_fingerprints;
    let give = "give the key file kept with the backup with --keys";
    if settings.server_keys.is_some() {
        let Some(keys) = keys::existing(settings)? else { bail!("server_keys is set but holds no keys") };
        if let Some(name) = keys::differing_fingerprint(&keys, recorded) {
            bail!(
                "the server_keys setting holds other keys than this database was made with ({name} differs): set it to the keys kept with the backup"
            );
        }
        return Ok(KeysPlan::Setting);
    }
    let path = settings.keys_file();
    let current = keys::read_file(&path)?;
    match (current, backup_keys, backup_keys_path) {
        (Some(current), Some(keys), _) if current == keys => Ok(KeysPlan::Keep(path)),
        (current, Some(keys), Some(from)) => {
            if let Some(name) = keys::differing_fingerprint(&keys, recorded) {
                bail!("the server keys in {} are not this database's ({name} differs)", from.display());
            }
            Ok(KeysPlan::Place { path, keys, from: from.to_owned(), replaces: current.is_some() })
        }
        (Some(current), _, _) => match keys::differing_fingerprint(&current, recorded) {
            None => Ok(KeysPlan::Keep(path)),
            Some(name) => bail!(
                "the key file {} is not this database's ({name} differs): {give} (it takes that file's place, \
                 which is kept beside it)",
                path.display()
            ),
        },
        (None, _, _) if recorded.is_empty() => Ok(KeysPlan::Fresh),
        (None, _, _) => bail!(
            "this database was made with server keys, and there is no key file at {}: {give}, or put it there",
            path.display()
        ),
    }
}

/// Puts the checked copy `incoming` in the database's place: the database there (if any) is
/// kept as `<name>.before-restore-<stamp>` with its WAL, its shared-memory file is removed (it
/// describes that WAL), and the copy takes the name in one rename. Returns where the old
/// database is kept.
fn replace_database(incoming: &Path, database: &Path, stamp: &str) -> anyhow::Result<Option<PathBuf>> {
    let kept = with_suffix(database, &format!(".before-restore-{stamp}"));
    let had = database.exists();
    if had {
        // A second name for the old database, so that the database's name never goes
        // missing: the rename below replaces it at once.
        if std::fs::hard_link(database, &kept).is_err() {
            std::fs::rename(database, &kept)
                .with_context(|| format!("moving {} aside to {}", database.display(), kept.display()))?;
        }
        for suffix in ["-wal", "-journal"] {
            let file = with_suffix(database, suffix);
            if file.exists() {
                std::fs::rename(&file, with_suffix(&kept, suffix))
                    .with_context(|| format!("moving {} aside", file.display()))?;
            }
        }
    }
    let shm = with_suffix(database, "-shm");
    match std::fs::remove_file(&shm) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", shm.display())),
    }
    std::fs::rename(incoming, database)
        .with_context(|| format!("putting the copy in place of {}", database.display()))?;
    sync_dir(parent(database))?;
    Ok(had.then_some(kept))
}

/// Refuses a path that exists: a backup never overwrites a file.
fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        bail!("{} already exists: a backup never overwrites a file; name a new one", path.display());
    }
    Ok(())
}

/// Where `--with-keys` puts the key file: the backup's name with `.keys` added.
fn keys_beside(backup: &Path) -> PathBuf {
    with_suffix(backup, ".keys")
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The folder a file is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Makes a new, empty file readable by this user only; fails if it exists.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("creating {}", path.display()))
}

/// Copies `from` into the new private file `to`, synced.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut out = create_private(to)?;
    let mut source = std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    std::io::copy(&mut source, &mut out).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    out.flush()?;
    out.sync_all().with_context(|| format!("syncing {}", to.display()))
}

/// Gives the finished file `partial` the name `to`, never over an existing file (a hard link
/// fails if the name is taken; where links are not supported, the name is checked, then
/// renamed to), and syncs the folder.
fn place_new(partial: &Path, to: &Path) -> anyhow::Result<()> {
    match std::fs::hard_link(partial, to) {
        Ok(()) => std::fs::remove_file(partial).with_context(|| format!("removing {}", partial.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => refuse_existing(to)?,
        Err(_) => {
            refuse_existing(to)?;
            std::fs::rename(partial, to).with_context(|| format!("naming the copy {}", to.display()))?;
        }
    }
    sync_dir(parent(to))
}

/// Removes a file that did not become a backup, with any journal SQLite left beside it.
fn remove_with_journal(path: &Path) {
    for file in [path.to_owned(), with_suffix(path, "-journal")] {
        let _ = std::fs::remove_file(file);
    }
}

/// Syncs a folder, so that the names made or changed in it survive a crash.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether two paths name one file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The time now in UTC, for file names: `20260315T143005Z`.
fn compact_time() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A size for people: bytes, KiB, MiB or GiB.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} bytes"),
        _ => format!("{value:.1} {} ({n} bytes)", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB (3145728 bytes)");
        assert_eq!(keys_beside(Path::new("/b/x.db")), PathBuf::from("/b/x.db.keys"));
        assert_eq!(parent(Path::new("x.db")), Path::new("."));
        let stamp = compact_time();
        assert_eq!((stamp.len(), &stamp[8..9], &stamp[15..]), (16, "T", "Z"), "{stamp}");
    }

    fn summary(keys: Option<&ServerKeys>) -> Summary {
        Summary {
            schema_version: switchboard_storage::SCHEMA_VERSION,
            accounts: 0,
            messages: 0,
            ledger_entries: 0,
            unbalanced_accounts: Vec::new(),
            newest_message: None,
            key_fingerprints: keys.map(ServerKeys::fingerprints).unwrap_or_default(),
            legacy_server_secret: false,
        }
    }

    #[test]
    fn a_restore_never_leaves_keys_a_server_would_refuse() {
        let dir = std::env::temp_dir().join(format!("switchboard-restore-keys-{}", uuid::Uuid::new_v4().simple()));
        let settings = Settings { data_dir: dir.clone(), ..Settings::default() };
        let (ours, other) = (ServerKeys::generate(), ServerKeys::generate());
        let kept = dir.join("backup.db.keys");
        let plan = |s: &Settings, summary: &Summary, backup: Option<&ServerKeys>| {
            keys_plan(s, summary, backup.cloned(), backup.map(|_| kept.as_path()))
        };
        let refused = |r: anyhow::Result<KeysPlan>| r.err().map(|e| e.to_string()).unwrap_or_default();

        // No key file: a database that records none needs none; one that does needs its own.
        assert!(matches!(plan(&settings, &summary(None), None), Ok(KeysPlan::Fresh)));
        assert!(refused(plan(&settings, &summary(Some(&ours)), None)).contains("no key file"));
        assert!(refused(plan(&settings, &summary(Some(&ours)), Some(&other))).contains("keys_fingerprint differs"));
        assert!(matches!(
            plan(&settings, &summary(Some(&ours)), Some(&ours)),
            Ok(KeysPlan::Place { replaces: false, .. })
        ));

        // A key file in place: kept if it is the database's, replaced by the backup's if not.
        keys::write_file(&settings.keys_file(), &other).unwrap();
        assert!(refused(plan(&settings, &summary(Some(&ours)), None)).contains("--keys"));
        assert!(matches!(plan(&settings, &summary(Some(&other)), None), Ok(KeysPlan::Keep(_))));
        assert!(matches!(plan(&settings, &summary(Some(&other)), Some(&other)), Ok(KeysPlan::Keep(_))));
        assert!(matches!(
            plan(&settings, &summary(Some(&ours)), Some(&ours)),
            Ok(KeysPlan::Place { replaces: true, .. })
        ));

        // The server_keys setting must be the database's; nothing is put in place.
        let line = |k: &ServerKeys| k.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
        let set = Settings { server_keys: Some(line(&ours)), ..settings.clone() };
        assert!(matches!(plan(&set, &summary(Some(&ours)), Some(&other)), Ok(KeysPlan::Setting)));
        assert!(refused(plan(&set, &summary(Some(&other)), None)).contains("server_keys setting holds other keys"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn postgresql_is_left_to_its_own_tools() {
        let settings = Settings { database_url: "postgres://sb:hunter2@db/sb".into(), ..Settings::default() };
        let err = backup(&settings, Path::new("/nonexistent/x.db"), false).await.unwrap_err().to_string();
        assert!(err.contains("pg_dump") && err.contains("docs/OPERATIONS.md") && !err.contains("hunter2"), "{err}");
        let err = restore(&settings, Path::new("/nonexistent/x.db"), None).await.unwrap_err().to_string();
        assert!(err.contains("pg_restore") && err.contains("every node stopped"), "{err}");
    }
}
