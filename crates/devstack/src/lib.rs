//! Real dependency servers for development and tests.
//!
//! `cargo xtask up`, `cargo xtask test` and the integration tests all start
//! NATS, ClickHouse and PostgreSQL through this crate: on free ports, with
//! data in a folder of the caller's choosing, as child processes that are
//! stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
//! It uses only the standard library and `nix`, so xtask stays light.

mod http;
mod install;
mod process;
mod servers;

pub use http::{HttpResponse, http_get, http_post, wait_http_ok};
pub use install::{Package, ensure_installed, find_binary};
pub use process::{ManagedProcess, free_port};
pub use servers::{ClickHouse, Nats, Postgres};

/// Error type of the harness: a message saying what failed and how to fix it.
pub type Error = String;
pub type Result<T> = std::result::Result<T, Error>;
