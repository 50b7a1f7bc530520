//! Mudbase's own published Python SDK (`mudbase==1.3.17`), unchanged, against a spawned
//! server: `tests/python/test_mudbase_sdk.py` run by the Python in `TEST_PYTHON`
//! (a virtual environment with the pinned SDK, which `cargo xtask ci` prepares).

use std::path::PathBuf;

use switchboard_domain::wire::CreateSender;
use switchboard_tests::{Backend, TestApp, TestDb, on_both_backends};

on_both_backends!(mudbase_python_sdk_works_unchanged);

async fn mudbase_python_sdk_works_unchanged(backend: Backend) {
    let Some(python) = switchboard_tests::test_python() else { return };
    let Some(db) = TestDb::new(backend, "mb_python_sdk").await else { return };
    let app = TestApp::start(db.settings()).await;
    let tenant = app.provision(10_000, 0).await;
    let other = app.provision(100, 0).await;
    let poor = app.provision(0, 0).await;
    let brand = CreateSender { address: "ACME".into(), active: true, sms: true, mms: false };
    app.admin.add_sender(tenant.account, &brand).await.expect("an alphanumeric sender");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/test_mudbase_sdk.py");
    let url = app.url.clone();
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SWITCHBOARD_URL", &url)
        .env("MB_PROJECT", tenant.account.to_string())
        .env("MB_API_KEY", &tenant.api_key)
        .env("MB_FROM", &tenant.from)
        .env("MB_ALPHANUMERIC_FROM", "ACME")
        .env("MB_OTHER_PROJECT", other.account.to_string())
        .env("MB_POOR_PROJECT", poor.account.to_string())
        .env("MB_POOR_API_KEY", &poor.api_key)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Mudbase SDK tests failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
    app.stop().await;
    db.remove().await;
}
