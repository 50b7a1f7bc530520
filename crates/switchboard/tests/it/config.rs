//! Configuration that fails loudly: `config check`, unknown names refused, and an unreachable
//! database named with its cause.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{BIN, temp_dir};

/// The binary with none of this process's `SWITCHBOARD_*` variables.
fn switchboard(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD_") {
            command.env_remove(name);
        }
    }
    command
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn config_check_shows_the_layers_with_secrets_hidden() {
    let dir = temp_dir("config-check");
    let file = dir.join("switchboard.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nsent_wait_ms = 5\nblocked_terms = [\"casino\"]\n").unwrap();
    let output = switchboard(&["config", "check", "--config", file.to_str().unwrap(), "--set", "webhook_poll_ms=100"])
        .env("SWITCHBOARD_SENT_WAIT_MS", "7")
        .env("SWITCHBOARD_OPERATOR_TOKEN", "a-very-secret-operator-token")
        .env("SWITCHBOARD_DATABASE_URL", "postgres://sb:hunter2@db.example/sb")
        .output()
        .unwrap();
    let (out, err) = text(&output);
    assert!(output.status.success(), "{out}\n{err}");
    for line in [
        "listen = \"127.0.0.1:9999\"  # file",
        "blocked_terms = [\"casino\"]  # file",
        "sent_wait_ms = 7  # SWITCHBOARD_SENT_WAIT_MS",
        "webhook_poll_ms = 100  # flag",
        "operator_token = \"<hidden>\"  # SWITCHBOARD_OPERATOR_TOKEN",
        "database_url = \"postgres://sb:***@db.example/sb\"  # SWITCHBOARD_DATABASE_URL",
        "max_body_bytes = 65536  # default",
        "# metrics_token is unset (default)",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains("a-very-secret") && !out.contains("hunter2"), "{out}");
    assert!(err.contains("the settings are valid"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_check_fails_on_any_problem() {
    let dir = temp_dir("config-bad");
    let file = dir.join("switchboard.toml");
    // An unknown key in the file: named with its line and the valid names.
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nwebhok_poll_ms = 5\n").unwrap();
    let output = switchboard(&["config", "check", "--config", file.to_str().unwrap()]).output().unwrap();
    let (_, err) = text(&output);
    assert!(!output.status.success());
    assert!(err.contains("line 2") && err.contains("unknown field `webhok_poll_ms`"), "{err}");
    assert!(err.contains("expected one of") && err.contains("`webhook_poll_ms`"), "{err}");

    // A value that cannot work.
    let output = switchboard(&["config", "check", "--set", "sent_wait_ms=999999"]).output().unwrap();
    assert!(!output.status.success());
    assert!(text(&output).1.contains("sent_wait_ms must not exceed request_timeout_ms"));

    // An upstream whose password comes from a variable that is not set.
    let upstreams = r#"[{ kind = "smpp", name = "smsc", host = "127.0.0.1", port = 2775, system_id = "sys", password = "env:SB_TEST_UNSET_PASSWORD" }]"#;
    let output = switchboard(&["config", "check"]).env("SWITCHBOARD_UPSTREAMS", upstreams).output().unwrap();
    let (out, err) = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(err.contains("upstream smsc") && err.contains("SB_TEST_UNSET_PASSWORD"), "{err}");
    assert!(out.contains("password = \"env:SB_TEST_UNSET_PASSWORD\""), "{out}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn serve_refuses_an_unknown_variable_with_the_names_there_are() {
    let dir = temp_dir("config-env");
    let output = switchboard(&["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_WEBHOK_POLL_MS", "100")
        .output()
        .unwrap();
    let (_, err) = text(&output);
    assert!(!output.status.success());
    assert!(err.contains("unknown environment variable SWITCHBOARD_WEBHOK_POLL_MS"), "{err}");
    assert!(err.contains("did you mean SWITCHBOARD_WEBHOOK_POLL_MS?"), "{err}");
    assert!(err.contains("SWITCHBOARD_LISTEN") && err.contains("SWITCHBOARD_DATA_DIR"), "{err}");
    // Nothing was made: the server refused before touching the data folder.
    assert!(!dir.join("switchboard.db").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unreachable_database_is_named_within_seconds() {
    let dir = temp_dir("config-pg");
    let started = Instant::now();
    let output = switchboard(&["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_DATABASE_URL", "postgres://postgres:pw@127.0.0.1:1/switchboard")
        .output()
        .unwrap();
    let took = started.elapsed();
    let (_, err) = text(&output);
    assert!(!output.status.success());
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(err.contains("127.0.0.1:1 refused the connection"), "{err}");
    assert!(!err.contains("pw@"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
