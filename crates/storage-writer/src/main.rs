//! `moat-storage-writer [--config PATH] [serve | migrate [--recreate]]`.

use clap::{Parser, Subcommand};
use moat_common_types::config::{ConfigArgs, load_or_exit, parse_args};
use moat_common_types::{http::shutdown_token, telemetry};
use moat_storage_writer::config::WriterConfig;

/// mimalloc: every fetched message's events are decoded into owned rows and
/// freed after the insert, on other threads than took them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stores market data from NATS JetStream in ClickHouse: a durable pull
/// consumer shared by every replica, batched inserts, an ack only once the
/// rows are stored.
#[derive(Parser)]
#[command(name = "moat-storage-writer", version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and store until SIGINT or SIGTERM (the default).
    Serve,
    /// Apply the ClickHouse schema migrations and exit.
    Migrate {
        /// Drop the database first (development only: every row is lost).
        #[arg(long)]
        recreate: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = parse_args();
    let _telemetry = telemetry::init("moat-storage-writer");
    let config: WriterConfig = load_or_exit(&args.config.sources("storage-writer"));
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let http = config.http.bind("http").await?;
            moat_storage_writer::run(config, http, shutdown_token()).await
        }
        Command::Migrate { recreate } => {
            let applied = moat_storage_writer::migrate(&config, recreate).await?;
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
    }
}
