//! `moat-storage-writer [--config PATH] [serve | migrate [--recreate]]`.

use anyhow::Context;
use moat_common_types::config::{load_or_exit, sources_from_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_storage_writer::config::WriterConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = telemetry::init("moat-storage-writer");
    let (sources, args) = sources_from_args("storage-writer", std::env::args().skip(1));
    let config: WriterConfig = load_or_exit(&sources);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => {
            let http = tokio::net::TcpListener::bind(config.http.listen)
                .await
                .with_context(|| format!("binding http.listen {}", config.http.listen))?;
            moat_storage_writer::run(config, http, shutdown_token()).await
        }
        ["migrate", rest @ ..] if rest.iter().all(|a| *a == "--recreate") => {
            let applied = moat_storage_writer::migrate(&config, !rest.is_empty()).await?;
            println!(
                "database {}: {} migration(s) applied{}",
                config.clickhouse.database,
                applied.len(),
                if applied.is_empty() {
                    ", schema up to date".to_owned()
                } else {
                    format!(" ({applied:?})")
                }
            );
            Ok(())
        }
        other => {
            eprintln!("usage: moat-storage-writer [--config PATH] [serve | migrate [--recreate]]; got {other:?}");
            std::process::exit(64);
        }
    }
}
