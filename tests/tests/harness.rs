//! The dependency harness itself: it starts real servers and cleans up.

use std::time::Duration;

use moat_devstack::{ClickHouse, Nats, Postgres, http_get};
use moat_integration_tests::scratch;

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

fn process_exists(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[test]
fn nats_starts_with_jetstream_and_stops_cleanly() {
    let dir = scratch();
    let mut nats = Nats::start(dir.path()).unwrap();
    let pid = nats.pid().unwrap();
    let jsz = http_get(&nats.monitor_addr(), "/jsz", Duration::from_secs(2)).unwrap();
    assert!(jsz.is_success());
    assert!(jsz.body.contains("\"config\""), "JetStream not enabled: {}", jsz.body);
    assert!(port_open(nats.port));

    // A restart keeps the port, so clients reconnect to the same address.
    let port = nats.port;
    nats.restart().unwrap();
    assert_eq!(nats.port, port);
    assert!(port_open(port));

    let pid2 = nats.pid().unwrap();
    drop(nats);
    assert!(!process_exists(pid), "first nats-server {pid} left behind");
    assert!(!process_exists(pid2), "nats-server {pid2} left behind");
    assert!(!port_open(port), "port {port} still open after stop");
}

#[test]
fn clickhouse_starts_answers_queries_and_stops() {
    let dir = scratch();
    let ch = ClickHouse::start(dir.path()).unwrap();
    let pid = ch.pid().unwrap();
    assert_eq!(ch.query("SELECT 1 + 1").unwrap().trim(), "2");
    let err = ch.query("SELECT nonsense(").unwrap_err();
    assert!(err.contains("Syntax error"), "{err}");
    let port = ch.http_port;
    drop(ch);
    assert!(!process_exists(pid), "clickhouse-server {pid} left behind");
    assert!(!port_open(port));
}

#[test]
fn killed_server_is_gone_at_once() {
    let dir = scratch();
    let mut nats = Nats::start(dir.path()).unwrap();
    let pid = nats.pid().unwrap();
    nats.kill();
    assert!(!process_exists(pid));
    assert!(!port_open(nats.port));
}

#[test]
fn postgres_starts_as_its_own_user_and_stops() {
    let dir = tempfile::Builder::new().prefix("moat-pg-").tempdir_in("/tmp").unwrap();
    let pg = Postgres::start(dir.path()).unwrap();
    let port = pg.port;
    assert!(port_open(port));
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    drop(pg);
    assert!(!port_open(port), "postgres still listening on {port}");
}

#[test]
fn the_harness_runs_the_pinned_engines() {
    let dir = scratch();
    let nats = Nats::start(&dir.path().join("nats")).unwrap();
    let varz = http_get(&nats.monitor_addr(), "/varz", Duration::from_secs(2)).unwrap();
    let varz: serde_json::Value = serde_json::from_str(&varz.body).unwrap();
    assert_eq!(varz["version"], moat_devstack::engines::NATS.release, "{varz}");
    // JetStream syncs before every acknowledgement.
    let jsz = http_get(&nats.monitor_addr(), "/jsz", Duration::from_secs(2)).unwrap();
    let jsz: serde_json::Value = serde_json::from_str(&jsz.body).unwrap();
    assert_eq!(jsz["config"]["sync_always"], true, "{jsz}");

    let ch = ClickHouse::start(&dir.path().join("clickhouse")).unwrap();
    let version = ch.query("SELECT version()").unwrap();
    let release = moat_devstack::engines::CLICKHOUSE.release;
    assert!(
        version.starts_with(&format!("{release}.")),
        "ClickHouse {version}, pinned {release}"
    );
}

#[test]
fn a_port_held_by_a_stranger_is_refused_not_taken_for_the_server() {
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stranger.local_addr().unwrap().port();
    let dir = scratch();
    let err = Nats::start_on(dir.path(), port, moat_devstack::free_port()).unwrap_err();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("already in use"),
        "{err}"
    );
    let err = ClickHouse::start_on(&dir.path().join("ch"), port).unwrap_err();
    assert!(err.contains("already in use"), "{err}");
}
