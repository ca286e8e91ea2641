//! NATS (with JetStream), ClickHouse and PostgreSQL as managed children.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::http::{http_post, wait_http_ok};
use crate::install::{Package, find_binary};
use crate::process::{ManagedProcess, free_port};

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

/// A `nats-server` with JetStream.
#[derive(Debug)]
pub struct Nats {
    pub port: u16,
    pub monitor_port: u16,
    pub dir: PathBuf,
    process: Option<ManagedProcess>,
}

impl Nats {
    /// Starts on free ports with JetStream data under `dir`. A port is free
    /// when chosen but another process may take it before the server binds
    /// it (tests start many servers at once): then it tries fresh ports.
    pub fn start(dir: &Path) -> Result<Nats> {
        let mut attempt = 0;
        loop {
            match Nats::start_on(dir, free_port(), free_port()) {
                Err(e) if e.contains("address already in use") && attempt < 4 => attempt += 1,
                result => return result,
            }
        }
    }

    pub fn start_on(dir: &Path, port: u16, monitor_port: u16) -> Result<Nats> {
        let mut nats = Nats {
            port,
            monitor_port,
            dir: dir.to_owned(),
            process: None,
        };
        nats.restart()?;
        Ok(nats)
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

    /// (Re)starts on the same ports and data, so JetStream state survives.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        create_dir(&self.dir)?;
        let mut cmd = Command::new(binary(&Package::NATS)?);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(self.dir.join("jetstream"));
        let mut process = ManagedProcess::spawn("nats-server", cmd, &self.dir.join("nats.log"))?;
        let started = std::time::Instant::now();
        loop {
            let probe = wait_http_ok(
                &self.monitor_addr(),
                "/healthz?js-enabled-only=true",
                std::time::Duration::from_millis(250),
            );
            let Err(e) = probe else { break };
            // A server that exited (a port taken, a bad flag) will not come up.
            if !process.is_running() || started.elapsed() > START_TIMEOUT {
                let tail = process.log_tail(20);
                process.kill();
                return Err(format!("nats-server did not become healthy: {e}\n{tail}"));
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

/// A `clickhouse-server` with its own config, data and logs under `dir`.
#[derive(Debug)]
pub struct ClickHouse {
    pub http_port: u16,
    pub tcp_port: u16,
    pub interserver_port: u16,
    pub dir: PathBuf,
    process: Option<ManagedProcess>,
}

impl ClickHouse {
    pub fn start(dir: &Path) -> Result<ClickHouse> {
        ClickHouse::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, http_port: u16) -> Result<ClickHouse> {
        let mut ch = ClickHouse {
            http_port,
            tcp_port: free_port(),
            interserver_port: free_port(),
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

    fn write_config(&self) -> Result<PathBuf> {
        let dir = self.dir.display();
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            create_dir(&self.dir.join(sub))?;
        }
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/clickhouse-server.log</log>
        <errorlog>{dir}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <interserver_http_port>{inter}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"#,
            http = self.http_port,
            tcp = self.tcp_port,
            inter = self.interserver_port,
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#;
        let path = self.dir.join("config.xml");
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        std::fs::write(self.dir.join("users.xml"), users).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// (Re)starts on the same ports and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let config = self.write_config()?;
        let mut cmd = Command::new(binary(&Package::CLICKHOUSE)?);
        cmd.arg(format!("--config-file={}", config.display()));
        let mut process = ManagedProcess::spawn("clickhouse-server", cmd, &self.dir.join("log/stdout.log"))?
            .with_grace(Duration::from_secs(15));
        if let Err(e) = wait_http_ok(&self.http_addr(), "/ping", START_TIMEOUT) {
            process.kill();
            let err_log = std::fs::read_to_string(self.dir.join("log/clickhouse-server.err.log")).unwrap_or_default();
            let tail: Vec<&str> = err_log.lines().rev().take(10).collect();
            return Err(format!(
                "clickhouse-server did not answer /ping: {e}\n{}",
                tail.join("\n")
            ));
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
