//! The layers settings come from, merged key by key: built-in defaults, then the TOML file,
//! then `SWITCHBOARD_*` environment variables, then `--set` flags.
//!
//! No setting is listed by hand: the names are those of [`Settings`]'s fields (its defaults,
//! serialized), an environment variable is `SWITCHBOARD_` and the name in capitals (a nested
//! key joined with `__`), and a value's type is its default's. A variable or flag that names no
//! setting refuses to start, listing the names there are.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

use super::Settings;

/// The prefix of every settings variable.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Variables with the prefix that are not settings: the settings file's path, the address the
/// admin and send commands call, and the send command's API key and profile.
pub const NOT_SETTINGS: &[&str] =
    &["SWITCHBOARD_CONFIG", "SWITCHBOARD_SERVER", "SWITCHBOARD_API_KEY", "SWITCHBOARD_PROFILE"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The settings file.
    File,
    /// An environment variable, by its name.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(name) => f.write_str(name),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// The merged settings, with where each top-level value came from.
#[derive(Debug)]
pub struct Layered {
    /// Every setting by name; `null` where an optional setting is unset.
    pub values: Map<String, Value>,
    /// Where each top-level setting's value came from.
    pub sources: BTreeMap<String, Source>,
}

/// The built-in defaults as a tree: every setting's name, with its default (`null` when unset).
fn defaults() -> Map<String, Value> {
    match serde_json::to_value(Settings::default()) {
        Ok(Value::Object(mut map)) => {
            // Tables given only in the file: no default to serialize.
            map.insert("upstreams".into(), Value::Array(Vec::new()));
            map.insert("routes".into(), Value::Array(Vec::new()));
            map
        }
        _ => unreachable!("Settings serialize as a map"),
    }
}

/// Every setting's name, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = defaults().keys().cloned().collect();
    names.sort();
    names
}

impl Layered {
    /// Merges the layers: `file` (its text and its path, for messages), the environment's
    /// `SWITCHBOARD_*` variables, and `flags` (`name` or `nested.name`, and the value).
    pub fn merge(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut values = defaults();
        let mut sources: BTreeMap<String, Source> = values.keys().map(|k| (k.clone(), Source::Default)).collect();
        if let Some((path, text)) = file {
            // Parsing into the settings first gives serde's messages, with line and column,
            // for unknown keys and wrong types.
            toml::from_str::<Settings>(text).with_context(|| format!("parsing {}", path.display()))?;
            let table: toml::Table = toml::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
            for (key, value) in table {
                let value = serde_json::to_value(value).with_context(|| format!("{}: {key}", path.display()))?;
                merge_into(values.entry(key.clone()).or_insert(Value::Null), value);
                sources.insert(key, Source::File);
            }
        }
        let mut unknown = Vec::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !NOT_SETTINGS.contains(&&**name))
            .collect();
        env.sort();
        for (name, text) in env {
            let path: Vec<String> = name[ENV_PREFIX.len()..].to_lowercase().split("__").map(str::to_owned).collect();
            match set(&mut values, &path, &text) {
                Ok(()) => {
                    sources.insert(path[0].clone(), Source::Env(name));
                }
                Err(Unset::Unknown) => unknown.push(name),
                Err(Unset::Invalid(why)) => bail!("{name}: {why}"),
            }
        }
        if !unknown.is_empty() {
            let known: Vec<String> = names().iter().map(|n| format!("{ENV_PREFIX}{}", n.to_uppercase())).collect();
            let guesses: Vec<String> = unknown
                .iter()
                .map(|name| match closest(name, &known) {
                    Some(guess) => format!("{name} (did you mean {guess}?)"),
                    None => name.clone(),
                })
                .collect();
            bail!(
                "unknown environment variable{} {}: no setting has that name. The settings' variables are {}; \
                 nested keys join with __; {} are read too",
                if unknown.len() == 1 { "" } else { "s" },
                guesses.join(", "),
                known.join(", "),
                NOT_SETTINGS.join(" and ")
            );
        }
        for (key, text) in flags {
            let path: Vec<String> = key.split(['.']).map(str::to_owned).collect();
            match set(&mut values, &path, text) {
                Ok(()) => {
                    sources.insert(path[0].clone(), Source::Flag);
                }
                Err(Unset::Unknown) => {
                    let known = names();
                    let guess = closest(key, &known).map(|g| format!(" (did you mean {g}?)")).unwrap_or_default();
                    bail!("--set {key}: no setting has that name{guess}. The settings are {}", known.join(", "));
                }
                Err(Unset::Invalid(why)) => bail!("--set {key}: {why}"),
            }
        }
        Ok(Self { values, sources })
    }

    /// The settings these values make (not yet validated).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        serde_json::from_value(Value::Object(self.values.clone())).map_err(|e| anyhow!("settings: {e}"))
    }
}

/// Why a value could not be set.
enum Unset {
    /// No setting has that name.
    Unknown,
    /// The text is not a value of the setting's type.
    Invalid(String),
}

/// Sets the value at `path` from `text`, typed as the default there is.
fn set(values: &mut Map<String, Value>, path: &[String], text: &str) -> Result<(), Unset> {
    let (first, rest) = path.split_first().ok_or(Unset::Unknown)?;
    let slot = values.get_mut(first.as_str()).ok_or(Unset::Unknown)?;
    if rest.is_empty() {
        *slot = typed(slot, text).map_err(Unset::Invalid)?;
        return Ok(());
    }
    match slot {
        Value::Object(inner) => set(inner, rest, text),
        _ => Err(Unset::Unknown),
    }
}

/// `text` read as a value of the type `like` has.
fn typed(like: &Value, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    match like {
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Bool(_) => match trimmed {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("cannot parse {text:?}: expected true or false")),
        },
        Value::Number(n) if n.is_f64() => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("cannot parse {text:?}: expected a number")),
        Value::Number(_) => trimmed
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<i64>().map(Value::from))
            .map_err(|_| format!("cannot parse {text:?}: expected a whole number")),
        // A list: comma-separated words, or a TOML array (`[{ kind = "smpp", … }]`) for a list
        // of tables.
        Value::Array(_) if trimmed.starts_with('[') => {
            let table: toml::Table = toml::from_str(&format!("value = {trimmed}"))
                .map_err(|e| format!("cannot parse {text:?} as a TOML array: {}", e.message()))?;
            serde_json::to_value(&table["value"]).map_err(|e| e.to_string())
        }
        Value::Array(_) => Ok(Value::Array(
            trimmed.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| Value::String(t.to_owned())).collect(),
        )),
        Value::Object(_) => {
            Err("it is a table: set its keys one by one (SWITCHBOARD_TABLE__KEY, --set table.key=…)".into())
        }
        // An optional setting, unset by default: its text, which the settings read as their
        // field's type (optional numbers accept text).
        Value::Null => Ok(Value::String(text.to_owned())),
    }
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge_into(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                merge_into(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

/// The known name nearest to `name`, when it is near enough to be a likely misspelling.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(&name.to_uppercase(), &k.to_uppercase()), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance between two ASCII-ish names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Names of settings (and keys of upstream tables) whose values are secrets.
fn is_secret(key: &str) -> bool {
    key == "server_keys" || key.ends_with("token") || key.ends_with("secret") || key.ends_with("password")
}

/// `value` with secrets hidden: a secret's text becomes `<hidden>` unless it is a reference to
/// an environment variable (`env:NAME`), and a database URL loses its password.
pub fn masked(key: &str, value: &Value) -> Value {
    match value {
        Value::String(text) if key == "database_url" => Value::String(super::redact_url(text)),
        Value::String(text) if is_secret(key) && !text.starts_with("env:") => Value::String("<hidden>".into()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), masked(k, v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| masked(key, v)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn every_setting_has_a_variable_and_a_flag() {
        // One value per setting, of its type: each must be taken from the environment and from
        // a flag, so no setting needs listing by hand.
        let sample = |default: &Value| match default {
            Value::String(_) | Value::Null => "7".to_owned(),
            Value::Bool(_) => "true".to_owned(),
            Value::Number(_) => "7".to_owned(),
            Value::Array(_) => "a,b".to_owned(),
            Value::Object(_) => unreachable!("tables are set key by key"),
        };
        let defaults = defaults();
        let (tables, plain): (Vec<_>, Vec<_>) =
            defaults.iter().partition(|(k, _)| ["upstreams", "routes"].contains(&k.as_str()));
        assert_eq!(tables.len(), 2);
        // Every leaf: a plain setting, or a key of a nested table (`smpp_server.window`).
        let leaves: Vec<(Vec<&str>, &Value)> = plain
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Object(table) => table.iter().map(|(k2, v2)| (vec![k.as_str(), k2.as_str()], v2)).collect(),
                _ => vec![(vec![k.as_str()], *v)],
            })
            .collect();
        let vars: Vec<(String, String)> = leaves
            .iter()
            .map(|(path, v)| (format!("SWITCHBOARD_{}", path.join("__").to_uppercase()), sample(v)))
            .collect();
        let layered = Layered::merge(None, vars, &[]).unwrap();
        // Lists of words need words; the rest must read as their field's type.
        let settings = layered.settings().unwrap();
        assert_eq!(settings.commit_max_batch, 7);
        assert_eq!(settings.max_connections, Some(7));
        assert_eq!(settings.sender_max_per_second, Some(7));
        assert_eq!(settings.operator_token.as_deref(), Some("7"));
        assert_eq!(settings.blocked_terms, ["a", "b"]);
        assert!(settings.dispatcher);
        assert_eq!((settings.smpp_server.enabled, settings.smpp_server.window), (true, 7));
        assert!(layered.sources.values().filter(|s| matches!(s, Source::Env(_))).count() == plain.len());

        let flags: Vec<(String, String)> = leaves.iter().map(|(path, v)| (path.join("."), sample(v))).collect();
        let settings = Layered::merge(None, Vec::new(), &flags).unwrap().settings().unwrap();
        assert_eq!((settings.webhook_poll_ms, settings.max_connections_per_address), (7, Some(7)));
        assert_eq!(settings.smpp_server.deliver_window, 7);
    }

    #[test]
    fn layers_apply_in_order() {
        let file = "listen = \"127.0.0.1:1\"\nsent_wait_ms = 1\nwebhook_poll_ms = 1\n";
        let layered = Layered::merge(
            Some((Path::new("s.toml"), file)),
            env(&[("SWITCHBOARD_SENT_WAIT_MS", "2"), ("SWITCHBOARD_WEBHOOK_POLL_MS", "2"), ("PATH", "/bin")]),
            &[("webhook_poll_ms".into(), "3".into())],
        )
        .unwrap();
        let s = layered.settings().unwrap();
        assert_eq!((s.listen.as_str(), s.sent_wait_ms, s.webhook_poll_ms), ("127.0.0.1:1", 2, 3));
        assert_eq!(layered.sources["listen"], Source::File);
        assert_eq!(layered.sources["sent_wait_ms"], Source::Env("SWITCHBOARD_SENT_WAIT_MS".into()));
        assert_eq!(layered.sources["webhook_poll_ms"], Source::Flag);
        assert_eq!(layered.sources["max_body_bytes"], Source::Default);
    }

    #[test]
    fn unknown_variables_and_flags_are_refused_with_the_names() {
        let err = Layered::merge(None, env(&[("SWITCHBOARD_LISEN", "x")]), &[]).unwrap_err().to_string();
        assert!(err.contains("SWITCHBOARD_LISEN (did you mean SWITCHBOARD_LISTEN?)"), "{err}");
        assert!(err.contains("SWITCHBOARD_WEBHOOK_POLL_MS") && err.contains("SWITCHBOARD_CONFIG"), "{err}");
        // Variables that are not settings pass.
        Layered::merge(None, env(&[("SWITCHBOARD_CONFIG", "x"), ("SWITCHBOARD_SERVER", "y")]), &[]).unwrap();
        let err = Layered::merge(None, Vec::new(), &[("webhok_poll_ms".into(), "1".into())]).unwrap_err().to_string();
        assert!(err.contains("did you mean webhook_poll_ms?"), "{err}");
        // A nested key under a setting that is no table.
        assert!(Layered::merge(None, env(&[("SWITCHBOARD_LISTEN__PORT", "1")]), &[]).is_err());
    }

    #[test]
    fn values_are_read_as_their_settings_type() {
        let err = Layered::merge(None, env(&[("SWITCHBOARD_MAX_BODY_BYTES", "lots")]), &[]).unwrap_err().to_string();
        assert_eq!(err, "SWITCHBOARD_MAX_BODY_BYTES: cannot parse \"lots\": expected a whole number");
        let err = Layered::merge(None, env(&[("SWITCHBOARD_DISPATCHER", "maybe")]), &[]).unwrap_err().to_string();
        assert!(err.contains("expected true or false"), "{err}");
        let err = Layered::merge(None, env(&[("SWITCHBOARD_MAX_CONNECTIONS", "many")]), &[]).unwrap().settings();
        assert!(err.unwrap_err().to_string().contains("many"));
        // A list of tables from one variable, as a TOML array.
        let upstreams = r#"[{ kind = "simulator", name = "sim", max_per_second = 5 }]"#;
        let s = Layered::merge(None, env(&[("SWITCHBOARD_UPSTREAMS", upstreams)]), &[]).unwrap().settings().unwrap();
        assert_eq!(s.upstreams.len(), 1);
        assert_eq!(s.upstreams[0].name(), "sim");
    }

    #[test]
    fn files_are_checked_with_their_lines() {
        let err =
            Layered::merge(Some((Path::new("s.toml"), "listen = \"x\"\nlisen = 1\n")), Vec::new(), &[]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("s.toml") && text.contains("line 2") && text.contains("`lisen`"), "{text}");
        assert!(text.contains("expected one of"), "{text}");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(masked("operator_token", &Value::from("abc")), Value::from("<hidden>"));
        assert_eq!(masked("metrics_token", &Value::from("env:METRICS")), Value::from("env:METRICS"));
        assert_eq!(masked("database_url", &Value::from("postgres://u:pw@h/d")), Value::from("postgres://u:***@h/d"));
        let upstream = serde_json::json!([{ "name": "smsc", "password": "pw", "key_secret": "s" }]);
        assert_eq!(
            masked("upstreams", &upstream),
            serde_json::json!([{ "name": "smsc", "password": "<hidden>", "key_secret": "<hidden>" }])
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
