//! The state service: save and load through its gRPC, beside raw sqlx.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::{Row, percentile};

/// State save/load through moat-state's gRPC, beside raw sqlx on the same
/// SQLite settings (WAL, synchronous=FULL).
pub(crate) async fn state(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use moat_proto::state::v1::state_store_client::StateStoreClient;
    use moat_proto::state::v1::{LoadRequest, SaveRequest};
    let dir = tempfile::tempdir()?;
    let mut config = moat_state::config::StateConfig::default();
    config.tls = moat_state::config::ServerTlsConfig::plaintext();
    config.database.url = format!("sqlite://{}", dir.path().join("state.db").display());
    config.limits.max_state_bytes = 2 * 1024 * 1024;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let token = CancellationToken::new();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tokio::spawn(moat_state::run(config, grpc, http, token.clone()));
    let (mut client, channel) = loop {
        // Windows and frame size as the gateway opens its connection to
        // moat-state.
        let window = moat_state::window_for(2 * 1024 * 1024);
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .initial_stream_window_size(Some(window))
            .initial_connection_window_size(Some(2 * window))
            .max_frame_size(Some(1024 * 1024));
        if let Ok(channel) = endpoint.connect().await {
            break (
                StateStoreClient::new(channel.clone()).max_decoding_message_size(8 * 1024 * 1024),
                channel,
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let raw = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("raw.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await?;
    sqlx::query("CREATE TABLE t (id TEXT, version INTEGER, data BLOB, PRIMARY KEY (id, version))")
        .execute(&raw)
        .await?;
    // The transport's own floor: a bare unary call on the same server and
    // connection, timed beside the 1 KiB loads.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut bare = Vec::new();
    let mut small_load = Duration::ZERO;
    for (size, n) in [(1024usize, 400usize), (1024 * 1024, 40)] {
        let data = vec![7u8; size];
        let id = format!("bench-{size}");
        let (mut save, mut load, mut raw_insert, mut raw_select) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for v in 0..n as u64 {
            let t = Instant::now();
            client
                .save(SaveRequest {
                    strategy_id: id.clone(),
                    data: data.clone().into(),
                    expected_version: v,
                    ..Default::default()
                })
                .await?;
            save.push(t.elapsed());
            let t = Instant::now();
            client
                .load(LoadRequest {
                    strategy_id: id.clone(),
                    version: 0,
                })
                .await?;
            load.push(t.elapsed());
            if size == 1024 {
                let t = Instant::now();
                health
                    .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                    .await?;
                bare.push(t.elapsed());
            }
            let t = Instant::now();
            sqlx::query("INSERT INTO t (id, version, data) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(v as i64)
                .bind(&data)
                .execute(&raw)
                .await?;
            raw_insert.push(t.elapsed());
            let t = Instant::now();
            let _: (Vec<u8>,) = sqlx::query_as("SELECT data FROM t WHERE id = $1 ORDER BY version DESC LIMIT 1")
                .bind(&id)
                .fetch_one(&raw)
                .await?;
            raw_select.push(t.elapsed());
        }
        for list in [&mut save, &mut load, &mut raw_insert, &mut raw_select] {
            list.sort();
        }
        let label = if size == 1024 { "1 KiB" } else { "1 MiB" };
        if size == 1024 {
            small_load = percentile(&load, 0.5);
        }
        for (op, ours, base, base_name) in [
            ("save", &save, &raw_insert, "raw sqlx insert"),
            ("load", &load, &raw_select, "raw sqlx select"),
        ] {
            let (p50, p99) = (percentile(ours, 0.5), percentile(ours, 0.99));
            let (b50, b99) = (percentile(base, 0.5), percentile(base, 0.99));
            rows.push(Row {
                what: format!("state: {op} {label} (gRPC, SQLite WAL full sync)"),
                figure: format!(
                    "p50 {:.3} ms, p99 {:.3} ms",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                ),
                baseline: format!(
                    "{base_name}: p50 {:.3} ms, p99 {:.3} ms",
                    b50.as_secs_f64() * 1e3,
                    b99.as_secs_f64() * 1e3
                ),
                ratio: p50.as_secs_f64() / b50.as_secs_f64(),
            });
        }
    }
    bare.sort();
    let (p50, b50) = (small_load, percentile(&bare, 0.5));
    rows.push(Row {
        what: "state: load 1 KiB against a bare gRPC call on the same connection".into(),
        figure: format!("p50 {:.3} ms", p50.as_secs_f64() * 1e3),
        baseline: format!(
            "p50 {:.3} ms, p99 {:.3} ms (grpc.health Check)",
            b50.as_secs_f64() * 1e3,
            percentile(&bare, 0.99).as_secs_f64() * 1e3
        ),
        ratio: p50.as_secs_f64() / b50.as_secs_f64(),
    });
    token.cancel();
    Ok(())
}
