//! The gateway under measurement as a process of its own, as a deployment
//! runs it and as the baselines it is compared with run (nginx, ganache):
//! in the bench's own process it would share the runtime's threads with
//! the clients that load it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat_gateway::config::{GatewayConfig, ListenConfig, TokenConfig};

/// The strategy every bench gateway serves.
pub(crate) const STRATEGY: &str = "bench";

/// A gateway that serves strategy [`STRATEGY`] with `token` and no rate
/// limit, from `config` otherwise.
pub(crate) fn unlimited(mut config: GatewayConfig, token: &str) -> GatewayConfig {
    config.auth.tokens = vec![TokenConfig {
        strategy_id: STRATEGY.into(),
        token: token.into(),
    }];
    config.limits.requests_per_second = 1e9;
    config.limits.burst = 1e9;
    config.limits.rpc_requests_per_second = 1e9;
    config.limits.rpc_burst = 1e9;
    config
}

/// The release `moat-gateway` binary running `config`, stopped on drop.
pub(crate) struct GatewayProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

/// Where the service binaries are: `MOAT_BIN_DIR` (set by `cargo xtask
/// bench`), else beside this binary (`target/release`).
fn gateway_binary() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("MOAT_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("the bench binary has no folder"))?,
    };
    let path = dir.join("moat-gateway");
    anyhow::ensure!(
        path.is_file(),
        "{} is not built: run `cargo build --release --bins` (`cargo xtask bench` does)",
        path.display()
    );
    Ok(path)
}

impl GatewayProcess {
    pub(crate) async fn start(mut config: GatewayConfig) -> anyhow::Result<GatewayProcess> {
        let free = || -> anyhow::Result<SocketAddr> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?) };
        let (grpc, http) = (free()?, free()?);
        config.grpc = ListenConfig { listen: grpc };
        config.http = ListenConfig { listen: http };
        let dir = tempfile::Builder::new().prefix("moat-bench-gateway-").tempdir()?;
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(gateway_binary()?)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            // The audit lines go to stdout: a deployment ships them, the
            // bench does not read them.
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut gateway = GatewayProcess { child, grpc, http, dir };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(grpc).await.is_err() || tokio::net::TcpStream::connect(http).await.is_err()
        {
            if let Some(status) = gateway.child.try_wait()? {
                anyhow::bail!("the gateway exited ({status}) at start:\n{}", gateway.log());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the gateway did not listen within 20 s:\n{}",
                gateway.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(gateway)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
