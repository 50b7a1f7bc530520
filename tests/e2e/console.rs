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
);

/// A browser without a browser: keeps the console's cookies by hand.
pub(crate) struct Console {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
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
        Self { base: app.direct_url.clone(), http, cookies: Vec::new() }
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
        let resp =
            self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.answer(resp).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
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

    // Logging out is a form: without the token, or with another, it is refused and the
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
