//! `cargo xtask up | down | status`: a local stack on real NATS and ClickHouse.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moat_devstack::stack::{EXCHANGE, Ports, Stack, StackSpec, start_ganache};
use moat_devstack::{engines, http_get, peers};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{cargo, root};

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

pub fn up(detach: bool, tls: bool) -> Result<(), String> {
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
    let ports = Ports {
        nats: Some((
            port("MOAT_DEV_NATS_PORT", 4222)?,
            port("MOAT_DEV_NATS_MONITOR_PORT", 8222)?,
        )),
        clickhouse: Some(port("MOAT_DEV_CLICKHOUSE_PORT", 8123)?),
        exchange: port("MOAT_DEV_EXCHANGE_PORT", 9443)?,
        ..Ports::DEV
    };
    let ganache_port = port("MOAT_DEV_GANACHE_PORT", 8545)?;
    let ganache = match start_ganache(&root, ganache_port, &dir.join("logs/ganache.log")) {
        Ok(process) => Some(process),
        Err(error) => {
            println!("ganache did not start, so chain ethereum has no upstream: {error}");
            None
        }
    };
    let token = dev_token()?;
    let token_file = dir.join("dev.token");
    write_secret(
        &token_file,
        &format!("# token of the development strategy `dev` (cargo xtask up)\n{token}\n"),
    )?;
    let mut spec = StackSpec::new(&root, &dir, ports);
    spec.tls = if tls { Some(certs()?) } else { None };
    spec.tokens = vec![("dev".to_owned(), token.clone())];
    spec.ethereum_upstream = ganache.as_ref().map(|_| format!("http://127.0.0.1:{ganache_port}"));
    spec.ports.prometheus = port("MOAT_DEV_PROMETHEUS_PORT", 9095)?;
    spec.prometheus = Some(Duration::from_secs(5));
    let stack = Stack::start(spec).map_err(|e| {
        if e.contains("already in use") {
            format!("{e}\nis a stack not stopped with `cargo xtask down` running? Stop it, or choose other ports (`cargo xtask help`)")
        } else {
            e
        }
    })?;

    print_table(&stack);
    print_examples(&token, &token_file, &stack, ganache.is_some());

    if detach {
        let mut parts = stack.detach();
        if let Some(node) = ganache {
            let addr = format!("127.0.0.1:{ganache_port}");
            parts.push(("ganache".to_owned(), node.detach().unwrap_or(0), addr));
        }
        let lines: Vec<String> = parts
            .iter()
            .map(|(name, pid, addr)| format!("{name} {pid} {addr}"))
            .collect();
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
        if let Some(name) = stack.exited() {
            eprintln!(
                "{name} exited unexpectedly; last log lines ({}):\n{}",
                stack.log(name).display(),
                stack.log_tail(name)
            );
            break;
        }
    }
    println!("stopping services");
    drop(stack);
    drop(ganache);
    println!("stopped");
    Ok(())
}

/// `cargo xtask certs`: the development CA and certificates under
/// target/moat-dev/tls, made where missing or about to expire.
pub fn certs() -> Result<moat_devstack::certs::Certs, String> {
    let dir = dev_dir().join("tls");
    let (certs, made) = moat_devstack::certs::ensure(&dir)?;
    if made.is_empty() {
        println!("certificates in {} are valid; none made", dir.display());
    } else {
        println!("made in {}: {}", dir.display(), made.join(", "));
    }
    let names: Vec<&str> = moat_devstack::certs::IDENTITIES.iter().map(|(n, _, _)| *n).collect();
    println!(
        "CA: {}
per identity ({}): <name>.pem and <name>-key.pem",
        certs.ca.display(),
        names.join(", ")
    );
    Ok(certs)
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

/// Writes `text` to `path` readable by its owner only.
fn write_secret(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn print_examples(token: &str, token_file: &std::path::Path, stack: &Stack, rpc: bool) {
    let grpc = format!("127.0.0.1:{}", stack.spec.ports.gateway_grpc);
    let http = stack.http_addr("gateway");
    println!(
        "\ndevelopment strategy `dev`, token {token} (also in {})",
        token_file.display()
    );
    if let Some(certs) = &stack.spec.tls {
        print_tls_examples(token, token_file, certs, &grpc, &http, rpc);
        return;
    }
    println!(
        "gateway in PLAINTEXT (development only): gRPC and HTTP unencrypted, gateway to state too; \
         `cargo xtask up --tls` runs TLS and mutual TLS on those hops"
    );
    let port = stack.spec.ports.gateway_grpc;
    let port_env = if port == 50051 {
        String::new()
    } else {
        format!("GATEWAY_PORT={port} ")
    };
    println!("  a Python strategy (sdk/python/README.md):");
    println!("    pip install './sdk/python[web3]'");
    println!(
        "    {port_env}MOAT_TOKEN_FILE={} python3 sdk/python/examples/strategy.py",
        token_file.display()
    );
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' -d '{{\"token\":\"BTC\",\"quote\":\"USD\"}}' {grpc} moat.gateway.v1.MarketService/GetPrice"
    );
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' -d '{{\"data\":\"aGVsbG8=\"}}' {grpc} moat.gateway.v1.StateService/SaveState"
    );
    if rpc {
        println!(
            "  curl -s -H 'authorization: Bearer {token}' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}}' http://{http}/rpc/ethereum"
        );
    }
}

/// How to call a gateway that runs mutual TLS with the development CA.
fn print_tls_examples(
    token: &str,
    token_file: &std::path::Path,
    certs: &moat_devstack::certs::Certs,
    grpc: &str,
    http: &str,
    rpc: bool,
) {
    let dev = certs.pair("dev");
    let (ca, cert, key) = (certs.ca.display(), dev.cert.display(), dev.key.display());
    println!(
        "gateway in MUTUAL TLS: gRPC and HTTP over TLS 1.3 with {}, strategies present a certificate of \
         the same CA (the `dev` strategy's: {cert}); gateway to state is mutual TLS too",
        certs.dir.join("gateway.pem").display()
    );
    println!("  a Python strategy (sdk/python/README.md):");
    println!("    pip install './sdk/python[web3]'");
    println!(
        "    MOAT_TLS_CA={ca} MOAT_TLS_CERT={cert} MOAT_TLS_KEY={key} MOAT_TOKEN_FILE={} python3 sdk/python/examples/strategy.py",
        token_file.display()
    );
    println!(
        "  grpcurl -cacert {ca} -cert {cert} -key {key} -authority localhost -H 'authorization: Bearer {token}' \
         -d '{{\"token\":\"BTC\",\"quote\":\"USD\"}}' {grpc} moat.gateway.v1.MarketService/GetPrice"
    );
    if rpc {
        println!(
            "  curl -s --cacert {ca} --cert {cert} --key {key} -H 'authorization: Bearer {token}' \
             -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}}' https://localhost:{port}/rpc/ethereum",
            port = http.rsplit(':').next().unwrap_or("9090")
        );
    }
    println!("  openssl s_client -connect {grpc} -CAfile {ca} -servername localhost -brief </dev/null");
}

fn print_table(stack: &Stack) {
    let ports = &stack.spec.ports;
    let row = |component: &str, endpoints: String| println!("{component:<20} {:<8} {endpoints}", "healthy");
    println!("\n{:<20} {:<8} endpoints", "component", "status");
    let tls = stack.spec.tls.is_some();
    for nats in &stack.nats {
        row(
            "nats-server",
            format!(
                "{} ({}monitor http://{})",
                nats.url(),
                if tls { "TLS, a user per service; " } else { "" },
                nats.monitor_addr()
            ),
        );
    }
    row(
        "clickhouse-server",
        format!("{} (database {})", stack.clickhouse_url, stack.spec.database),
    );
    let exchange = stack.http_addr("exchange");
    row(
        "local exchange",
        format!("ws://{exchange}/stream, http://{exchange}/moat/stats (generated session, Binance protocol)"),
    );
    row(
        "moat-state",
        format!(
            "gRPC 127.0.0.1:{}{}, HTTP http://{}/health",
            ports.state_grpc,
            if tls { " (mutual TLS, the gateway only)" } else { "" },
            stack.http_addr("state")
        ),
    );
    row(
        "moat-storage-writer",
        format!("HTTP http://{}/health", stack.http_addr("storage-writer")),
    );
    let scheme = if stack.spec.tls.is_some() { "https" } else { "http" };
    row(
        "moat-gateway",
        format!(
            "gRPC 127.0.0.1:{} ({}), HTTP {scheme}://{}/health, /rpc/{{chain}}",
            ports.gateway_grpc,
            if stack.spec.tls.is_some() {
                "mutual TLS"
            } else {
                "plaintext"
            },
            stack.http_addr("gateway")
        ),
    );
    row(
        "moat-collector",
        format!(
            "HTTP http://{}/health, /status (venue `{EXCHANGE}`)",
            stack.http_addr("collector")
        ),
    );
    if let Some(prometheus) = &stack.prometheus {
        row(
            "prometheus",
            format!(
                "{url} (alerts at {url}/alerts; moat's rules loaded)",
                url = prometheus.url()
            ),
        );
    }
    println!("\nlogs: {}", stack.spec.dir.join("logs").display());
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
            "prometheus" => "/-/ready",
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
