//! Fresh databases for tests: a SQLite file in a new temporary folder, or a new PostgreSQL
//! database on the server that `TEST_POSTGRES_URL` names.
//!
//! Without `TEST_POSTGRES_URL`, PostgreSQL tests print that they were skipped; when `CI` is
//! set they fail instead, so CI never passes without running them.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use uuid::Uuid;

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "TEST_POSTGRES_URL";

/// A database made for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new SQLite file in a new temporary folder.
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("switchboard-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        let url = format!("sqlite://{}", dir.join("switchboard.db").display());
        Self { url, cleanup: Cleanup::Dir(dir) }
    }

    /// A new, empty PostgreSQL database, or `None` (with a notice) when no server is
    /// configured outside CI. Panics under CI without a server.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            if std::env::var_os("CI").is_some() {
                panic!("{POSTGRES_URL_VAR} is not set, and PostgreSQL tests must run under CI");
            }
            eprintln!("skipped {test}: set {POSTGRES_URL_VAR} to run it on PostgreSQL");
            return None;
        };
        let name = format!("sb_test_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.expect("connect to the PostgreSQL test server");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        conn.close().await.ok();
        PgConnectOptions::from_str(&admin_url).expect("a PostgreSQL URL");
        let url = postgres_url(&admin_url, &name);
        Some(Self { url, cleanup: Cleanup::Postgres { admin_url, name } })
    }

    /// Removes the database. Call at the end of a test; a failed test leaves it for study.
    pub async fn remove(self) {
        match self.cleanup {
            Cleanup::Dir(dir) => {
                std::fs::remove_dir_all(dir).ok();
            }
            Cleanup::Postgres { admin_url, name } => {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await
                        .ok();
                }
            }
        }
    }
}

/// The admin URL with its database name replaced.
fn postgres_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            postgres_url("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(postgres_url("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(postgres_url("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
