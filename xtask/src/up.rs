//! `cargo xtask up | down | status`: a local stack on real NATS and ClickHouse.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moat_devstack::{ClickHouse, ManagedProcess, Nats, engines, http_get, peers, wait_http_ok};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::stack::{Deps, EXCHANGE_SYMBOLS, SERVICES, binary, command};
use crate::{cargo, root};

const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

fn port(var: &str, default: u16) -> Result<u16, String> {
    match std::env::var(var) {
        Ok(v) => v.parse().map_err(|_| format!("{var}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

fn dev_dir() -> PathBuf {
    root().join("target").join("moat-dev")
}

fn pid_file() -> PathBuf {
    dev_dir().join("pids")
}

/// `(name, pid, health address)` of a detached stack, in start order.
fn read_pids() -> Vec<(String, i32, String)> {
    let text = std::fs::read_to_string(pid_file()).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next()?.to_owned();
            let pid = parts.next()?.parse().ok()?;
            let health = parts.next().unwrap_or("-").to_owned();
            Some((name, pid, health))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

pub fn up(detach: bool) -> Result<(), String> {
    let running: Vec<_> = read_pids().into_iter().filter(|(_, pid, _)| alive(*pid)).collect();
    if !running.is_empty() {
        return Err(format!(
            "a detached stack is already running ({} processes); stop it with `cargo xtask down`",
            running.len()
        ));
    }
    let root = root();
    engines::ensure_all()?;
    // ganache is chain ethereum's upstream; Node.js comes from apt if need be.
    if let Err(error) = peers::ensure_node_peers(&root) {
        println!("the npm test peers could not be installed, so chain ethereum has no upstream: {error}");
    }
    cargo(&["build", "--bins"])?;

    let dir = dev_dir();
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    println!(
        "starting nats-server {} and ClickHouse {} (data in {})",
        engines::NATS.release,
        engines::CLICKHOUSE.release,
        dir.display()
    );
    let nats = Nats::start_on(
        &dir.join("nats"),
        port("MOAT_DEV_NATS_PORT", 4222)?,
        port("MOAT_DEV_NATS_MONITOR_PORT", 8222)?,
    )?;
    let clickhouse = ClickHouse::start_on(&dir.join("clickhouse"), port("MOAT_DEV_CLICKHOUSE_PORT", 8123)?)?;
    let token = dev_token()?;
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, format!("# written by cargo xtask up\ndev {token}\n")).map_err(|e| e.to_string())?;
    let ganache = start_ganache(&root, &dir)?;
    let (exchange, exchange_addr) = start_exchange(&root, &dir)?;
    let deps = Deps {
        nats_url: nats.url(),
        clickhouse_url: clickhouse.url(),
        data_dir: dir.clone(),
        tokens_file,
        ethereum_upstream: ganache.as_ref().map(|(_, url)| url.clone()),
        exchange: exchange_addr.clone(),
    };

    migrate(&root, &deps)?;

    // One at a time, each healthy before the next: the gateway is then
    // subscribed before the collector publishes its first book snapshots.
    let mut services: Vec<(ManagedProcess, &'static str)> = Vec::new();
    for service in SERVICES {
        let log = dir.join("logs").join(format!("{}.log", service.name));
        port_free(service.health, service.name)?;
        let mut process = ManagedProcess::spawn(service.name, command(&root, service, &deps), &log)?;
        wait_own_health(&mut process, service.health, "/health")?;
        services.push((process, service.health));
    }

    print_table(&nats, &clickhouse, &exchange_addr, &dir);
    print_examples(&token, ganache.is_some());

    if detach {
        let mut lines = vec![
            format!("nats-server {} {}", nats.pid().unwrap_or(0), nats.monitor_addr()),
            format!(
                "clickhouse-server {} {}",
                clickhouse.pid().unwrap_or(0),
                clickhouse.http_addr()
            ),
        ];
        for (process, health) in services {
            let name = process.name.clone();
            let pid = process.detach().unwrap_or(0);
            lines.push(format!("{name} {pid} {health}"));
        }
        lines.push(format!("exchange {} {exchange_addr}", exchange.detach().unwrap_or(0)));
        if let Some((node, url)) = ganache {
            let addr = url.trim_start_matches("http://").to_owned();
            lines.push(format!("ganache {} {addr}", node.detach().unwrap_or(0)));
        }
        nats.detach();
        clickhouse.detach();
        std::fs::write(pid_file(), lines.join("\n") + "\n").map_err(|e| e.to_string())?;
        println!("\ndetached; `cargo xtask status` shows it, `cargo xtask down` stops it");
        return Ok(());
    }

    println!("\nCtrl-C stops everything");
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        if let Some((process, _)) = services.iter_mut().find(|(p, _)| !p.is_running_now()) {
            eprintln!(
                "{} exited unexpectedly; last log lines ({}):\n{}",
                process.name,
                process.log.display(),
                process.log_tail(15)
            );
            break;
        }
    }
    println!("stopping services");
    // Services first, in reverse start order, so they drain into live
    // dependencies; then ClickHouse and NATS (dropped last).
    while let Some((mut process, _)) = services.pop() {
        process.stop();
    }
    drop(ganache);
    drop(exchange);
    drop(clickhouse);
    drop(nats);
    println!("stopped");
    Ok(())
}

/// A random development token for the `dev` strategy.
fn dev_token() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts the local exchange (a generated session in Binance's protocol)
/// that the collector's venue `local` reads.
fn start_exchange(root: &Path, dir: &Path) -> Result<(ManagedProcess, String), String> {
    let addr = format!("127.0.0.1:{}", port("MOAT_DEV_EXCHANGE_PORT", 9443)?);
    let mut cmd = std::process::Command::new(binary(root, "moat-collector"));
    cmd.current_dir(root).args(["exchange", "--listen", &addr]);
    for symbol in EXCHANGE_SYMBOLS {
        cmd.args(["--symbol", symbol]);
    }
    port_free(&addr, "the local exchange")?;
    let mut process = ManagedProcess::spawn("exchange", cmd, &dir.join("logs/exchange.log"))?;
    wait_own_health(&mut process, &addr, "/moat/stats")?;
    Ok((process, addr))
}

/// Fails when something else already listens on `addr` (host:port): the
/// child would die on its bind while the stranger answered its probe.
fn port_free(addr: &str, what: &str) -> Result<(), String> {
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{what}: {addr:?} has no port"))?;
    moat_devstack::ensure_port_free(port, what).map_err(|e| {
        format!("{e}; is a stack not stopped with `cargo xtask down` running? Stop it, or choose other ports (`cargo xtask help`)")
    })
}

/// Waits until `process` answers `path` on `addr`, failing at once when
/// the process itself has exited, so an answer from a stranger on the same
/// port is never taken for the child's.
fn wait_own_health(process: &mut ManagedProcess, addr: &str, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let probe = wait_http_ok(addr, path, Duration::from_millis(250));
        if !process.is_running() {
            return Err(format!(
                "{} exited during start-up; last log lines ({}):\n{}",
                process.name,
                process.log.display(),
                process.log_tail(15)
            ));
        }
        match probe {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(format!(
                    "{} did not become healthy: {error}\nlast log lines ({}):\n{}",
                    process.name,
                    process.log.display(),
                    process.log_tail(15)
                ));
            }
            Err(_) => {}
        }
    }
}

/// Starts ganache (installed with `npm ci` in `tests/peers`) as the
/// upstream of chain `ethereum`, when Node.js and the package are there.
fn start_ganache(root: &Path, dir: &Path) -> Result<Option<(ManagedProcess, String)>, String> {
    let port = port("MOAT_DEV_GANACHE_PORT", 8545)?;
    let cmd = match moat_devstack::ganache_command(root, port) {
        Ok(cmd) => cmd,
        Err(error) => {
            println!("ganache is not installed, so chain ethereum has no upstream: {error}");
            return Ok(None);
        }
    };
    let addr = format!("127.0.0.1:{port}");
    port_free(&addr, "ganache")?;
    let mut process = ManagedProcess::spawn("ganache", cmd, &dir.join("logs/ganache.log"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        if !process.is_running() {
            return Err(format!("ganache exited during start-up:\n{}", process.log_tail(15)));
        }
        if Instant::now() > deadline {
            return Err(format!("ganache did not listen on {addr} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Some((process, format!("http://{addr}"))))
}

fn print_examples(token: &str, rpc: bool) {
    println!("\ndevelopment strategy `dev`, token {token}");
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' -d '{{\"token\":\"BTC\",\"quote\":\"USD\"}}' 127.0.0.1:50051 moat.gateway.v1.MarketService/GetPrice"
    );
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' -d '{{\"data\":\"aGVsbG8=\"}}' 127.0.0.1:50051 moat.gateway.v1.StateService/SaveState"
    );
    if rpc {
        println!(
            "  curl -s -H 'authorization: Bearer {token}' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}}' http://127.0.0.1:9090/rpc/ethereum"
        );
    }
}

fn migrate(root: &Path, deps: &Deps) -> Result<(), String> {
    let status = std::process::Command::new(binary(root, "moat-storage-writer"))
        .arg("migrate")
        .current_dir(root)
        .env("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", &deps.clickhouse_url)
        .status()
        .map_err(|e| format!("running moat-storage-writer migrate: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("moat-storage-writer migrate failed with {status}"))
    }
}

fn print_table(nats: &Nats, clickhouse: &ClickHouse, exchange: &str, dir: &Path) {
    println!("\n{:<20} {:<8} endpoints", "component", "status");
    println!(
        "{:<20} {:<8} {} (monitor http://{})",
        "nats-server",
        "healthy",
        nats.url(),
        nats.monitor_addr()
    );
    println!(
        "{:<20} {:<8} {} (database moat)",
        "clickhouse-server",
        "healthy",
        clickhouse.url()
    );
    println!(
        "{:<20} {:<8} ws://{exchange}/stream, http://{exchange}/moat/stats (generated session, Binance protocol)",
        "local exchange", "healthy"
    );
    for service in SERVICES {
        println!(
            "{:<20} {:<8} {}",
            format!("moat-{}", service.name),
            "healthy",
            service.endpoints
        );
    }
    println!("\nlogs: {}", dir.join("logs").display());
}

pub fn down() -> Result<(), String> {
    let entries = read_pids();
    if entries.is_empty() {
        println!("no detached stack recorded in {}", pid_file().display());
        return Ok(());
    }
    for (name, pid, _) in entries.iter().rev() {
        if !alive(*pid) {
            continue;
        }
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            println!("{name} (pid {pid}) killed after 15 s");
        } else {
            println!("{name} (pid {pid}) stopped");
        }
    }
    std::fs::remove_file(pid_file()).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn status() -> Result<(), String> {
    let entries = read_pids();
    if entries.is_empty() {
        println!("no detached stack (start one with `cargo xtask up --detach`)");
        return Ok(());
    }
    let mut all_ok = true;
    println!("{:<20} {:<8} {:<9} health", "component", "pid", "process");
    for (name, pid, health) in entries {
        let running = alive(pid);
        let path = match name.as_str() {
            "nats-server" => "/healthz",
            "clickhouse-server" => "/ping",
            "exchange" => "/moat/stats",
            _ => "/health",
        };
        let probe = if running && name == "ganache" {
            match std::net::TcpStream::connect(&health) {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("{health}: {e}"),
            }
        } else if running {
            match http_get(&health, path, Duration::from_secs(3)) {
                Ok(r) if r.is_success() => "ok".to_owned(),
                Ok(r) => format!("HTTP {}: {}", r.status, r.body.trim()),
                Err(e) => e,
            }
        } else {
            "-".to_owned()
        };
        all_ok &= running && probe == "ok";
        println!(
            "{name:<20} {pid:<8} {:<9} {probe}",
            if running { "running" } else { "gone" }
        );
    }
    if all_ok {
        Ok(())
    } else {
        Err("some components are down or unhealthy".into())
    }
}
