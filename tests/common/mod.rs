//! Shared test support: a fresh database per test on either backend.
//!
//! SQLite gets a file in a temporary directory. PostgreSQL gets a fresh schema in the database
//! named by `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the
//! test ends. Without a reachable server the PostgreSQL tests fail, loudly, unless
//! `HEDGEHOG_SKIP_POSTGRES=1` asks to skip them (CI never sets it).
#![allow(dead_code)]

pub mod book;
pub mod http;
pub mod processes;
pub mod python;
pub mod simulated_binance;

use hedgehog_domain::testkit;
use std::time::Duration;

use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::Symbol;
use hedgehog_store::{NewEvent, Store};
use rust_decimal::Decimal;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    base_url: String,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("hedgehog.db").display());
        TestDb {
            backend: Backend::Sqlite,
            url: url.clone(),
            base_url: url,
            schema: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<TestDb> {
        if std::env::var("HEDGEHOG_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: PostgreSQL test skipped because HEDGEHOG_SKIP_POSTGRES=1");
            return None;
        }
        let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let schema = format!("hh_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = connect_pg(&base).await;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            base_url: base,
            schema: Some(schema),
            _dir: None,
        })
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("open store")
    }

    /// Runs one statement with bound values against the test database: what another writer
    /// (an older build, a log carried over from elsewhere) left there.
    pub async fn execute_with(&self, sql: &str, binds: &[Bind<'_>]) {
        macro_rules! run_on {
            ($conn:ty) => {{
                use sqlx::Connection;
                let mut c = <$conn>::connect(&self.url).await.unwrap();
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = match b {
                        Bind::Int(v) => q.bind(*v),
                        Bind::Text(v) => q.bind(*v),
                        Bind::Id(v) => q.bind(*v),
                        Bind::Bytes(v) => q.bind(*v),
                        Bind::Null => q.bind(None::<i64>),
                    };
                }
                q.execute(&mut c).await.unwrap();
            }};
        }
        match self.backend {
            Backend::Sqlite => run_on!(sqlx::SqliteConnection),
            Backend::Postgres => run_on!(sqlx::PgConnection),
        }
    }

    /// Runs raw SQL against the test database (for injecting faults and inspecting rows).
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }
}

impl TestDb {
    /// Runs one statement, answering what the database said: for statements it must refuse.
    pub async fn try_execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql).execute(&mut c).await.map(|_| ())
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query(sql).execute(&mut c).await.map(|_| ())
            }
        }
    }

    /// The rows of a query whose one column is text (inspecting what the database holds).
    pub async fn text_rows(&self, sql: &str) -> Vec<String> {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut c).await.unwrap()
            }
        }
    }
}

/// A value bound to a statement of [`TestDb::execute_with`].
pub enum Bind<'a> {
    Int(i64),
    Text(&'a str),
    Id(uuid::Uuid),
    Bytes(&'a [u8]),
    Null,
}

async fn connect_pg(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "PostgreSQL tests need a server at {url}: {e}. Start one, point DATABASE_URL at it, \
             or set HEDGEHOG_SKIP_POSTGRES=1 to skip these tests explicitly"
        ),
        Err(_) => panic!("PostgreSQL at {url} did not answer within 10 s"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let base = self.base_url.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query("SET lock_timeout = '5s'").execute(&mut c).await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

pub fn symbol(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// A realistic trade (ADAUSDT prices from the book's data), keyed by `trade_id`.
pub fn trade(sym: &str, trade_id: u64) -> TradeReceived {
    let id = trade_id as i64;
    testkit::trade(sym, trade_id)
        .price(Decimal::new(9_643_000 + id % 1000, 8))
        .quantity(Decimal::new(161_750_000_000, 8))
        .at(1_559_520_022_517 + id)
        .event_time(1_559_520_022_520 + id)
        .buyer_is_maker(trade_id % 2 == 0)
        .order_ids(Some(71_181_005 + trade_id), None)
        .build()
}

/// A market trade of `sym` at `price` and `time` (ms), keyed by `trade_id`, quantity 1.
pub fn trade_at(sym: &str, trade_id: u64, price: Decimal, time: i64) -> TradeReceived {
    testkit::trade(sym, trade_id).price(price).at(time).build()
}

pub fn trades(sym: &str, ids: std::ops::Range<u64>) -> Vec<NewEvent> {
    ids.map(|id| NewEvent::new(trade(sym, id))).collect()
}

/// Generates one `#[tokio::test]` per backend for each listed case `cases::NAME(&TestDb)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = $crate::common::TestDb::sqlite();
                    super::cases::$case(&db).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = $crate::common::TestDb::postgres().await else { return };
                    super::cases::$case(&db).await;
                }
            )+
        }
    };
}
