//! Configuration through the real binaries: layering and the one-line
//! errors for unknown keys and ill-typed values.

use std::process::Command;

use moat_integration_tests::{TestClickHouse, bin, scratch};

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin(binary))
        .args(args)
        .envs(env.iter().copied())
        .env("MOAT_CONFIG_DIR", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn unknown_key_in_file_exits_64_naming_the_key() {
    let dir = scratch();
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, "[nats]\nurl = \"nats://127.0.0.1:1\"\nmax_inflight = 5\n").unwrap();
    let (code, stderr) = run("moat-collector", &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 64, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(stderr.contains("unknown key `nats.max_inflight`"), "{stderr}");
    assert!(stderr.contains("collector.toml"), "{stderr}");
}

#[test]
fn ill_typed_value_names_key_and_value() {
    let dir = scratch();
    let file = dir.path().join("state.toml");
    std::fs::write(&file, "[limits]\nmax_state_bytes = \"big\"\n").unwrap();
    let (code, stderr) = run("moat-state", &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("key `limits.max_state_bytes` is string \"big\""),
        "{stderr}"
    );

    let (code, stderr) = run("moat-state", &[], &[("MOAT_STATE__GRPC__LISTEN", "localhost")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("key `grpc.listen` = \"localhost\""), "{stderr}");
    assert!(stderr.contains("MOAT_STATE__GRPC__LISTEN"), "{stderr}");
}

#[test]
fn bad_value_caught_by_validation_is_named() {
    let (code, stderr) = run(
        "moat-storage-writer",
        &["migrate"],
        &[("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", "tcp://x:9000")],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("key `clickhouse.url` = \"tcp://x:9000\""), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let ch = TestClickHouse::get();
    let db = moat_integration_tests::unique("cfg");
    let dir = scratch();
    let file = dir.path().join("storage-writer.toml");
    // The file points at a port where nothing listens; the environment wins.
    std::fs::write(
        &file,
        format!("[clickhouse]\nurl = \"http://127.0.0.1:1\"\ndatabase = \"{db}\"\n"),
    )
    .unwrap();
    let (code, stderr) = run(
        "moat-storage-writer",
        &["--config", file.to_str().unwrap(), "migrate"],
        &[("MOAT_STORAGE_WRITER__CLICKHOUSE__URL", &ch.url)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ch.query(&format!("EXISTS TABLE {db}.trades")), "1");
    ch.query(&format!("DROP DATABASE {db}"));
}

#[test]
fn a_round_interval_that_would_hold_the_stream_back_is_refused() {
    let (code, stderr) = run(
        "moat-collector",
        &[],
        &[("MOAT_COLLECTOR__PUBLISHER__ROUND_INTERVAL", "50s")],
    );
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains("key `publisher.round_interval` = \"50s\""), "{stderr}");
    assert!(stderr.contains("at most \"1s\""), "{stderr}");
}

#[test]
fn a_zero_the_types_forbid_is_refused_naming_the_key() {
    let (code, stderr) = run("moat-gateway", &[], &[("MOAT_GATEWAY__AUTH__MAX_FAILURES", "0")]);
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains("auth.max_failures"), "{stderr}");
    assert!(stderr.contains("expected a whole number above 0"), "{stderr}");
}

#[test]
fn a_gateway_without_a_certificate_serves_plaintext_only_when_told() {
    let (code, stderr) = run("moat-gateway", &[], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(
        stderr
            .contains("key `tls.cert` = \"\": expected a PEM certificate file (with tls.key), or tls.plaintext = true"),
        "{stderr}"
    );
    let (code, stderr) = run(
        "moat-gateway",
        &[],
        &[
            ("MOAT_GATEWAY__TLS__CERT", "/nonexistent/gateway.pem"),
            ("MOAT_GATEWAY__TLS__KEY", "/nonexistent/gateway-key.pem"),
            ("MOAT_GATEWAY__NATS__URL", "nats://127.0.0.1:1"),
        ],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/gateway.pem"),
        "names the missing file: {stderr}"
    );
}

#[test]
fn every_binary_answers_help_and_refuses_an_unknown_command() {
    for (binary, subcommands) in [
        ("moat-collector", &["serve", "replay", "record", "exchange"][..]),
        ("moat-storage-writer", &["serve", "migrate"][..]),
        ("moat-state", &[][..]),
        ("moat-gateway", &[][..]),
        ("moat", &["doctor", "status", "tail"][..]),
        ("moat-bench", &[][..]),
        ("xtask", &["up", "test", "bench", "chaos", "fuzz", "helm"][..]),
    ] {
        let help = Command::new(bin(binary)).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{binary} --help: {text}");
        assert!(text.contains("Usage:"), "{binary} --help printed no usage: {text}");
        for sub in subcommands {
            let help = Command::new(bin(binary)).args([sub, "--help"]).output().unwrap();
            assert_eq!(help.status.code(), Some(0), "{binary} {sub} --help");
            assert!(
                String::from_utf8_lossy(&help.stdout).contains("Usage:"),
                "{binary} {sub} --help"
            );
        }
        let bogus = Command::new(bin(binary)).arg("--no-such-option").output().unwrap();
        assert_ne!(bogus.status.code(), Some(0), "{binary} accepted an unknown option");
        assert!(
            String::from_utf8_lossy(&bogus.stderr).contains("--no-such-option"),
            "{binary}: the error must name the option"
        );
    }
}
