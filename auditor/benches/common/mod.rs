//! What the ledger benchmarks share: a fresh PostgreSQL database on the test server.

/// Drops and creates database `name` on the server of `base`; returns its URL.
pub async fn fresh_postgres(base: &str, name: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    for stmt in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}
