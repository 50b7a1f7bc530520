//! Settings of an SMPP upstream, read from the server's TOML file, and the message-id forms.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How the upstream binds to the SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One `bind_transceiver` session that both sends and receives.
    #[default]
    Transceiver,
    /// Two sessions: a `bind_transmitter` one that sends and a `bind_receiver` one that takes
    /// receipts and inbound messages.
    TransmitterReceiver,
}

/// How the ids in `submit_sm_resp` and in delivery receipts relate, as Kannel's `msg-id-type`.
///
/// Both sides are brought to one canonical text ([`MsgIdFormat::submit_id`],
/// [`MsgIdFormat::receipt_id`]) so that a receipt names the id its submission was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgIdFormat {
    /// Both sides carry the same text. Canonical form: trimmed; an id made only of hex digits
    /// loses its leading zeros and is lower-cased (so `000A1f` and `a1F` match).
    #[default]
    AsIs,
    /// `submit_sm_resp` gives the id in hex, receipts in decimal. Canonical form: decimal.
    SubmitHexReceiptDecimal,
    /// `submit_sm_resp` gives the id in decimal, receipts in hex. Canonical form: decimal.
    SubmitDecimalReceiptHex,
}

impl MsgIdFormat {
    /// The canonical form of an id from a `submit_sm_resp`, or from a receipt's
    /// `receipted_message_id` TLV (which SMPP defines as the id the submission was given).
    pub fn submit_id(self, id: &str) -> String {
        let radix = match self {
            MsgIdFormat::AsIs => None,
            MsgIdFormat::SubmitHexReceiptDecimal => Some(16),
            MsgIdFormat::SubmitDecimalReceiptHex => Some(10),
        };
        canonical_id(id, radix)
    }

    /// The canonical form of the `id:` field of a receipt's text.
    pub fn receipt_id(self, id: &str) -> String {
        let radix = match self {
            MsgIdFormat::AsIs => None,
            MsgIdFormat::SubmitHexReceiptDecimal => Some(10),
            MsgIdFormat::SubmitDecimalReceiptHex => Some(16),
        };
        canonical_id(id, radix)
    }
}

/// Reads `id` in `radix` and writes it in decimal; ids that do not parse (or with no radix)
/// keep their text, trimmed, and lose leading zeros and case when they are all hex digits.
fn canonical_id(id: &str, radix: Option<u32>) -> String {
    let id = id.trim();
    if let Some(radix) = radix
        && !id.is_empty()
        && id.chars().all(|c| c.is_digit(radix))
        && let Ok(n) = u128::from_str_radix(id, radix)
    {
        return n.to_string();
    }
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let trimmed = id.trim_start_matches('0');
        let kept = if trimmed.is_empty() { "0" } else { trimmed };
        return kept.to_ascii_lowercase();
    }
    id.to_owned()
}

/// The settings of one SMPP upstream. `Debug` shows the password as `***`.
///
/// In TOML, only `name`, `host`, `port`, `system_id` and `password` are required:
///
/// ```toml
/// name = "carrier-a"
/// host = "smsc.example.net"
/// port = 2775
/// system_id = "switchboard"
/// password = "secret"
/// window = 20
/// max_per_second = 100
/// msg_id_format = "submit_hex_receipt_decimal"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct SmppConfig {
    /// Its name in logs, metrics and the admin API.
    pub name: String,
    /// The SMSC's host name or address.
    pub host: String,
    /// The SMSC's port.
    pub port: u16,
    /// The account (`system_id`, at most 15 characters).
    pub system_id: String,
    /// The password (at most 8 characters).
    pub password: String,
    /// The `system_type` sent in binds (at most 12 characters); empty by default.
    #[serde(default)]
    pub system_type: String,
    /// One transceiver session (the default) or a transmitter and a receiver.
    #[serde(default)]
    pub bind: BindMode,
    /// Whether to connect with TLS (the SMSC's certificate is checked against the system's and
    /// the webpki roots). Off by default.
    #[serde(default)]
    pub tls: bool,
    /// TON of numeric senders; 1 (international) by default.
    #[serde(default = "one")]
    pub source_ton: u8,
    /// NPI of numeric senders; 1 (ISDN/E.164) by default.
    #[serde(default = "one")]
    pub source_npi: u8,
    /// TON of alphanumeric senders; 5 (alphanumeric) by default.
    #[serde(default = "five")]
    pub alphanumeric_source_ton: u8,
    /// NPI of alphanumeric senders; 0 (unknown) by default.
    #[serde(default)]
    pub alphanumeric_source_npi: u8,
    /// TON of destinations; 1 by default.
    #[serde(default = "one")]
    pub dest_ton: u8,
    /// NPI of destinations; 1 by default.
    #[serde(default = "one")]
    pub dest_npi: u8,
    /// Most `submit_sm` waiting for their answer at once on a bind; 10 by default.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Most `submit_sm` a second over all sends of this upstream; no cap by default.
    #[serde(default)]
    pub max_per_second: Option<u32>,
    /// Seconds between `enquire_link`s; 30 by default.
    #[serde(default = "default_enquire_link_secs")]
    pub enquire_link_secs: u64,
    /// How long to wait for any answer of the SMSC (bind, submit, enquire_link), in
    /// milliseconds; 10000 by default.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// First wait before binding again after a failure or a drop, in milliseconds; 1000 by
    /// default. The wait doubles after each failed attempt, up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest wait between bind attempts, in milliseconds; 30000 by default.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// How submission ids and receipt ids relate; `as_is` by default.
    #[serde(default)]
    pub msg_id_format: MsgIdFormat,
    /// Whether to ask for delivery receipts; on by default.
    #[serde(default = "yes")]
    pub registered_delivery: bool,
}

fn one() -> u8 {
    1
}
fn five() -> u8 {
    5
}
fn yes() -> bool {
    true
}
fn default_window() -> u32 {
    10
}
fn default_enquire_link_secs() -> u64 {
    30
}
fn default_response_timeout_ms() -> u64 {
    10_000
}
fn default_reconnect_min_ms() -> u64 {
    1_000
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}

/// A setting the SMSC could never accept, found by [`SmppConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl SmppConfig {
    /// Settings with the required fields and every other one at its default.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        system_id: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            port,
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            bind: BindMode::default(),
            tls: false,
            source_ton: 1,
            source_npi: 1,
            alphanumeric_source_ton: 5,
            alphanumeric_source_npi: 0,
            dest_ton: 1,
            dest_npi: 1,
            window: default_window(),
            max_per_second: None,
            enquire_link_secs: default_enquire_link_secs(),
            response_timeout_ms: default_response_timeout_ms(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            msg_id_format: MsgIdFormat::default(),
            registered_delivery: true,
        }
    }

    /// Checks what SMPP limits: field lengths (ASCII only), a window and a rate of at least 1,
    /// non-zero timeouts, and `reconnect_min_ms <= reconnect_max_ms`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |name: &str, value: &str, max: usize, required: bool| {
            if required && value.is_empty() {
                return Err(ConfigError(format!("{name} must not be empty")));
            }
            if !value.is_ascii() || value.contains('\0') {
                return Err(ConfigError(format!("{name} must be ASCII text")));
            }
            if value.len() > max {
                return Err(ConfigError(format!("{name} is longer than SMPP allows ({max} characters)")));
            }
            Ok(())
        };
        field("host", &self.host, 253, true)?;
        field("system_id", &self.system_id, 15, true)?;
        field("password", &self.password, 8, false)?;
        field("system_type", &self.system_type, 12, false)?;
        if self.window == 0 {
            return Err(ConfigError("window must be at least 1".into()));
        }
        if self.max_per_second == Some(0) {
            return Err(ConfigError("max_per_second must be at least 1 (leave it out for no cap)".into()));
        }
        if self.response_timeout_ms == 0 || self.enquire_link_secs == 0 {
            return Err(ConfigError("response_timeout_ms and enquire_link_secs must not be 0".into()));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(ConfigError("reconnect_min_ms must be at least 1 and at most reconnect_max_ms".into()));
        }
        Ok(())
    }

    /// `host:port`.
    pub fn peer(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms.max(1))
    }
}

impl fmt::Debug for SmppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("password", &"***")
            .field("system_type", &self.system_type)
            .field("bind", &self.bind)
            .field("tls", &self.tls)
            .field("source_ton", &self.source_ton)
            .field("source_npi", &self.source_npi)
            .field("alphanumeric_source_ton", &self.alphanumeric_source_ton)
            .field("alphanumeric_source_npi", &self.alphanumeric_source_npi)
            .field("dest_ton", &self.dest_ton)
            .field("dest_npi", &self.dest_npi)
            .field("window", &self.window)
            .field("max_per_second", &self.max_per_second)
            .field("enquire_link_secs", &self.enquire_link_secs)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("reconnect_min_ms", &self.reconnect_min_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("msg_id_format", &self.msg_id_format)
            .field("registered_delivery", &self.registered_delivery)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_defaults() {
        let config: SmppConfig = toml::from_str(
            r#"
            name = "a"
            host = "127.0.0.1"
            port = 2775
            system_id = "sys"
            password = "pw"
            "#,
        )
        .unwrap();
        assert_eq!(config, SmppConfig::new("a", "127.0.0.1", 2775, "sys", "pw"));
        assert_eq!(config.bind, BindMode::Transceiver);
        assert_eq!((config.window, config.response_timeout_ms, config.enquire_link_secs), (10, 10_000, 30));
        assert_eq!((config.alphanumeric_source_ton, config.alphanumeric_source_npi), (5, 0));
        assert!(config.registered_delivery && !config.tls && config.max_per_second.is_none());
        config.validate().unwrap();
    }

    #[test]
    fn toml_every_field() {
        let config: SmppConfig = toml::from_str(
            r#"
            name = "a"
            host = "smsc"
            port = 1
            system_id = "sys"
            password = "pw"
            system_type = "VMA"
            bind = "transmitter_receiver"
            tls = true
            source_ton = 2
            source_npi = 8
            alphanumeric_source_ton = 5
            alphanumeric_source_npi = 9
            dest_ton = 0
            dest_npi = 0
            window = 3
            max_per_second = 50
            enquire_link_secs = 5
            response_timeout_ms = 2000
            reconnect_min_ms = 10
            reconnect_max_ms = 20
            msg_id_format = "submit_decimal_receipt_hex"
            registered_delivery = false
            "#,
        )
        .unwrap();
        assert_eq!(config.bind, BindMode::TransmitterReceiver);
        assert_eq!(config.msg_id_format, MsgIdFormat::SubmitDecimalReceiptHex);
        assert_eq!(config.max_per_second, Some(50));
        assert!(config.tls && !config.registered_delivery);
        config.validate().unwrap();
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", SmppConfig::new("a", "h", 1, "sys", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn validation() {
        let ok = SmppConfig::new("a", "h", 1, "sys", "pw");
        assert!(ok.validate().is_ok());
        for bad in [
            SmppConfig { password: "123456789".into(), ..ok.clone() },
            SmppConfig { system_id: "1234567890123456".into(), ..ok.clone() },
            SmppConfig { system_id: String::new(), ..ok.clone() },
            SmppConfig { window: 0, ..ok.clone() },
            SmppConfig { max_per_second: Some(0), ..ok.clone() },
            SmppConfig { reconnect_min_ms: 5, reconnect_max_ms: 4, ..ok.clone() },
            SmppConfig { system_type: "é".into(), ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_as_is() {
        let f = MsgIdFormat::AsIs;
        assert_eq!(f.submit_id(" 0000A1f "), "a1f");
        assert_eq!(f.receipt_id("a1F"), "a1f");
        assert_eq!(f.submit_id("000123"), "123");
        assert_eq!(f.submit_id("0000"), "0");
        assert_eq!(f.submit_id("msg-42"), "msg-42");
    }

    #[test]
    fn ids_across_bases() {
        let f = MsgIdFormat::SubmitHexReceiptDecimal;
        assert_eq!(f.submit_id("1A2B"), "6699");
        assert_eq!(f.receipt_id("0006699"), "6699");
        let f = MsgIdFormat::SubmitDecimalReceiptHex;
        assert_eq!(f.submit_id("6699"), "6699");
        assert_eq!(f.receipt_id("00001a2b"), "6699");
        // Ids that do not read in the expected base keep their text.
        assert_eq!(f.receipt_id("xyz-1"), "xyz-1");
        assert_eq!(MsgIdFormat::SubmitHexReceiptDecimal.receipt_id("1a"), "1a");
    }
}
