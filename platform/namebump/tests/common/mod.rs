//! A database of its own on the machine's PostgreSQL or MariaDB for one
//! test (`tests/run.sh` makes sure the services run; KEYWAY_TEST_POSTGRES /
//! KEYWAY_TEST_MYSQL point elsewhere). A missing service fails the test.
#![allow(clippy::unwrap_used, dead_code)]

use sqlx::Connection;

pub(crate) fn postgres_base() -> String {
    std::env::var("KEYWAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub(crate) fn mysql_base() -> String {
    std::env::var("KEYWAY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database created on `admin_url`'s server; `drop` removes it.
pub(crate) struct TestDatabase {
    admin: sqlx::AnyConnection,
    pub(crate) name: String,
}

impl TestDatabase {
    pub(crate) async fn create(admin_url: &str, prefix: &str) -> Self {
        sqlx::any::install_default_drivers();
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).unwrap();
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            u32::from_le_bytes(suffix)
        );
        let mut admin = sqlx::AnyConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach {admin_url} ({e}); run tests/run.sh, which starts the services"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        Self { admin, name }
    }

    pub(crate) async fn drop(mut self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {}", self.name)))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}
