//! The configuration files moat ships load as they are, durations are
//! strings with their unit, and a zero where zero means nothing is refused
//! by its type, naming the key.

use moat_collector::config::CollectorConfig;
use moat_common_types::config::load_toml_str;
use moat_gateway::config::GatewayConfig;
use moat_state::config::StateConfig;
use moat_storage_writer::config::WriterConfig;

fn shipped(service: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(format!("{service}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_shipped_configuration_files_load() {
    let writer = load_toml_str::<WriterConfig>("storage-writer", &shipped("storage-writer")).unwrap();
    assert_eq!(writer.writer.flush_interval, std::time::Duration::from_millis(100));
    // The gateway and the state service choose TLS or plaintext, and the
    // shipped files leave the choice to whoever deploys them: that choice is
    // all they lack.
    let plaintext = |text: String| {
        assert_eq!(text.matches("\nplaintext = false\n").count(), 1);
        text.replace("\nplaintext = false\n", "\nplaintext = true\n")
    };
    for service in ["gateway", "state"] {
        let err = match service {
            "gateway" => load_toml_str::<GatewayConfig>(service, &shipped(service)).map(|_| ()),
            _ => load_toml_str::<StateConfig>(service, &shipped(service)).map(|_| ()),
        }
        .unwrap_err();
        assert!(err.0.contains("key `tls.cert` = \"\""), "{service}: {err:?}");
    }
    let gateway = load_toml_str::<GatewayConfig>("gateway", &plaintext(shipped("gateway"))).unwrap();
    assert_eq!(gateway.server.request_timeout, std::time::Duration::from_secs(30));
    load_toml_str::<StateConfig>("state", &plaintext(shipped("state"))).unwrap();
    load_toml_str::<CollectorConfig>("collector", &shipped("collector")).unwrap();
}

#[test]
fn zero_where_zero_means_nothing_is_refused_by_name() {
    let refused = |err: String, key: &str| {
        assert!(err.contains(&format!("key `{key}` is ")), "{err}");
        assert!(err.ends_with("expected a whole number above 0"), "{err}");
    };
    refused(
        load_toml_str::<CollectorConfig>("collector", "[publisher]\nbuffer_capacity = 0\n")
            .unwrap_err()
            .0,
        "publisher.buffer_capacity",
    );
    refused(
        load_toml_str::<CollectorConfig>("collector", "[publisher]\nmax_ack_inflight = 0\n")
            .unwrap_err()
            .0,
        "publisher.max_ack_inflight",
    );
    refused(
        load_toml_str::<GatewayConfig>("gateway", "[limits]\nstream_buffer = 0\n")
            .unwrap_err()
            .0,
        "limits.stream_buffer",
    );
    refused(
        load_toml_str::<StateConfig>("state", "[limits]\nkeep_versions = 0\n")
            .unwrap_err()
            .0,
        "limits.keep_versions",
    );
    refused(
        load_toml_str::<StateConfig>("state", "[database]\nmax_connections = 0\n")
            .unwrap_err()
            .0,
        "database.max_connections",
    );
}

#[test]
fn a_duration_from_before_units_is_refused_with_its_new_spelling() {
    let err = load_toml_str::<WriterConfig>("storage-writer", "[writer]\nflush_interval_ms = 150\n").unwrap_err();
    assert!(err.0.contains("unknown key `writer.flush_interval_ms`"), "{err}");
    assert!(err.0.contains("`flush_interval = \"30s\"`"), "{err}");
    let err = load_toml_str::<WriterConfig>("storage-writer", "[writer]\nack_wait = \"1s\"\n").unwrap_err();
    assert_eq!(err.0, "key `writer.ack_wait` = \"1s\": expected at least \"5s\"");
}
