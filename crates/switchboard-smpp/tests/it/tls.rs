//! The SMPP upstream over TLS against the fake SMSC serving TLS, with a private CA made for
//! each test.

use std::io::Write;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use switchboard_domain::Encoding;
use switchboard_provider::{Provider, ReceiptStatus, event_channel};
use switchboard_smpp::testing::{FakeSmsc, FakeSmscOptions, ReceiptOptions, tls_server_config};
use switchboard_smpp::{SmppConfig, SmppUpstream};
use tempfile::NamedTempFile;

use super::{config_for, detail, message, next_receipt, started, wait_until};

/// A CA made for a test, which signs server certificates.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { pem, issuer: Issuer::new(params, key) }
    }

    /// TLS settings for the fake SMSC: a certificate for `host` signed by this CA.
    fn server_tls(&self, host: &str) -> Arc<rustls::ServerConfig> {
        let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        tls_server_config(vec![cert.der().clone()], key).unwrap()
    }

    /// A temporary file holding the CA's certificate in PEM, removed when dropped.
    fn pem_file(&self) -> NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
        file.write_all(self.pem.as_bytes()).unwrap();
        file.flush().unwrap();
        file
    }
}

/// Settings that connect with TLS to `localhost` (the name in the fake's certificate).
fn tls_config_for(smsc: &FakeSmsc, ca_file: Option<&NamedTempFile>) -> SmppConfig {
    SmppConfig {
        tls: true,
        host: "localhost".to_owned(),
        tls_ca_file: ca_file.map(|f| f.path().to_owned()),
        ..config_for(smsc)
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_binds_sends_and_gets_receipts() {
    let ca = TestCa::new("Switchboard test CA");
    let options = FakeSmscOptions {
        tls: Some(ca.server_tls("localhost")),
        receipts: Some(ReceiptOptions::default()),
        ..FakeSmscOptions::default()
    };
    let smsc = FakeSmsc::start(options).await;
    let ca_file = ca.pem_file();
    let (upstream, mut events) = started(tls_config_for(&smsc, Some(&ca_file))).await;
    assert_eq!(detail(&upstream), format!("bound to localhost:{}", smsc.port()));

    let submission = upstream.send(&message("hello over TLS", Encoding::Gsm7)).await.unwrap();
    let recorded = smsc.submits();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].destination, "447700900123");
    assert_eq!(recorded[0].short_message, b"hello over TLS");
    assert_eq!(recorded[0].message_id.as_deref(), Some(submission.provider_message_id.as_str()));

    let receipt = next_receipt(&mut events).await;
    assert_eq!(receipt.provider_ref, submission.provider_message_id);
    assert_eq!((receipt.status, receipt.error_type), (ReceiptStatus::Delivered, None));

    assert_eq!((smsc.bind_count(), smsc.tls_handshake_failures()), (1, 0));
    upstream.shutdown().await;
    // The unbind went over the TLS session too.
    assert_eq!(smsc.unbind_count(), 1);
}

#[tokio::test]
async fn tls_with_a_different_ca_fails_the_handshake_and_never_binds() {
    let smsc_ca = TestCa::new("The SMSC's CA");
    let other_ca = TestCa::new("Another CA");
    let options = FakeSmscOptions { tls: Some(smsc_ca.server_tls("localhost")), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let ca_file = other_ca.pem_file();
    let (sink, _events) = event_channel();
    let upstream = SmppUpstream::start(tls_config_for(&smsc, Some(&ca_file)), sink);

    wait_until("the failed handshake shows", || detail(&upstream).contains("TLS handshake failed")).await;
    let shown = detail(&upstream);
    assert!(shown.contains("certificate"), "{shown}");
    let status = &upstream.status()[0];
    assert!(!status.connected, "{status:?}");
    assert!(!upstream.is_bound());

    let err = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable && err.retryable, "{err}");
    assert!(err.message.contains("TLS handshake failed"), "{err}");

    wait_until("the SMSC sees the handshake fail", || smsc.tls_handshake_failures() >= 1).await;
    assert_eq!((smsc.bind_count(), smsc.submit_count()), (0, 0));
    upstream.shutdown().await;
}

#[tokio::test]
async fn tls_without_a_ca_file_does_not_trust_a_private_ca() {
    // The system's and the webpki roots, as before `tls_ca_file`.
    let ca = TestCa::new("Switchboard test CA");
    let options = FakeSmscOptions { tls: Some(ca.server_tls("localhost")), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let (sink, _events) = event_channel();
    let upstream = SmppUpstream::start(tls_config_for(&smsc, None), sink);
    wait_until("the failed handshake shows", || detail(&upstream).contains("TLS handshake failed")).await;
    assert!(detail(&upstream).contains("certificate"), "{}", detail(&upstream));
    assert!(!upstream.is_bound());
    assert_eq!(smsc.bind_count(), 0);
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_missing_ca_file_is_a_configuration_error() {
    let ca = TestCa::new("Switchboard test CA");
    let options = FakeSmscOptions { tls: Some(ca.server_tls("localhost")), ..FakeSmscOptions::default() };
    let smsc = FakeSmsc::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");

    // As the server's settings file gives it.
    let config: SmppConfig = toml::from_str(&format!(
        "name = 'a'\nhost = 'localhost'\nport = {}\nsystem_id = 'switchboard'\npassword = 'secret'\n\
         tls = true\ntls_ca_file = '{}'\n",
        smsc.port(),
        missing.display()
    ))
    .unwrap();
    let err = config.validate().unwrap_err();
    assert_eq!(err.to_string(), format!("tls_ca_file `{}` does not exist", missing.display()));

    let (sink, _events) = event_channel();
    let upstream = SmppUpstream::start(config, sink);
    let shown = detail(&upstream);
    assert!(shown.contains("invalid configuration: tls_ca_file") && shown.contains("does not exist"), "{shown}");
    assert!(!upstream.status()[0].connected);
    let err = upstream.send(&message("hi", Encoding::Gsm7)).await.unwrap_err();
    assert!(err.unavailable, "{err}");
    // An invalid configuration starts no task that could connect.
    assert_eq!((smsc.connection_count(), smsc.tls_handshake_failures()), (0, 0));
    upstream.shutdown().await;
}
