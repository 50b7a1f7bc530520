//! The web console over plain HTTP: logging in both ways, sessions kept only as hashes and
//! ended by logout or by revoking the key, CSRF tokens on every form, the security headers,
//! and what an account holder may not see.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use switchboard_tests::{Backend, OPERATOR_TOKEN, TestApp, TestDb, on_both_backends};

on_both_backends!(
    the_operator_and_an_account_holder_log_in,
    a_form_without_the_csrf_token_changes_nothing,
    logout_and_revocation_end_a_session,
    the_operator_manages_an_account_and_its_holder_sees_only_it,
    failed_logins_spend_the_apis_failure_budgets,
    the_cookie_is_secure_behind_a_trusted_https_proxy,
);

/// A browser without a browser: keeps the console's cookies by hand.
pub(crate) struct Console {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
    /// Headers sent with every request (what a proxy would add).
    extra: Vec<(&'static str, &'static str)>,
}

/// An answer: status, headers, body.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Console {
    pub(crate) fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Self { base: app.direct_url.clone(), http, cookies: Vec::new(), extra: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        for set in headers.get_all("set-cookie") {
            let text = set.to_str().unwrap();
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !attrs.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn answer(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        Page { status, headers, body: resp.text().await.unwrap() }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header());
        for (name, value) in &self.extra {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        self.answer(resp).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).form(form);
        for (name, value) in &self.extra {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        self.answer(resp).await
    }

    /// The value of the first hidden `csrf` field of a page.
    pub(crate) fn csrf(page: &Page) -> String {
        let at = page.body.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        page.body[at..].split('"').next().unwrap().to_owned()
    }

    /// Logs in (an empty key id: the operator); the status of the answer to the form.
    pub(crate) async fn login(&mut self, key_id: &str, secret: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = Self::csrf(&form);
        self.post("/console/login", &[("csrf", &csrf), ("key_id", key_id), ("secret", secret)]).await
    }

    pub(crate) fn session(&self) -> Option<String> {
        self.cookies.iter().find(|(n, _)| n == "sb_console").map(|(_, v)| v.clone())
    }
}

async fn the_operator_and_an_account_holder_log_in(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_login").await else { return };
    let app = TestApp::start(db.settings()).await;
    let tenant = app.provision(10, 0).await;

    // Not logged in: to the login page, whose answer carries the security headers.
    let mut operator = Console::new(&app);
    let page = operator.get("/console").await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/login"));
    let login = operator.get("/console/login").await;
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert_eq!(login.headers["referrer-policy"], "no-referrer");
    assert_eq!(login.headers["cache-control"], "no-store");
    assert!(!login.body.contains("<script"), "no script on any page");

    // A wrong operator token is refused, the right one lets the operator in.
    let wrong = operator.login("", "not-the-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(operator.session().is_none());
    let ok = operator.login("", OPERATOR_TOKEN).await;
    assert_eq!((ok.status, ok.location()), (StatusCode::SEE_OTHER, "/console"));
    let cookie =
        ok.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).find(|c| c.starts_with("sb_console="));
    let cookie = cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let overview = operator.get("/console").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("All accounts.") && overview.body.contains("<svg"), "{}", overview.body);
    let upstreams = operator.get("/console/upstreams").await;
    assert_eq!(upstreams.status, StatusCode::OK);
    assert!(upstreams.body.contains("simulator"), "{}", upstreams.body);

    // An account holder logs in with an API key, sees the account's overview only, and not
    // the operator's pages.
    let mut holder = Console::new(&app);
    let (key_id, secret) = tenant.api_key.split_once(':').unwrap();
    assert_eq!(holder.login(key_id, "sk_wrong").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(holder.login(key_id, secret).await.status, StatusCode::SEE_OTHER);
    let overview = holder.get("/console").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Your account."), "{}", overview.body);
    assert_eq!(holder.get("/console/upstreams").await.status, StatusCode::FORBIDDEN);

    // The database keeps no session token.
    let token = operator.session().unwrap();
    let raw = db_text(&db).await;
    assert!(!raw.contains(&token), "a session token is in the database");

    app.stop().await;
    db.remove().await;
}

/// Every text and blob of the console's sessions table, as hex and text, for looking for a
/// token in it.
async fn db_text(db: &TestDb) -> String {
    let sql = "SELECT token_hash FROM console_sessions";
    let hashes: Vec<Vec<u8>> = match db.backend {
        Backend::Sqlite => {
            let c = rusqlite::Connection::open(db.url().trim_start_matches("sqlite://")).unwrap();
            let mut s = c.prepare(sql).unwrap();
            s.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.into_iter().map(|(h,)| h).collect()
        }
    };
    assert!(!hashes.is_empty(), "sessions are stored");
    hashes.iter().map(|h| h.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect()
}

async fn a_form_without_the_csrf_token_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_csrf").await else { return };
    let app = TestApp::start(db.settings()).await;
    let mut operator = Console::new(&app);
    assert_eq!(operator.login("", OPERATOR_TOKEN).await.status, StatusCode::SEE_OTHER);

    // A top-up without the token, or with another session's, is refused and adds nothing.
    let account = app.admin.create_account("csrf").await.unwrap();
    let path = format!("/console/accounts/{}/top-up", account.id);
    let form = [("sms", "500"), ("mms", "0"), ("reason", "forged")];
    assert_eq!(operator.post(&path, &form).await.status, StatusCode::FORBIDDEN);
    let mut other = Console::new(&app);
    other.login("", OPERATOR_TOKEN).await;
    let other_csrf = Console::csrf(&other.get("/console").await);
    let mut with_other = form.to_vec();
    with_other.push(("csrf", &other_csrf));
    assert_eq!(operator.post(&path, &with_other).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.admin.account(account.id).await.unwrap().sms_credits, 0, "nothing was added");
    assert!(app.admin.ledger(account.id, 10, None).await.unwrap().data.is_empty());

    // Logging out is a form too: without the token, or with another, it is refused and the
    // session lives on.
    assert_eq!(operator.post("/console/logout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(operator.post("/console/logout", &[("csrf", "0000")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(operator.get("/console").await.status, StatusCode::OK);

    // The login form checks its own token against its cookie.
    let mut stranger = Console::new(&app);
    let forged = stranger.post("/console/login", &[("csrf", "x"), ("secret", OPERATOR_TOKEN)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(stranger.session().is_none());

    app.stop().await;
    db.remove().await;
}

async fn logout_and_revocation_end_a_session(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_logout").await else { return };
    let app = TestApp::start(db.settings()).await;
    let tenant = app.provision(10, 0).await;

    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let old = operator.session().unwrap();
    let page = operator.get("/console").await;
    let out = operator.post("/console/logout", &[("csrf", &Console::csrf(&page))]).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/console/login"));
    assert!(operator.session().is_none(), "the cookie is cleared");
    // The old cookie, presented again, is worth nothing.
    operator.cookies.push(("sb_console".into(), old));
    let page = operator.get("/console").await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/login"));

    // Revoking the key an account holder logged in with ends the session at the next request.
    let mut holder = Console::new(&app);
    let (key_id, secret) = tenant.api_key.split_once(':').unwrap();
    holder.login(key_id, secret).await;
    assert_eq!(holder.get("/console").await.status, StatusCode::OK);
    app.admin.revoke_key(tenant.account, key_id).await.unwrap();
    let page = holder.get("/console").await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/login"));

    app.stop().await;
    db.remove().await;
}

async fn the_operator_manages_an_account_and_its_holder_sees_only_it(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_accounts").await else { return };
    let app = TestApp::start(db.settings()).await;
    let tenant = app.provision(10, 0).await;
    let other = app.provision(10, 0).await;

    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let list = operator.get("/console/accounts").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&tenant.account.to_string()) && list.body.contains(&other.account.to_string()));

    // A top-up with a reason lands in the ledger, and the page shows the new balance.
    let page_path = format!("/console/accounts/{}", tenant.account);
    let page = operator.get(&page_path).await;
    let csrf = Console::csrf(&page);
    let done = operator
        .post(
            &format!("{page_path}/top-up"),
            &[("csrf", &csrf), ("sms", "250"), ("mms", "3"), ("reason", "invoice <42>")],
        )
        .await;
    assert_eq!((done.status, done.location()), (StatusCode::SEE_OTHER, format!("{page_path}?done=topped-up").as_str()));
    let page = operator.get(&format!("{page_path}?done=topped-up")).await;
    assert!(page.body.contains("id=\"sms-balance\">260<"), "{}", page.body);
    assert!(page.body.contains("invoice &lt;42&gt;"), "the reason is shown, escaped");
    let ledger = app.admin.ledger(tenant.account, 10, None).await.unwrap().data;
    assert_eq!(
        (ledger[0].sms_delta, ledger[0].mms_delta, ledger[0].reference.as_deref()),
        (250, 3, Some("invoice <42>"))
    );
    // Bad input is refused with words, not a 500.
    let bad = operator.post(&format!("{page_path}/top-up"), &[("csrf", &csrf), ("sms", "lots"), ("reason", "x")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // A key made here shows its secret once, and works with the API.
    let made = operator.post(&format!("{page_path}/keys"), &[("csrf", &csrf), ("name", "console")]).await;
    assert_eq!(made.status, StatusCode::OK);
    let between = |from: &str| {
        let at = made.body.find(from).unwrap() + from.len();
        made.body[at..].split('<').next().unwrap().to_owned()
    };
    let (key_id, secret) = (between("id=\"new-key-id\">"), between("id=\"new-key-secret\">"));
    let client = switchboard_client::TextingLineClient::new(&app.url, &key_id, &secret).unwrap();
    assert!(client.balance().await.is_ok(), "the new key works");
    assert!(!operator.get(&page_path).await.body.contains(&secret), "the secret is never shown again");
    let revoked = operator.post(&format!("{page_path}/keys/revoke"), &[("csrf", &csrf), ("key_id", &key_id)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(client.balance().await.is_err(), "the revoked key no longer works");

    // The account holder sees the account, without the operator's forms, and nothing of
    // another account: its page is not found, like an unknown one.
    let mut holder = Console::new(&app);
    let (key_id, secret) = tenant.api_key.split_once(':').unwrap();
    holder.login(key_id, secret).await;
    let own = holder.get("/console/accounts").await;
    assert_eq!((own.status, own.location()), (StatusCode::SEE_OTHER, page_path.as_str()));
    let own = holder.get(&page_path).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("id=\"sms-balance\">260<") && !own.body.contains("top-up"), "{}", own.body);
    let foreign = holder.get(&format!("/console/accounts/{}", other.account)).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(!foreign.body.contains(&other.key_id) && !foreign.body.contains(&other.from));
    let unknown = holder.get(&format!("/console/accounts/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Nor may the holder use the operator's forms, even on the account.
    let csrf = Console::csrf(&own);
    let forbidden =
        holder.post(&format!("{page_path}/top-up"), &[("csrf", &csrf), ("sms", "1"), ("reason", "self-service")]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(app.admin.account(tenant.account).await.unwrap().sms_credits, 260);

    app.stop().await;
    db.remove().await;
}

async fn failed_logins_spend_the_apis_failure_budgets(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_throttle").await else { return };
    let settings = switchboard::Settings { auth_failures_per_minute: 3, ..db.settings() };
    let app = TestApp::start(settings).await;
    let tenant = app.provision(10, 0).await;

    // Wrong operator tokens from one address: refused, then throttled with Retry-After...
    let mut guesser = Console::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(guesser.login("", "guess").await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "three failures a minute, then refused");
    let throttled = guesser.login("", OPERATOR_TOKEN).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "not even the right token passes now");
    assert!(throttled.headers.contains_key("retry-after"));
    // ...and the admin API, which counts the operator token's failures in the same budget,
    // refuses that address too.
    let (status, _) = switchboard_tests::admin_call(&app, reqwest::Method::GET, "/accounts", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // API keys have the API's own budget: wrong secrets are refused, then throttled, and the
    // TextingLine API then refuses that address as well.
    let (key_id, _) = tenant.api_key.split_once(':').unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(guesser.login(key_id, "sk_guess").await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert!(tenant.client.balance().await.is_err(), "the API refuses the address too");

    app.stop().await;
    db.remove().await;
}

/// The console in a real browser: Debian's Chromium, headless, driven through chromedriver.
/// Without chromedriver the test is skipped with a notice, except under `CI`, where it fails.
/// Each page is saved as a screenshot under `target/console-screenshots/`.
mod browser {
    use std::path::PathBuf;
    use std::time::Duration;

    use fantoccini::{Client, ClientBuilder, Locator};
    use reqwest::StatusCode;
    use switchboard_domain::wire::TlSendRequest;
    use switchboard_tests::{OPERATOR_TOKEN, TestApp, TestDb, eventually};

    use super::Console;

    /// A program on the `PATH`.
    fn find_program(name: &str) -> Option<PathBuf> {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
    }

    /// chromedriver on a free port, stopped when dropped.
    struct Driver {
        child: tokio::process::Child,
        url: String,
    }

    impl Driver {
        /// Starts chromedriver; `None` (with a notice) when it is not installed, outside CI.
        async fn start() -> Option<Self> {
            let Some(program) = find_program("chromedriver") else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "chromedriver is not installed (apt-get install chromium chromium-driver)"
                );
                eprintln!("skipping the browser tests: chromedriver is not installed");
                return None;
            };
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = tokio::process::Command::new(program)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            let status = format!("{url}/status");
            eventually("chromedriver answers", Duration::from_secs(60), || {
                let status = status.clone();
                async move {
                    let r = reqwest::get(&status).await.ok()?;
                    let v: serde_json::Value = r.json().await.ok()?;
                    (v["value"]["ready"] == true).then_some(())
                }
            })
            .await;
            Some(Self { child, url })
        }

        /// A new headless Chromium window of 1280×900.
        async fn browser(&self) -> Client {
            let mut options = serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"],
            });
            if let Some(chromium) = find_program("chromium") {
                options["binary"] = chromium.display().to_string().into();
            }
            let mut caps = serde_json::Map::new();
            caps.insert("goog:chromeOptions".into(), options);
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&self.url)
                .await
                .expect("open a browser session")
        }
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.child.start_kill();
        }
    }

    /// Where screenshots go: `target/console-screenshots/`.
    fn screenshot_dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dir = target.join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Saves the whole page (the window grown to its height) as `<name>.png`.
    async fn screenshot(browser: &Client, name: &str, width: u32) {
        let height = browser
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(900);
        browser.set_window_size(width, (height as u32).clamp(600, 4000) + 120).await.unwrap();
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
        browser.set_window_size(1280, 900).await.unwrap();
    }

    async fn text_of(browser: &Client, css: &str) -> String {
        browser.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css} on the page")).text().await.unwrap()
    }

    async fn log_in(browser: &Client, base: &str, key_id: &str, secret: &str) {
        browser.goto(&format!("{base}/console/login")).await.unwrap();
        browser.find(Locator::Id("key_id")).await.unwrap().send_keys(key_id).await.unwrap();
        browser.find(Locator::Id("secret")).await.unwrap().send_keys(secret).await.unwrap();
        browser.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Css("header.top")).await.expect("logged in");
    }

    /// The count the overview's per-minute chart gives a series in its legend.
    async fn minute_count(browser: &Client, series: &str) -> i64 {
        let css = format!("#minutes figcaption .legend.{series} strong");
        text_of(browser, &css).await.parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_console_in_a_browser() {
        let Some(driver) = Driver::start().await else { return };
        let db = TestDb::new(switchboard_tests::Backend::Sqlite, "console_browser").await.unwrap();
        // Receipts come soon, so that sent messages turn delivered while the page is watched.
        let settings = switchboard::Settings { simulator_receipt_delay_ms: 300, ..db.settings() };
        let app = TestApp::start(settings).await;
        let base = app.direct_url.clone();
        let tenant = app.provision(100, 0).await;
        let other = app.provision(10, 0).await;

        // The operator logs in.
        let browser = driver.browser().await;
        browser.goto(&format!("{base}/console")).await.unwrap();
        assert!(browser.current_url().await.unwrap().path().ends_with("/console/login"), "sent to log in");
        screenshot(&browser, "login", 1280).await;
        log_in(&browser, &base, "", OPERATOR_TOKEN).await;
        assert_eq!(text_of(&browser, "main h1").await, "Overview");

        // Messages sent through the API show on the overview's chart, and turn delivered.
        for i in 0..6 {
            let req = TlSendRequest {
                to: format!("+1800555{:04}", 1000 + i),
                from: tenant.from.clone(),
                body: Some(format!("console test {i}")),
                ..Default::default()
            };
            tenant.client.send(&req).await.expect("send");
        }
        let b = &browser;
        eventually("the chart counts the messages delivered", Duration::from_secs(60), || async move {
            b.refresh().await.ok()?;
            let (accepted, delivered) = (minute_count(b, "accepted").await, minute_count(b, "delivered").await);
            (accepted == 6 && delivered == 6).then_some(())
        })
        .await;
        let points = browser
            .find(Locator::Css("#minutes polyline.accepted"))
            .await
            .unwrap()
            .attr("points")
            .await
            .unwrap()
            .unwrap();
        assert!(points.split(' ').any(|p| !p.ends_with(",197.0")), "a point above the axis: {points}");
        screenshot(&browser, "overview", 1280).await;
        screenshot(&browser, "overview-phone", 390).await;

        // The accounts, and a top-up through the form, which the account's ledger shows.
        browser.goto(&format!("{base}/console/accounts")).await.unwrap();
        screenshot(&browser, "accounts", 1280).await;
        browser.goto(&format!("{base}/console/accounts/{}", tenant.account)).await.unwrap();
        let before: i64 = text_of(&browser, "#sms-balance").await.parse().unwrap();
        let form = browser.form(Locator::Css("form[action$='/top-up']")).await.unwrap();
        form.set_by_name("sms", "250").await.unwrap();
        form.set_by_name("reason", "invoice 2026-031").await.unwrap();
        form.submit().await.unwrap();
        browser.wait().for_element(Locator::Css("p.notice.ok")).await.expect("the top-up is confirmed");
        let after: i64 = text_of(&browser, "#sms-balance").await.parse().unwrap();
        assert_eq!(after, before + 250);
        let first_entry = text_of(&browser, "#ledger tbody tr:first-child").await;
        assert!(first_entry.contains("invoice 2026-031") && first_entry.contains("250"), "{first_entry}");
        screenshot(&browser, "account", 1280).await;

        browser.goto(&format!("{base}/console/upstreams")).await.unwrap();
        assert_eq!(text_of(&browser, "main h1").await, "Upstreams");
        screenshot(&browser, "upstreams", 1280).await;

        // Logging out ends the session: the old cookie, presented again, is refused.
        let old = browser.get_named_cookie("sb_console").await.unwrap().value().to_owned();
        browser.find(Locator::Css("header.top form button")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Id("secret")).await.expect("back at the login page");
        let mut replay = Console::new(&app);
        replay.cookies.push(("sb_console".into(), old));
        let page = replay.get("/console").await;
        assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/console/login"));

        // The account holder logs in with an API key, sees the account, and is refused another.
        let (key_id, secret) = tenant.api_key.split_once(':').unwrap();
        log_in(&browser, &base, key_id, secret).await;
        assert!(text_of(&browser, "p.scope").await.contains("Your account."));
        assert_eq!(minute_count(&browser, "accepted").await, 6, "the account's own messages");
        screenshot(&browser, "overview-holder", 1280).await;
        browser.goto(&format!("{base}/console/accounts/{}", tenant.account)).await.unwrap();
        assert!(browser.find(Locator::Css("form[action$='/top-up']")).await.is_err(), "no top-up for the holder");
        screenshot(&browser, "account-holder", 1280).await;
        browser.goto(&format!("{base}/console/accounts/{}", other.account)).await.unwrap();
        assert_eq!(text_of(&browser, "main h1").await, "Not found");
        assert!(!browser.source().await.unwrap().contains(&other.key_id));
        screenshot(&browser, "holder-refused", 1280).await;

        browser.close().await.unwrap();
        app.stop().await;
        db.remove().await;
    }

    /// The ledger and the messages in the browser: a top-up found by filtering the ledger, the
    /// low-balance threshold set through its form, a message found by its id whose timeline
    /// moves from sent to delivered, and an account holder kept to their own messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_ledger_and_messages_in_a_browser() {
        let Some(driver) = Driver::start().await else { return };
        let db = TestDb::new(switchboard_tests::Backend::Sqlite, "console_browser_messages").await.unwrap();
        // Receipts come a little after the send, so that the timeline is seen to change.
        let settings = switchboard::Settings { simulator_receipt_delay_ms: 2_000, ..db.settings() };
        let app = TestApp::start(settings).await;
        let base = app.direct_url.clone();
        let tenant = app.provision(100, 0).await;
        let other = app.provision(10, 0).await;
        let top_up = switchboard_domain::wire::TopUp { sms: 40, mms: 0, reference: Some("invoice 2026-044".into()) };
        app.admin.top_up(tenant.account, &top_up).await.unwrap();
        let send = |t: &switchboard_tests::Tenant, to: &str, text: &str| {
            let req =
                TlSendRequest { to: to.into(), from: t.from.clone(), body: Some(text.into()), ..Default::default() };
            let client = t.client.clone();
            async move { client.send(&req).await.expect("send").message.id.to_string() }
        };
        // Its deliveries and their attempts show on the message's page.
        let receiver = switchboard_tests::Receiver::start(1, Duration::ZERO).await;
        let events = ["message.accepted", "message.sent", "message.delivered"].map(String::from).to_vec();
        let hook = switchboard_domain::wire::webhooks::CreateWebhook {
            url: receiver.url.clone(),
            events: Some(events),
            ..Default::default()
        };
        app.admin.create_webhook(tenant.account, &hook).await.unwrap();
        send(&tenant, "+18005550101", "an earlier one").await;
        let theirs = send(&other, "+18005550199", "another account's").await;

        let browser = driver.browser().await;
        log_in(&browser, &base, "", OPERATOR_TOKEN).await;

        // The ledger, filtered to top-ups through its form, and the threshold set through its own.
        browser.goto(&format!("{base}/console/accounts/{}/ledger", tenant.account)).await.unwrap();
        let filter = browser.form(Locator::Id("ledger-filter")).await.unwrap();
        filter.set_by_name("kind", "topup").await.unwrap();
        filter.submit().await.unwrap();
        browser.wait().for_element(Locator::Css("#ledger")).await.unwrap();
        let rows = text_of(&browser, "#ledger tbody").await;
        assert!(rows.contains("invoice 2026-044") && !rows.contains("charge"), "{rows}");
        let threshold = browser.form(Locator::Id("low-balance")).await.unwrap();
        threshold.set_by_name("threshold", "50").await.unwrap();
        threshold.submit().await.unwrap();
        browser.wait().for_element(Locator::Css("p.notice.ok")).await.expect("the threshold is confirmed");
        assert_eq!(text_of(&browser, "#threshold").await, "50 SMS");
        assert_eq!(app.admin.account(tenant.account).await.unwrap().low_balance_threshold, Some(50));
        screenshot(&browser, "ledger", 1280).await;
        screenshot(&browser, "ledger-phone", 390).await;

        // A message sent through the API, found by its id, and its timeline as it moves on.
        let id = send(&tenant, "+18005550102", "watch me in the console").await;
        browser.goto(&format!("{base}/console/messages")).await.unwrap();
        let search = browser.form(Locator::Id("search")).await.unwrap();
        search.set_by_name("id", &id).await.unwrap();
        search.submit().await.unwrap();
        browser.wait().for_element(Locator::Css("#messages")).await.unwrap();
        let found = text_of(&browser, "#messages tbody").await;
        assert!(found.contains(&id) && !found.contains(&theirs), "{found}");
        screenshot(&browser, "messages", 1280).await;
        browser
            .find(Locator::Css("#messages tbody a[href^='/console/messages/']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser.wait().for_element(Locator::Id("timeline")).await.unwrap();
        let first = text_of(&browser, "#timeline").await;
        assert!(first.contains("accepted") && !first.contains("delivered"), "not delivered yet: {first}");
        let b = &browser;
        eventually("the timeline shows the message delivered", Duration::from_secs(20), || async move {
            b.refresh().await.ok()?;
            let timeline = text_of(b, "#timeline").await;
            timeline.contains("delivered").then_some(())
        })
        .await;
        let timeline = text_of(&browser, "#timeline").await;
        let order: Vec<usize> =
            ["accepted", "queued", "sent", "delivered"].iter().map(|s| timeline.find(s).expect(s)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "in the order they happened: {timeline}");
        assert!(text_of(&browser, "#charges").await.contains("-2"), "its charge");
        eventually("the delivered event posted", Duration::from_secs(20), || async move {
            b.refresh().await.ok()?;
            let deliveries = b.find(Locator::Id("deliveries")).await.ok()?.text().await.ok()?;
            (deliveries.matches("HTTP 204").count() == 3).then_some(())
        })
        .await;
        screenshot(&browser, "message-timeline", 1280).await;
        screenshot(&browser, "message-timeline-phone", 390).await;

        // The holder sees their own messages only; another account's message is not found.
        browser.find(Locator::Css("header.top form button")).await.unwrap().click().await.unwrap();
        browser.wait().for_element(Locator::Id("secret")).await.unwrap();
        let (key_id, secret) = tenant.api_key.split_once(':').unwrap();
        log_in(&browser, &base, key_id, secret).await;
        browser.goto(&format!("{base}/console/messages")).await.unwrap();
        let listed = text_of(&browser, "#messages tbody").await;
        assert!(listed.contains(&id) && !listed.contains(&theirs) && !listed.contains("+18005550199"), "{listed}");
        screenshot(&browser, "messages-holder", 1280).await;
        browser.goto(&format!("{base}/console/messages/{theirs}")).await.unwrap();
        assert_eq!(text_of(&browser, "main h1").await, "Not found");
        assert!(!browser.source().await.unwrap().contains("+18005550199"));

        browser.close().await.unwrap();
        app.stop().await;
        db.remove().await;
    }
}

async fn the_cookie_is_secure_behind_a_trusted_https_proxy(backend: Backend) {
    let Some(db) = TestDb::new(backend, "console_secure").await else { return };
    let session_cookie = |page: &Page| {
        page.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("sb_console="))
            .expect("a session cookie")
    };
    let https = [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")];

    // A peer that is no trusted proxy cannot make the server believe it came over HTTPS.
    let app = TestApp::start(db.settings()).await;
    let mut direct = Console::new(&app);
    direct.extra = https.to_vec();
    let cookie = session_cookie(&direct.login("", OPERATOR_TOKEN).await);
    assert!(!cookie.contains("Secure"), "{cookie}");
    app.stop().await;

    // Behind a trusted proxy that says the client came over HTTPS, the cookies are Secure, the
    // logout's too.
    let settings = switchboard::Settings { trusted_proxies: vec!["127.0.0.1/32".into()], ..db.settings() };
    let app = TestApp::start(settings).await;
    let mut proxied = Console::new(&app);
    proxied.extra = https.to_vec();
    let cookie = session_cookie(&proxied.login("", OPERATOR_TOKEN).await);
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let page = proxied.get("/console").await;
    let out = proxied.post("/console/logout", &[("csrf", &Console::csrf(&page))]).await;
    assert!(session_cookie(&out).ends_with("Max-Age=0; Secure"), "{}", session_cookie(&out));
    app.stop().await;
    db.remove().await;
}

/// How long the console's pages take on a database of a million messages (SQLite): seeds it
/// directly (800,000 messages spread over the last week, 200,000 in the last hour, over 20
/// accounts), then times each page ten times over HTTP and prints the figures. It asserts no
/// timing: run it by hand, in release for the figures that matter:
/// `cargo test --release -p switchboard-tests --test e2e console::page_times -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "seeds a million messages and prints page times; run by hand"]
async fn page_times_on_a_million_messages() {
    let db = TestDb::new(Backend::Sqlite, "console_page_times").await.unwrap();
    let app = TestApp::start(db.settings()).await;
    let mut tenants = Vec::new();
    for _ in 0..20 {
        tenants.push(app.provision(1_000, 0).await);
    }
    app.stop().await;

    let seeded = std::time::Instant::now();
    let path = db.url().trim_start_matches("sqlite://").to_owned();
    let accounts: Vec<uuid::Uuid> = tenants.iter().map(|t| t.account).collect();
    let seeded_path = path.clone();
    tokio::task::spawn_blocking(move || seed(&seeded_path, &accounts, 800_000, 200_000)).await.unwrap();
    eprintln!("seeded 1,000,000 messages in {:.1} s", seeded.elapsed().as_secs_f64());
    // A copy for timing the queries by hand (`sqlite3 FILE`), when asked for.
    if let Some(copy) = std::env::var_os("CONSOLE_PAGE_TIMES_COPY") {
        std::fs::copy(&path, copy).unwrap();
    }

    let app = TestApp::start(db.settings()).await;
    let mut operator = Console::new(&app);
    operator.login("", OPERATOR_TOKEN).await;
    let mut holder = Console::new(&app);
    let (key_id, secret) = tenants[0].api_key.split_once(':').unwrap();
    holder.login(key_id, secret).await;
    let own = format!("/console/accounts/{}", tenants[0].account);
    let ledger = format!("{own}/ledger");
    let refunds = format!("{own}/ledger?kind=refund");
    let newest = operator.get("/console/messages").await;
    let at = newest.body.find("href=\"/console/messages/msg_").expect("a message listed") + "href=\"".len();
    let message = newest.body[at..].split('"').next().unwrap().to_owned();
    for (who, path) in [
        ("operator", "/console"),
        ("operator", "/console/accounts"),
        ("operator", own.as_str()),
        ("operator", ledger.as_str()),
        ("operator", refunds.as_str()),
        ("operator", "/console/messages"),
        ("operator", "/console/messages?recipient=%2B18005551234"),
        ("operator", "/console/messages?status=canceled"),
        ("operator", message.as_str()),
        ("operator", "/console/upstreams"),
        ("holder", "/console"),
        ("holder", own.as_str()),
        ("holder", "/console/messages"),
        ("holder", "/console/messages?recipient=%2B18005551234"),
        ("holder", "/console/messages?dialect=smpp"),
    ] {
        let console = if who == "operator" { &mut operator } else { &mut holder };
        let mut times = Vec::new();
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let page = console.get(path).await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(page.status, StatusCode::OK, "{path}");
        }
        times.sort_by(f64::total_cmp);
        eprintln!("{who:8} {path:60} median {:6.1} ms, max {:6.1} ms", times[5], times[9]);
    }
    app.stop().await;
    db.remove().await;
}

/// Writes `spread` outbound messages created over the last week and `recent` in the last
/// hour, round-robin over `accounts`, with their running counts.
fn seed(path: &str, accounts: &[uuid::Uuid], spread: u64, recent: u64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let statuses = ["delivered"; 17].iter().chain(&["sent", "failed", "undelivered"]).copied().collect::<Vec<_>>();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO messages (id, account_id, direction, kind, recipient, sender, body, encoding, segments, \
                 status, sms_charged, mms_charged, next_attempt_at, created_at, updated_at, sent_at) \
                 VALUES (?1, ?2, 'outbound', 'sms', ?3, '+18005550100', 'seeded', 'gsm7', 1, ?4, 1, 0, ?5, ?5, ?5, ?5)",
            )
            .unwrap();
        for i in 0..spread + recent {
            let created = if i < spread {
                now - 7 * 86_400_000 + (i as i64 * 7 * 86_400_000 / spread as i64)
            } else {
                now - 3_600_000 + ((i - spread) as i64 * 3_600_000 / recent as i64)
            };
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                (created / 1000) as u64,
                ((created % 1000) * 1_000_000) as u32,
            );
            let id = uuid::Uuid::new_v7(ts);
            let account = accounts[i as usize % accounts.len()];
            let status = statuses[i as usize % statuses.len()];
            insert
                .execute(rusqlite::params![
                    id.as_bytes().to_vec(),
                    account.as_bytes().to_vec(),
                    format!("+1800555{:04}", i % 10_000),
                    status,
                    created
                ])
                .unwrap();
        }
    }
    tx.execute("DELETE FROM message_counts", []).unwrap();
    tx.execute(
        "INSERT INTO message_counts (account_id, hour, status, n) SELECT account_id, created_at / 3600000, status, \
         COUNT(*) FROM messages WHERE direction = 'outbound' GROUP BY account_id, created_at / 3600000, status",
        [],
    )
    .unwrap();
    tx.execute("DELETE FROM message_minute_counts", []).unwrap();
    tx.execute(
        "INSERT INTO message_minute_counts (account_id, slot, status, minute, n) SELECT account_id, \
         (created_at / 60000) % 120, status, created_at / 60000, COUNT(*) FROM messages \
         WHERE direction = 'outbound' AND created_at >= ?1 GROUP BY account_id, created_at / 60000, status",
        [(now / 60_000 - 119) * 60_000],
    )
    .unwrap();
    tx.commit().unwrap();
}
