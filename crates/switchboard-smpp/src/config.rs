//! Settings of an SMPP upstream, read from the server's TOML file, and the message-id forms.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

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
    /// the webpki roots, or against `tls_ca_file`). Off by default.
    #[serde(default)]
    pub tls: bool,
    /// A PEM file holding one or more CA certificates (`-----BEGIN CERTIFICATE-----` blocks;
    /// anything else in it is skipped). When set, the SMSC's certificate is checked against
    /// these CAs only, instead of the system's and the webpki roots; it needs `tls`. A relative
    /// path is taken from the working directory. Unset by default.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
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
    /// Most `deliver_sm` and `data_sm` (receipts and inbound messages) a session has waiting to
    /// be stored at once; 256 by default. Each is answered only once it is stored; past this
    /// many, the session reads no further request until one is. A part of a concatenated
    /// inbound message waiting for the other parts does not count (see
    /// `reassembly_timeout_ms`); the whole message counts as one once its last part comes.
    #[serde(default = "default_receive_window")]
    pub receive_window: u32,
    /// How long the parts of a concatenated inbound message wait for the rest, in
    /// milliseconds from the first part; 30000 by default. Parts are answered only once the
    /// whole message is stored; when the rest does not come in time, each part received is
    /// answered `ESME_RX_T_APPN` so that the SMSC delivers it again later.
    #[serde(default = "default_reassembly_timeout_ms")]
    pub reassembly_timeout_ms: u64,
    /// Most `submit_sm` a second over all sends of this upstream; no cap by default. When the
    /// SMSC throttles (`ESME_RTHROTTLED`, `ESME_RMSGQFUL`), the bind sends slower than this,
    /// at the rate it learns, and probes back up towards it.
    #[serde(default)]
    pub max_per_second: Option<u32>,
    /// How long every send on the bind pauses when the SMSC throttles, in milliseconds; 1000
    /// by default (Kannel's `throttling-sleep`).
    #[serde(default = "default_throttling_sleep_ms")]
    pub throttling_sleep_ms: u64,
    /// How long one message may wait at the bind (for room in the window, for a turn of the
    /// pace, through throttling) before it goes back to the queue unsent (without using up an
    /// attempt), in milliseconds; 15000 by default. With `response_timeout_ms` it must stay
    /// below the server's `provider_timeout_ms`.
    #[serde(default = "default_throttled_wait_ms")]
    pub throttled_wait_ms: u64,
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
fn default_receive_window() -> u32 {
    256
}
fn default_reassembly_timeout_ms() -> u64 {
    30_000
}
fn default_throttling_sleep_ms() -> u64 {
    1_000
}
fn default_throttled_wait_ms() -> u64 {
    15_000
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
            tls_ca_file: None,
            source_ton: 1,
            source_npi: 1,
            alphanumeric_source_ton: 5,
            alphanumeric_source_npi: 0,
            dest_ton: 1,
            dest_npi: 1,
            window: default_window(),
            receive_window: default_receive_window(),
            reassembly_timeout_ms: default_reassembly_timeout_ms(),
            max_per_second: None,
            throttling_sleep_ms: default_throttling_sleep_ms(),
            throttled_wait_ms: default_throttled_wait_ms(),
            enquire_link_secs: default_enquire_link_secs(),
            response_timeout_ms: default_response_timeout_ms(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            msg_id_format: MsgIdFormat::default(),
            registered_delivery: true,
        }
    }

    /// Checks what SMPP limits: field lengths (ASCII only), a window, a receive window and a
    /// rate of at least 1, non-zero timeouts, and `reconnect_min_ms <= reconnect_max_ms`; and,
    /// with `tls_ca_file`, that `tls` is on and that the file reads as PEM holding at least one
    /// usable CA certificate (so this reads the file).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_values()?;
        self.tls_ca_roots().map(drop)
    }

    /// The checks of [`SmppConfig::validate`] that need no file.
    pub(crate) fn validate_values(&self) -> Result<(), ConfigError> {
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
        if self.receive_window == 0 {
            return Err(ConfigError("receive_window must be at least 1".into()));
        }
        if self.reassembly_timeout_ms == 0 || self.reassembly_timeout_ms > 600_000 {
            return Err(ConfigError("reassembly_timeout_ms must be 1 to 600000".into()));
        }
        if self.max_per_second == Some(0) {
            return Err(ConfigError("max_per_second must be at least 1 (leave it out for no cap)".into()));
        }
        if self.throttling_sleep_ms == 0 || self.throttling_sleep_ms > 60_000 {
            return Err(ConfigError("throttling_sleep_ms must be 1 to 60000".into()));
        }
        if self.throttled_wait_ms > 3_600_000 {
            return Err(ConfigError("throttled_wait_ms must be at most 3600000".into()));
        }
        if self.response_timeout_ms == 0 || self.enquire_link_secs == 0 {
            return Err(ConfigError("response_timeout_ms and enquire_link_secs must not be 0".into()));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(ConfigError("reconnect_min_ms must be at least 1 and at most reconnect_max_ms".into()));
        }
        if self.tls_ca_file.is_some() && !self.tls {
            return Err(ConfigError("tls_ca_file needs tls = true".into()));
        }
        Ok(())
    }

    /// The CAs of `tls_ca_file`, read from the file now; `None` when it is not set.
    pub(crate) fn tls_ca_roots(&self) -> Result<Option<rustls::RootCertStore>, ConfigError> {
        self.tls_ca_file.as_deref().map(read_ca_file).transpose()
    }

    /// `host:port`.
    pub fn peer(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms.max(1))
    }

    pub(crate) fn reassembly_timeout(&self) -> Duration {
        Duration::from_millis(self.reassembly_timeout_ms.max(1))
    }
}

/// Reads the CA certificates of a PEM file: every `CERTIFICATE` block must be a usable CA
/// certificate, and there must be at least one.
fn read_ca_file(path: &Path) -> Result<rustls::RootCertStore, ConfigError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError(format!("tls_ca_file `{shown}` does not exist")),
        _ => ConfigError(format!("tls_ca_file `{shown}` cannot be read: {e}")),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| ConfigError(format!("tls_ca_file `{shown}` is not valid PEM: {e}")))?;
        roots.add(cert).map_err(|e| {
            ConfigError(format!("tls_ca_file `{shown}`: certificate {} is not a usable CA certificate: {e}", n + 1))
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigError(format!("tls_ca_file `{shown}` holds no PEM certificate")));
    }
    Ok(roots)
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
            .field("tls_ca_file", &self.tls_ca_file)
            .field("source_ton", &self.source_ton)
            .field("source_npi", &self.source_npi)
            .field("alphanumeric_source_ton", &self.alphanumeric_source_ton)
            .field("alphanumeric_source_npi", &self.alphanumeric_source_npi)
            .field("dest_ton", &self.dest_ton)
            .field("dest_npi", &self.dest_npi)
            .field("window", &self.window)
            .field("receive_window", &self.receive_window)
            .field("reassembly_timeout_ms", &self.reassembly_timeout_ms)
            .field("max_per_second", &self.max_per_second)
            .field("throttling_sleep_ms", &self.throttling_sleep_ms)
            .field("throttled_wait_ms", &self.throttled_wait_ms)
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
        assert_eq!((config.receive_window, config.reassembly_timeout_ms), (256, 30_000));
        assert!(config.registered_delivery && !config.tls && config.max_per_second.is_none());
        assert_eq!(config.tls_ca_file, None);
        assert!(config.tls_ca_roots().unwrap().is_none());
        config.validate().unwrap();
    }

    /// The PEM of a new self-signed CA certificate.
    fn ca_pem(name: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn file_with(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn toml_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let ca = file_with(&dir, "ca.pem", &ca_pem("Test CA"));
        let config: SmppConfig = toml::from_str(&format!(
            r#"
            name = "a"
            host = "smsc"
            port = 1
            system_id = "sys"
            password = "pw"
            system_type = "VMA"
            bind = "transmitter_receiver"
            tls = true
            tls_ca_file = '{}'
            source_ton = 2
            source_npi = 8
            alphanumeric_source_ton = 5
            alphanumeric_source_npi = 9
            dest_ton = 0
            dest_npi = 0
            window = 3
            receive_window = 4
            reassembly_timeout_ms = 5000
            max_per_second = 50
            enquire_link_secs = 5
            response_timeout_ms = 2000
            reconnect_min_ms = 10
            reconnect_max_ms = 20
            msg_id_format = "submit_decimal_receipt_hex"
            registered_delivery = false
            "#,
            ca.display()
        ))
        .unwrap();
        assert_eq!(config.bind, BindMode::TransmitterReceiver);
        assert_eq!(config.tls_ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(config.tls_ca_roots().unwrap().map(|roots| roots.len()), Some(1));
        assert_eq!(config.msg_id_format, MsgIdFormat::SubmitDecimalReceiptHex);
        assert_eq!((config.receive_window, config.reassembly_timeout_ms), (4, 5_000));
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
    fn debug_shows_the_ca_file() {
        let config = SmppConfig {
            tls: true,
            tls_ca_file: Some("/etc/smsc/ca.pem".into()),
            ..SmppConfig::new("a", "h", 1, "sys", "hunter2")
        };
        let shown = format!("{config:?}");
        assert!(shown.contains(r#"tls_ca_file: Some("/etc/smsc/ca.pem")"#), "{shown}");
    }

    #[test]
    fn a_ca_file_may_hold_several_certificates_and_other_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let both = format!("{}\n{key}\n{}", ca_pem("First CA"), ca_pem("Second CA"));
        let config = SmppConfig {
            tls: true,
            tls_ca_file: Some(file_with(&dir, "cas.pem", &both)),
            ..SmppConfig::new("a", "h", 1, "sys", "pw")
        };
        config.validate().unwrap();
        assert_eq!(config.tls_ca_roots().unwrap().map(|roots| roots.len()), Some(2));
    }

    #[test]
    fn a_bad_ca_file_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let with_file = |path: PathBuf| SmppConfig {
            tls: true,
            tls_ca_file: Some(path),
            ..SmppConfig::new("a", "h", 1, "sys", "pw")
        };
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let cases = [
            (dir.path().join("missing.pem"), "does not exist"),
            // A directory cannot be read as a file.
            (dir.path().to_path_buf(), "cannot be read"),
            (file_with(&dir, "empty.pem", ""), "holds no PEM certificate"),
            (file_with(&dir, "text.pem", "not a certificate\n"), "holds no PEM certificate"),
            (file_with(&dir, "key.pem", &key), "holds no PEM certificate"),
            (file_with(&dir, "cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"), "is not valid PEM"),
            (file_with(&dir, "garbage.pem", garbage), "certificate 1 is not a usable CA certificate"),
        ];
        for (path, expected) in cases {
            let config = with_file(path.clone());
            let ConfigError(message) = config.validate().unwrap_err();
            assert!(message.starts_with("tls_ca_file `"), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(expected), "{expected}: {message}");
            assert!(config.tls_ca_roots().is_err());
            // The checks that read no file pass.
            config.validate_values().unwrap();
        }
    }

    #[test]
    fn a_ca_file_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let config = SmppConfig {
            tls_ca_file: Some(file_with(&dir, "ca.pem", &ca_pem("Test CA"))),
            ..SmppConfig::new("a", "h", 1, "sys", "pw")
        };
        assert_eq!(config.validate(), Err(ConfigError("tls_ca_file needs tls = true".into())));
        SmppConfig { tls: true, ..config }.validate().unwrap();
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
            SmppConfig { reassembly_timeout_ms: 0, ..ok.clone() },
            SmppConfig { reassembly_timeout_ms: 600_001, ..ok.clone() },
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
