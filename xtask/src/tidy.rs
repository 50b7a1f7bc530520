//! Source hygiene and layering: every Rust file opens with a `//!` doc, no leftover
//! `todo!`/`dbg!`, and each crate depends only on the crates its layer may use.

use std::path::Path;

use anyhow::bail;

/// Which of our crates each crate may depend on (normal dependencies).
const LAYERS: &[(&str, &[&str])] = &[
    ("switchboard-domain", &[]),
    ("switchboard-validation", &["switchboard-domain"]),
    ("switchboard-ledger", &["switchboard-domain"]),
    ("switchboard-provider", &["switchboard-domain"]),
    // Destination lookups: rules over the domain's values, no I/O of their own.
    ("switchboard-lookup", &["switchboard-domain"]),
    // The records as plain data: what crosses the core, free of SQL drivers and I/O.
    ("switchboard-records", &["switchboard-domain", "switchboard-ledger"]),
    ("switchboard-storage", &["switchboard-domain", "switchboard-ledger", "switchboard-records"]),
    // Signatures and sealing: a leaf, free of storage and SQL drivers.
    ("switchboard-signing", &["switchboard-domain"]),
    ("switchboard-webhooks", &["switchboard-domain", "switchboard-signing", "switchboard-storage"]),
    ("switchboard-smpp", &["switchboard-domain", "switchboard-provider"]),
    ("switchboard-http-upstream", &["switchboard-domain", "switchboard-provider", "switchboard-signing"]),
    (
        "switchboard-core",
        &[
            "switchboard-domain",
            "switchboard-validation",
            "switchboard-ledger",
            "switchboard-lookup",
            "switchboard-provider",
            "switchboard-records",
            "switchboard-storage",
            "switchboard-signing",
        ],
    ),
    // Above the core, no storage: the API reads records from `switchboard-records`.
    (
        "switchboard-api",
        &[
            "switchboard-domain",
            "switchboard-validation",
            "switchboard-ledger",
            "switchboard-records",
            "switchboard-provider",
            "switchboard-webhooks",
            "switchboard-http-upstream",
            "switchboard-core",
        ],
    ),
    // The web console: a front end beside the API, over the core; no storage, and not the API.
    (
        "switchboard-console",
        &[
            "switchboard-domain",
            "switchboard-validation",
            "switchboard-ledger",
            "switchboard-records",
            "switchboard-provider",
            "switchboard-core",
        ],
    ),
    // The SMPP server: a front end beside the API, over the core.
    (
        "switchboard-smpp-server",
        &[
            "switchboard-domain",
            "switchboard-validation",
            "switchboard-records",
            "switchboard-smpp",
            "switchboard-core",
        ],
    ),
    // The published client: the wire shapes, and the webhook verification (without sealing).
    ("switchboard-client", &["switchboard-domain", "switchboard-signing"]),
];

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        walk(&root.join(dir), &mut |path| check_file(root, path, &mut problems));
    }
    for (krate, allowed) in LAYERS {
        let manifest = std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))?;
        for dep in normal_dependencies(&manifest) {
            if dep.starts_with("switchboard") && dep != *krate && !allowed.contains(&dep.as_str()) {
                problems.push(format!("{krate} must not depend on {dep} (see docs/ARCHITECTURE.md)"));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("tidy: ok");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        bail!("tidy found {} problem(s)", problems.len())
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            walk(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            f(&path);
        }
    }
}

fn check_file(root: &Path, path: &Path, problems: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
    if !text.trim_start().starts_with("//!") {
        problems.push(format!("{shown}: must start with a //! doc comment"));
    }
    // Spelled in pieces so that this file does not match itself.
    let banned: Vec<String> = ["todo", "unimplemented", "dbg"].iter().map(|m| format!("{m}!(")).collect();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for banned in &banned {
            if code.contains(banned.as_str()) {
                problems.push(format!("{shown}:{}: {banned} left in", n + 1));
            }
        }
    }
}

/// Names in `[dependencies]` (not dev- or build-dependencies).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            // `name.workspace = true` and `name = { … }` alike.
            let name = name.trim().trim_matches('"');
            deps.push(name.split('.').next().unwrap_or(name).to_owned());
        }
    }
    deps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_normal_dependencies_only() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nswitchboard-domain.workspace = true\nserde = { workspace = true }\n\
                        \"switchboard-core\" = \"1\"\n\n[dev-dependencies]\nswitchboard-api.workspace = true\n";
        assert_eq!(normal_dependencies(manifest), vec!["switchboard-domain", "serde", "switchboard-core"]);
    }

    #[test]
    fn nothing_above_the_core_may_use_the_store() {
        for (krate, allowed) in LAYERS {
            if ["switchboard-api", "switchboard-client"].contains(krate) {
                assert!(!allowed.contains(&"switchboard-storage"), "{krate} may depend on switchboard-storage");
            }
        }
    }
}
