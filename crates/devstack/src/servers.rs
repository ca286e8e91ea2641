//! NATS (with JetStream), ClickHouse and PostgreSQL as managed children.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::engines::{chdb_module_dir, nats_server, python};
use crate::http::{http_post, wait_http_ok};
use crate::install::{Package, find_binary};
use crate::process::{ManagedProcess, ensure_port_free, free_port};

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn binary(package: &Package) -> Result<PathBuf> {
    find_binary(package).ok_or_else(|| {
        format!(
            "{} is not installed (package {}): run `cargo xtask up` as root on Debian to install it, or `sudo apt-get install -y {}`",
            package.binary, package.name, package.name
        )
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// How often JetStream syncs its files to disk: `always`, before every
/// acknowledgement, so neither a SIGKILL nor a power cut loses a publish
/// the server acknowledged (a consumer's acks are still written just after
/// they are confirmed: a crash may forget the last few, whose messages then
/// come again). The cost is measured in BENCHMARKS.md; compose runs the
/// same setting.
pub const NATS_SYNC_INTERVAL: &str = "always";

/// A `nats-server` with JetStream, alone or as one node of a local cluster
/// ([`Nats::cluster`]), configured by a file it writes in its folder.
#[derive(Debug)]
pub struct Nats {
    pub port: u16,
    pub monitor_port: u16,
    pub dir: PathBuf,
    /// JetStream's `sync_interval` ([`NATS_SYNC_INTERVAL`] unless changed
    /// before a restart, as a benchmark of its cost does).
    pub sync_interval: String,
    cluster: Option<ClusterNode>,
    /// TLS with client certificates mapped to users ([`Nats::start_tls`]).
    tls: Option<NatsTls>,
    process: Option<ManagedProcess>,
}

/// A server that speaks TLS only and logs each client in as the user its
/// certificate names.
#[derive(Debug, Clone)]
struct NatsTls {
    certs: crate::certs::Certs,
    /// nats-server's `authorization` block (`deploy/nats/users.conf`).
    users: String,
}

/// This node's place in a local cluster.
#[derive(Debug, Clone)]
struct ClusterNode {
    name: String,
    server_name: String,
    port: u16,
    routes: Vec<u16>,
}

impl Nats {
    /// Starts on free ports with JetStream data under `dir`. A port is free
    /// when chosen but another process may take it before the server binds
    /// it (tests start many servers at once): then it tries fresh ports.
    pub fn start(dir: &Path) -> Result<Nats> {
        Nats::start_with(dir, None, NATS_SYNC_INTERVAL)
    }

    pub fn start_on(dir: &Path, port: u16, monitor_port: u16) -> Result<Nats> {
        Nats::start_with(dir, Some((port, monitor_port)), NATS_SYNC_INTERVAL)
    }

    /// Starts on `ports` (client, monitoring), or on free ones when `None`,
    /// with JetStream's `sync_interval` set to `sync_interval`.
    pub fn start_with(dir: &Path, ports: Option<(u16, u16)>, sync_interval: &str) -> Result<Nats> {
        let mut attempt = 0;
        loop {
            let (port, monitor_port) = ports.unwrap_or_else(|| (free_port(), free_port()));
            let mut nats = Nats::new(dir, port, monitor_port, None);
            nats.sync_interval = sync_interval.to_owned();
            match nats.restart() {
                Ok(()) => return Ok(nats),
                Err(e) if ports.is_none() && e.contains("address already in use") && attempt < 4 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn new(dir: &Path, port: u16, monitor_port: u16, cluster: Option<ClusterNode>) -> Nats {
        Nats {
            port,
            monitor_port,
            dir: dir.to_owned(),
            sync_interval: NATS_SYNC_INTERVAL.to_owned(),
            cluster,
            tls: None,
            process: None,
        }
    }

    /// Starts on `ports` (free ones when `None`) serving TLS only with
    /// `certs` (`nats.pem`),
    /// verifying client certificates against their CA and logging each
    /// client in as the user of `users` (an `authorization` block) its
    /// certificate names; a client without one is refused.
    pub fn start_tls(dir: &Path, ports: Option<(u16, u16)>, certs: &crate::certs::Certs, users: &str) -> Result<Nats> {
        let (port, monitor_port) = ports.unwrap_or_else(|| (free_port(), free_port()));
        let mut nats = Nats::new(dir, port, monitor_port, None);
        nats.tls = Some(NatsTls {
            certs: certs.clone(),
            users: users.to_owned(),
        });
        nats.restart()?;
        Ok(nats)
    }

    /// `size` nodes of one cluster (`moat`), each with its own folder under
    /// `dir`, routes to every other node and JetStream clustered over them:
    /// the production topology on one machine.
    pub fn cluster(dir: &Path, size: usize) -> Result<Vec<Nats>> {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, route_port) in route_ports.iter().enumerate() {
            let node = ClusterNode {
                name: "moat".into(),
                server_name: format!("n{}", i + 1),
                port: *route_port,
                routes: route_ports.iter().copied().filter(|p| p != route_port).collect(),
            };
            let mut nats = Nats::new(&dir.join(format!("n{}", i + 1)), free_port(), free_port(), Some(node));
            nats.restart()?;
            nodes.push(nats);
        }
        Ok(nodes)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn monitor_addr(&self) -> String {
        format!("127.0.0.1:{}", self.monitor_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedProcess::pid)
    }

    /// The server's name (`n1`… in a cluster).
    pub fn server_name(&self) -> &str {
        self.cluster.as_ref().map_or("moat", |c| c.server_name.as_str())
    }

    fn write_config(&self) -> Result<PathBuf> {
        let quote = |path: &Path| format!("{:?}", path.display().to_string());
        let mut config = format!(
            "server_name: {name:?}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
             jetstream {{\n  store_dir: {store}\n  sync_interval: {sync}\n}}\n",
            name = self.server_name(),
            port = self.port,
            monitor = self.monitor_port,
            store = quote(&self.dir.join("jetstream")),
            sync = self.sync_interval,
        );
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster
                .routes
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            config.push_str(&format!(
                "cluster {{\n  name: {:?}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                cluster.name,
                cluster.port,
                routes.join(", ")
            ));
        }
        if let Some(tls) = &self.tls {
            let pair = tls.certs.pair("nats");
            config.push_str(&format!(
                "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify_and_map: true\n  timeout: 2\n}}\n{}",
                quote(&pair.cert),
                quote(&pair.key),
                quote(&tls.certs.ca),
                tls.users
            ));
        }
        let path = self.dir.join("nats.conf");
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    }

    /// (Re)starts on the same ports and data, so JetStream state survives.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        create_dir(&self.dir)?;
        ensure_port_free(self.port, "nats-server")?;
        ensure_port_free(self.monitor_port, "nats-server's monitor")?;
        if let Some(cluster) = &self.cluster {
            ensure_port_free(cluster.port, "nats-server's cluster routes")?;
        }
        let config = self.write_config()?;
        let mut cmd = Command::new(nats_server()?);
        cmd.arg("-c").arg(&config);
        let mut process = ManagedProcess::spawn("nats-server", cmd, &self.dir.join("nats.log"))?;
        let started = std::time::Instant::now();
        loop {
            let probe = wait_http_ok(
                &self.monitor_addr(),
                "/healthz?js-enabled-only=true",
                std::time::Duration::from_millis(250),
            );
            // A server that exited (a port taken, a bad flag) will not come
            // up, and an answer is only its own while it runs.
            if !process.is_running() || (probe.is_err() && started.elapsed() > START_TIMEOUT) {
                let tail = process.log_tail(20);
                process.kill();
                let why = probe.err().unwrap_or_else(|| "it exited".into());
                return Err(format!("nats-server did not become healthy: {why}\n{tail}"));
            }
            if probe.is_ok() {
                break;
            }
        }
        self.process = Some(process);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Leaves the server running after this handle is gone; returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.process.take().and_then(ManagedProcess::detach)
    }
}

/// ClickHouse at the pinned release ([`crate::engines::CLICKHOUSE`]): the
/// engine inside PyPI's `chdb-core`, serving its HTTP and native TCP ports
/// from a Python process, with config, data and logs under `dir`. It
/// behaves as a `clickhouse-server` would for moat: MergeTree engines,
/// materialized views, TTL and mutations, data kept across a SIGKILL. What
/// it lacks (`users.xml`, clusters) moat's tests do not use.
#[derive(Debug)]
pub struct ClickHouse {
    pub http_port: u16,
    pub tcp_port: u16,
    pub dir: PathBuf,
    process: Option<ManagedProcess>,
}

/// Runs the embedded server until the process is signalled: the listen
/// statements start the servers, and the query after them never ends.
const CHDB_SERVE: &str = r#"
import os, sys
sys.path.insert(0, os.environ["MOAT_CHDB_DIR"])
import _chdb
_chdb.query(
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM numbers(1000000000000) SETTINGS max_block_size = 1 FORMAT Null",
    "TabSeparated",
    path=os.environ["MOAT_CLICKHOUSE_DATA"],
)
"#;

impl ClickHouse {
    pub fn start(dir: &Path) -> Result<ClickHouse> {
        let mut attempt = 0;
        loop {
            match ClickHouse::start_on(dir, free_port()) {
                Err(e) if e.to_lowercase().contains("address already in use") && attempt < 4 => attempt += 1,
                result => return result,
            }
        }
    }

    pub fn start_on(dir: &Path, http_port: u16) -> Result<ClickHouse> {
        let mut ch = ClickHouse {
            http_port,
            tcp_port: free_port(),
            dir: dir.to_owned(),
            process: None,
        };
        ch.restart()?;
        Ok(ch)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedProcess::pid)
    }

    fn write_config(&self) -> Result<()> {
        create_dir(&self.dir.join("log"))?;
        create_dir(&self.dir.join("data"))?;
        let log = self.dir.join("log");
        let config = format!(
            r#"<?xml version="1.0"?>
<clickhouse>
    <logger>
        <level>warning</level>
        <log>{log}/clickhouse-server.log</log>
        <errorlog>{log}/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <timezone>UTC</timezone>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
</clickhouse>
"#,
            log = log.display(),
            http = self.http_port,
            tcp = self.tcp_port,
        );
        // The embedded server reads `config.xml` from its working directory.
        let path = self.dir.join("config.xml");
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// (Re)starts on the same ports and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        ensure_port_free(self.http_port, "ClickHouse")?;
        ensure_port_free(self.tcp_port, "ClickHouse's native protocol")?;
        self.write_config()?;
        let mut cmd = Command::new(python()?);
        cmd.args(["-c", CHDB_SERVE])
            .current_dir(&self.dir)
            .env("MOAT_CHDB_DIR", chdb_module_dir()?)
            .env("MOAT_CLICKHOUSE_DATA", self.dir.join("data"));
        let mut process = ManagedProcess::spawn("clickhouse", cmd, &self.dir.join("log/stdout.log"))?
            .with_grace(Duration::from_secs(15));
        let started = std::time::Instant::now();
        loop {
            let probe = wait_http_ok(&self.http_addr(), "/ping", Duration::from_millis(250));
            let Err(e) = probe else { break };
            if !process.is_running() || started.elapsed() > START_TIMEOUT {
                process.kill();
                let err_log =
                    std::fs::read_to_string(self.dir.join("log/clickhouse-server.err.log")).unwrap_or_default();
                let tail: Vec<&str> = err_log.lines().rev().take(10).collect();
                return Err(format!(
                    "ClickHouse did not answer /ping: {e}\n{}\n{}",
                    process.log_tail(10),
                    tail.join("\n")
                ));
            }
        }
        self.process = Some(process);
        Ok(())
    }

    /// Runs one SQL statement over HTTP and returns the body.
    pub fn query(&self, sql: &str) -> Result<String> {
        let r = http_post(&self.http_addr(), "/", sql, Duration::from_secs(30))?;
        if r.is_success() {
            Ok(r.body)
        } else {
            Err(format!(
                "ClickHouse answered {} to `{sql}`: {}",
                r.status,
                r.body.trim()
            ))
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Leaves the server running after this handle is gone; returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.process.take().and_then(ManagedProcess::detach)
    }
}

/// A PostgreSQL cluster initialised in `dir`, run as the `postgres` user
/// when the caller is root (initdb refuses to run as root).
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    process: Option<ManagedProcess>,
}

impl Postgres {
    pub fn start(dir: &Path) -> Result<Postgres> {
        let initdb = binary(&Package::POSTGRES)?;
        let bin_dir = initdb.parent().map(Path::to_owned).unwrap_or_default();
        let data = dir.join("data");
        let socket = dir.join("sock");
        create_dir(dir)?;
        create_dir(&socket)?;
        let owner = Owner::for_postgres()?;
        owner.chown(dir)?;
        owner.chown(&socket)?;
        if !data.join("PG_VERSION").exists() {
            let mut cmd = Command::new(&initdb);
            cmd.arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
            owner.apply(&mut cmd);
            let out = cmd.output().map_err(|e| format!("running initdb: {e}"))?;
            if !out.status.success() {
                return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        let mut pg = Postgres {
            port: free_port(),
            dir: dir.to_owned(),
            process: None,
        };
        let mut cmd = Command::new(bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &pg.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(&socket);
        owner.apply(&mut cmd);
        let process = ManagedProcess::spawn("postgres", cmd, &dir.join("postgres.log"))?;
        pg.process = Some(process);
        pg.wait_ready()?;
        Ok(pg)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while std::time::Instant::now() < deadline {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            if log.contains("database system is ready to accept connections") {
                return Ok(());
            }
            if let Some(p) = &mut self.process
                && !p.is_running()
            {
                return Err(format!("postgres exited at start:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("postgres did not become ready within 30 s".into())
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            // SIGINT is PostgreSQL's "fast" shutdown: it does not wait for
            // clients to disconnect, unlike SIGTERM's "smart" one.
            p.signal(nix::sys::signal::Signal::SIGINT);
            p.stop();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The user PostgreSQL runs as: `postgres` when we are root, ourselves otherwise.
struct Owner(Option<(u32, u32)>);

impl Owner {
    fn for_postgres() -> Result<Owner> {
        if !nix::unistd::Uid::effective().is_root() {
            return Ok(Owner(None));
        }
        let user = nix::unistd::User::from_name("postgres")
            .map_err(|e| format!("looking up user postgres: {e}"))?
            .ok_or("running as root needs the `postgres` user (installed with the postgresql package)")?;
        Ok(Owner(Some((user.uid.as_raw(), user.gid.as_raw()))))
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.0 {
            nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.0 {
            cmd.uid(uid).gid(gid);
        }
    }
}
