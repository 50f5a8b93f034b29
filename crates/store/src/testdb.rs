//! Fresh PostgreSQL databases for tests, on the server `GATEHOUSE_TEST_POSTGRES` names (such
//! as `postgres://postgres@127.0.0.1:55432/postgres`; `scripts/test` starts one and sets it).
//! Each test creates a database of its own and drops it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The test server's URL. Without one, tests that need it are skipped with a note naming
/// `what`, except under CI, where that fails.
pub fn postgres_server(what: &str) -> Option<String> {
    match std::env::var("GATEHOUSE_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "GATEHOUSE_TEST_POSTGRES is not set, so {what} cannot run; run scripts/test, which \
             starts PostgreSQL and sets it"
        ),
        _ => {
            eprintln!(
                "note: GATEHOUSE_TEST_POSTGRES is not set, so {what} was skipped; run \
                 scripts/test, or set it to a server's URL"
            );
            None
        }
    }
}

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    /// The URL to open it with.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database with a fresh name on `server`.
    pub async fn create(server: &str) -> Self {
        sqlx::any::install_default_drivers();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "gh_test_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let admin = sqlx::AnyPool::connect(server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _) = server.rsplit_once('/').unwrap();
        Self {
            url: format!("{base}/{name}"),
            server: server.to_owned(),
            name,
        }
    }

    /// Bumps the revision as a commit that touched nothing would, without the notification: what
    /// the other control planes see when a notification is lost. Returns the new revision.
    pub async fn bump_revision_unannounced(&self) -> u64 {
        let pool = sqlx::AnyPool::connect(&self.url).await.unwrap();
        let revision: i64 = sqlx::query_scalar(
            "UPDATE gh_meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        u64::try_from(revision).unwrap()
    }

    /// Drops the database, ending any session still connected to it.
    pub async fn drop_now(self) {
        let admin = sqlx::AnyPool::connect(&self.server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}
