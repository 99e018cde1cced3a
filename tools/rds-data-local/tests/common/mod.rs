//! Shared test harness: a fresh PostgreSQL database per test, the emulator in-process on
//! 127.0.0.1:0, and the real `aws-sdk-rdsdata` client pointed at it.
#![allow(dead_code)]

use std::time::Duration;

use aws_sdk_rdsdata::Client;
use aws_sdk_rdsdata::config::retry::RetryConfig;
use aws_sdk_rdsdata::config::{Credentials, Region};
use aws_sdk_rdsdata::types::{Field, SqlParameter, TypeHint};
use rds_data_local::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster:local";
pub const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local";

pub struct Env {
    pub server: Server,
    pub client: Client,
    pub database: String,
    pub admin_url: String,
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: these tests need a real PostgreSQL. Run them as \
             `scripts/with-postgres cargo nextest run -p rds-data-local`"
        )
    })
}

/// `url` with its database path replaced by `db`.
pub fn url_for_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to DATABASE_URL");
    tokio::spawn(conn);
    client
}

/// Creates an empty database with a unique name so tests can run in parallel.
pub async fn create_database(admin: &str) -> String {
    let name = format!("rdl_{}", uuid::Uuid::new_v4().simple());
    admin_client(admin).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    name
}

pub fn sdk_client(endpoint: &str, max_attempts: u32) -> Client {
    let conf = aws_sdk_rdsdata::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint)
        // Fast retries so fault-injection tests finish quickly; the attempts are what matter.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5)),
        )
        .build();
    Client::from_conf(conf)
}

pub async fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let admin = admin_url();
    let database = create_database(&admin).await;
    let mut config = Config::new(url_for_db(&admin, &database));
    tweak(&mut config);
    let server = rds_data_local::spawn(config).await.expect("start emulator");
    let client = sdk_client(&server.endpoint_url(), 3);
    Env { server, client, database, admin_url: admin }
}

pub async fn env() -> Env {
    env_with(|_| {}).await
}

impl Env {
    pub fn exec(
        &self,
        sql: &str,
    ) -> aws_sdk_rdsdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder {
        self.client.execute_statement().resource_arn(ARN).secret_arn(SECRET).sql(sql)
    }

    /// Runs SQL that must succeed.
    pub async fn run(&self, sql: &str) -> aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementOutput {
        self.exec(sql).send().await.unwrap_or_else(|e| panic!("{sql}: {:?}", e.into_service_error()))
    }

    pub fn url(&self) -> String {
        self.server.endpoint_url()
    }

    pub async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        raw_http(&self.server.addr().to_string(), method, path, body).await
    }

    pub async fn stats(&self) -> serde_json::Value {
        let (_, _, body) = self.http("GET", "/_stats", "").await;
        serde_json::from_str(&body).expect("stats JSON")
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so tests can send bodies the SDK
/// would never produce and call the control endpoints without extra dependencies.
pub async fn raw_http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

pub fn param(name: &str, value: Field) -> SqlParameter {
    SqlParameter::builder().name(name).value(value).build()
}

pub fn hinted(name: &str, value: &str, hint: TypeHint) -> SqlParameter {
    SqlParameter::builder().name(name).value(Field::StringValue(value.into())).type_hint(hint).build()
}

pub fn s(v: &str) -> Field {
    Field::StringValue(v.into())
}
