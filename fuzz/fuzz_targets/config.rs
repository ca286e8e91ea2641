//! The figment config loader of every service, fed TOML text: a bad file
//! gets one line naming what is wrong, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_common_types::config::{ConfigError, load_toml_str};

fn one_line<T>(result: Result<T, ConfigError>) {
    if let Err(error) = result {
        let text = error.to_string();
        assert!(!text.trim().is_empty(), "an empty config error");
        assert!(!text.contains('\n'), "a config error of several lines: {text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(toml) = std::str::from_utf8(data) else { return };
    one_line(load_toml_str::<moat_collector::config::CollectorConfig>(
        "collector",
        toml,
    ));
    one_line(load_toml_str::<moat_storage_writer::config::WriterConfig>(
        "storage-writer",
        toml,
    ));
    one_line(load_toml_str::<moat_state::config::StateConfig>("state", toml));
    one_line(load_toml_str::<moat_gateway::config::GatewayConfig>("gateway", toml));
});
