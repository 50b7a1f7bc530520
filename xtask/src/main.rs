//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: what CI runs: format check, clippy with `-D warnings`, tidy, and the whole test
//!   suite (cargo nextest when installed, else cargo test).
//! - `bench [--requests N] [--concurrency 16,64]`: builds the release server, starts it on
//!   embedded SQLite with the simulator, drives a bounded load, prints and saves the figures
//!   with the CPU each side used. The bench commands (and `load`) run from an optimised build
//!   of this tool, so that its load generator costs the server as little as it can.
//! - `bench-kannel [--requests N] [--concurrency 16,64]`: the SMPP scenario of `bench` run
//!   against an installed Kannel, for comparison on the same machine.
//! - `dist [--profile NAME] [--check]`: builds the Debian package of the server into
//!   `target/dist/`; with `--check`, installs it on this machine, runs the service as its unit
//!   says, sends a message through it and removes it again (root only).
//! - `openapi [--check]`: writes `docs/openapi.json` from the server, or checks it is current.
//! - `tidy`: source hygiene and the crate layering rules.

mod bench;
mod dist;
mod kannel;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("bench" | "bench-kannel" | "load") if cfg!(debug_assertions) => optimised(&root, &args),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("bench-kannel") => kannel::run(&root, &args[1..]),
        Some("dist") => dist::run(&root, &args[1..]),
        Some("load") => bench::load(&args[1..]),
        Some("openapi") => openapi(&root, args.iter().any(|a| a == "--check")),
        Some("tidy") => tidy::run(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | bench [--requests N] [--concurrency 16,64] | bench-kannel | dist [--profile NAME] [--check] | openapi [--check] | tidy>"
            );
            bail!("unknown command")
        }
    }
}

/// Runs a bench command from an optimised build of this tool. Its load generator and fake
/// peers share the machine with the server they drive: built for debugging they took 35-55 %
/// of a core, which came out of the server's share (and a CPU-bound peer's, such as Kannel's).
fn optimised(root: &Path, args: &[String]) -> anyhow::Result<()> {
    run(cargo().args(["build", "--release", "-p", "xtask", "--bin", "xtask"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let status =
        Command::new(target.join("release/xtask")).args(args).status().context("running the optimised xtask")?;
    if !status.success() {
        bail!("{} failed with {status}", args[0]);
    }
    Ok(())
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, failing if it fails.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci(root: &Path) -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    tidy::run(root)?;
    if std::env::var_os("CI").is_some() && std::env::var_os("TEST_POSTGRES_URL").is_none() {
        bail!("CI is set but TEST_POSTGRES_URL is not: the PostgreSQL tests must run under CI");
    }
    let python = match python_tools(root) {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_some() => return Err(e.context("preparing the Python tools environment")),
        Err(e) => {
            eprintln!("warning: the Mudbase SDK and OpenAPI contract tests will be skipped: {e:#}");
            None
        }
    };
    let nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut tests = cargo();
    if nextest {
        tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        tests.args(["test", "--workspace", "--no-fail-fast"]);
    }
    if let Some(python) = python {
        tests.env("TEST_PYTHON", python);
    }
    run(&mut tests)?;
    // nextest runs no doc tests: the published crates' examples in their docs and READMEs.
    if nextest {
        run(cargo().args(["test", "--workspace", "--doc"]))?;
    }
    Ok(())
}

/// The pinned Python packages the independent-implementation tests drive: Mudbase's published
/// SDK, the OpenAPI tools of the contract tests (a validator of the document, a fuzzer that
/// checks responses against it, and a client generator), and the reference Standard Webhooks
/// library that checks the webhook signatures; and smpplib, an independent SMPP client that
/// binds to the SMPP server.
const PYTHON_TOOLS: [(&str, &str); 6] = [
    ("mudbase", "1.3.17"),
    ("openapi-spec-validator", "0.9.0"),
    ("schemathesis", "4.32.5"),
    ("openapi-python-client", "0.29.1"),
    ("standardwebhooks", "1.3.0"),
    ("smpplib", "2.2.4"),
];

/// A Python virtual environment in `target/` with the pinned tools, made (or completed) on
/// first use.
fn python_tools(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let venv = root.join("target/python-tools-venv");
    let python = venv.join("bin/python");
    let check = PYTHON_TOOLS
        .iter()
        .map(|(name, version)| format!("assert m.version('{name}') == '{version}'"))
        .collect::<Vec<_>>()
        .join("; ");
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", &format!("import importlib.metadata as m; {check}")])
            .output()
            .is_ok_and(|o| o.status.success());
    if !installed {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&system).arg("-m").arg("venv").arg("--clear").arg(&venv))?;
        let pins: Vec<String> = PYTHON_TOOLS.iter().map(|(name, version)| format!("{name}=={version}")).collect();
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(&pins))?;
    }
    Ok(python)
}

fn openapi(root: &Path, check: bool) -> anyhow::Result<()> {
    let output = cargo()
        .args(["run", "--quiet", "-p", "switchboard", "--", "openapi"])
        .output()
        .context("running switchboard openapi")?;
    if !output.status.success() {
        bail!("switchboard openapi failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let path = root.join("docs/openapi.json");
    let current = std::fs::read(&path).unwrap_or_default();
    if current == output.stdout {
        eprintln!("docs/openapi.json is up to date");
        return Ok(());
    }
    if check {
        bail!("docs/openapi.json is stale: run `cargo xtask openapi` and commit it");
    }
    std::fs::write(&path, &output.stdout)?;
    eprintln!("wrote docs/openapi.json");
    Ok(())
}
