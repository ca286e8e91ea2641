//! Shared by the collector's tests: where the exchange recordings are.

use std::path::PathBuf;

/// `MOAT_EXCHANGE_FIXTURES` or `../shared/fixtures/exchanges`; `None` (with
/// a note saying the test was skipped) when neither exists.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("MOAT_EXCHANGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/exchanges"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no exchange recordings at {} (set MOAT_EXCHANGE_FIXTURES)",
            dir.display()
        );
        None
    }
}
