//! The files the server keeps its secrets in are its user's alone: the data folder 0700, the
//! SQLite database with its `-wal` and `-shm` files and the operator-token file 0600, on a
//! first start and after the start of an installation whose files others could read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, free_port, temp_dir};

/// A server process, killed when dropped (also when a test fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with its defaults for the data folder: the database and a generated operator
/// token in `dir`, under the common umask 022 (which left the database 0644).
fn start(dir: &Path, port: u16) -> Server {
    let child = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" serve")
        .arg(BIN)
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATA_DIR", dir)
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_OPERATOR_TOKEN")
        .env_remove("SWITCHBOARD_CONFIG")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
        .spawn()
        .expect("start the binary");
    Server(child)
}

async fn ready(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server did not start");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_its_secrets_are_private() {
    let parent = temp_dir("modes");
    let dir = parent.join("data");
    let files = ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm", "operator-token"];

    let port = free_port();
    let server = start(&dir, port);
    ready(port).await;
    assert_eq!(mode(&dir), 0o700, "a new data folder");
    for file in files {
        assert_eq!(mode(&dir.join(file)), 0o600, "a new {file}");
    }
    drop(server);

    // An installation from before: everything readable by all.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in files {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = free_port();
    let server = start(&dir, port);
    ready(port).await;
    assert_eq!(mode(&dir), 0o700, "an existing data folder is tightened");
    for file in files {
        assert_eq!(mode(&dir.join(file)), 0o600, "an existing {file} is tightened");
    }
    drop(server);
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(log.contains("tightened the permissions"), "the change is logged: {log}");
    std::fs::remove_dir_all(parent).ok();
}
