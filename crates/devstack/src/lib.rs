//! Real dependency servers for development and tests.
//!
//! `cargo xtask up`, `cargo xtask test` and the integration tests all start
//! NATS, ClickHouse, PostgreSQL and Prometheus through this crate (NATS and ClickHouse
//! at the versions pinned in [`engines`]): on free ports, with
//! data in a folder of the caller's choosing, as child processes that are
//! stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
//! It uses only the standard library and `nix`, so xtask stays light.

pub mod certs;
pub mod engines;
mod http;
mod install;
pub mod peers;
mod process;
pub mod prometheus;
mod servers;
pub mod stack;

pub use http::{HttpResponse, http_get, http_post, wait_http_ok};
pub use install::{Package, apt_install, ensure_installed, find_binary};
pub use process::{ManagedProcess, ensure_port_free, free_port};
pub use servers::{ClickHouse, NATS_SYNC_INTERVAL, Nats, Postgres};

/// Error type of the harness: a message saying what failed and how to fix it.
pub type Error = String;
pub type Result<T> = std::result::Result<T, Error>;

/// The command that starts ganache (from `tests/peers` under the workspace
/// `root`, installed there first when missing) on `port`: chain id 1, the
/// deterministic wallet, quiet logs.
pub fn ganache_command(root: &std::path::Path, port: u16) -> Result<std::process::Command> {
    let bin = root.join("tests/peers/node_modules/.bin/ganache");
    if !bin.exists() {
        peers::ensure_node_peers(root)?;
    }
    let mut command = std::process::Command::new(bin);
    command.args([
        "--port",
        &port.to_string(),
        "--host",
        "127.0.0.1",
        "--chain.chainId",
        "1",
        "--wallet.deterministic",
        "--logging.quiet",
    ]);
    Ok(command)
}
