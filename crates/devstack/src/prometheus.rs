//! Prometheus (Debian's `prometheus` package) scraping a stack's services
//! with moat's alert rules loaded, as a managed child.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::install::{Package, ensure_installed, find_binary};
use crate::process::{ManagedProcess, ensure_port_free};

/// moat's alert rules under the workspace root: the file compose mounts and
/// the `moat` chart ships.
pub const ALERT_RULES: &str = "deploy/helm/moat/files/alerts.yml";

/// A running Prometheus; stopped on drop.
pub struct Prometheus {
    pub port: u16,
    pub dir: PathBuf,
    process: Option<ManagedProcess>,
}

impl Prometheus {
    /// Installs Prometheus if need be, writes its configuration under `dir`
    /// (scraping each `(job, host:port)` of `targets` every `interval`,
    /// `https://host:port` over TLS trusting `ca`, and
    /// evaluating `rules` as often), starts it on `port` and waits until it
    /// is ready.
    pub fn start(
        dir: &Path,
        port: u16,
        rules: &Path,
        targets: &[(String, String)],
        interval: Duration,
        ca: Option<&Path>,
    ) -> Result<Prometheus> {
        ensure_installed(&[Package::PROMETHEUS])?;
        let binary = find_binary(&Package::PROMETHEUS).ok_or("prometheus was installed but is not found")?;
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let every = format!("{}ms", interval.as_millis().max(1));
        let mut config = format!(
            "# written by moat's development stack\nglobal:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n\
             rule_files:\n  - {rules:?}\nscrape_configs:\n",
            rules = rules.display().to_string(),
        );
        for (job, addr) in targets {
            // `https://host:port`: scraped over TLS with the development CA
            // (or without checking when none is given).
            let (scheme, addr) = match addr.strip_prefix("https://") {
                Some(rest) => {
                    let tls = match &ca {
                        Some(ca) => format!(
                            "\n    tls_config:\n      ca_file: {:?}\n      server_name: localhost",
                            ca.display().to_string()
                        ),
                        None => "\n    tls_config:\n      insecure_skip_verify: true".to_owned(),
                    };
                    (format!("\n    scheme: https{tls}"), rest)
                }
                None => (String::new(), addr.as_str()),
            };
            config.push_str(&format!(
                "  - job_name: {job:?}{scheme}\n    static_configs:\n      - targets: [{addr:?}]\n"
            ));
        }
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).map_err(|e| format!("writing {}: {e}", file.display()))?;
        ensure_port_free(port, "Prometheus")?;
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=2d");
        let mut process = ManagedProcess::spawn("prometheus", cmd, &dir.join("prometheus.log"))?;
        if let Err(error) = process.wait_ready(&format!("127.0.0.1:{port}"), "/-/ready", Duration::from_secs(30)) {
            process.kill();
            return Err(error);
        }
        Ok(Prometheus {
            port,
            dir: dir.to_owned(),
            process: Some(process),
        })
    }

    /// `http://127.0.0.1:<port>`: the UI and the HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedProcess::pid)
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Leaves Prometheus running after this handle is gone; returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.process.take().and_then(ManagedProcess::detach)
    }
}
