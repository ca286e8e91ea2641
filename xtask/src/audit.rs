//! `cargo xtask audit`: the supply chain, offline. `cargo deny check`
//! (advisories from the RustSec snapshot, licences, duplicate versions,
//! sources) under `deny.toml`, whose every exception must carry a reason
//! with an expiry date that has not passed; then a CycloneDX SBOM of each
//! service (`cargo xtask sbom`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root};

/// The cargo-deny release the checks are written for.
const CARGO_DENY: &str = "0.20.2";

pub fn run() -> Result<(), String> {
    let root = root();
    check_exceptions(&root.join("deny.toml"), &today())?;
    let tools = root.join("target/tools");
    if !tools.join("bin/cargo-deny").is_file() {
        println!("installing cargo-deny {CARGO_DENY} into {}", tools.display());
        let tools_arg = tools.display().to_string();
        cargo(&[
            "install",
            "cargo-deny",
            "--version",
            CARGO_DENY,
            "--locked",
            "--root",
            &tools_arg,
        ])?;
    }
    // cargo deny reads the metadata of every platform's dependencies
    // (Windows crates too), which a Linux build never downloads: fetch
    // them first, since its `--offline` forbids it.
    cargo(&["fetch", "--locked"])?;
    let dbs = advisory_dbs(&root)?;
    let path = std::env::join_paths(
        std::iter::once(tools.join("bin")).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .map_err(|e| e.to_string())?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["deny", "--offline", "check"])
        .current_dir(&root)
        .env("PATH", path)
        .env("MOAT_ADVISORY_DBS", &dbs)
        .status()
        .map_err(|e| format!("running cargo deny: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo deny check failed ({status}): fix the finding, or list it in deny.toml with a reason ending in \"expires YYYY-MM-DD\""
        ));
    }
    crate::sbom::run(&root.join("target/sbom"))
}

/// The RustSec snapshot (`MOAT_ADVISORY_DB`, or `../shared/advisory-db`
/// beside the workspace) as the git checkout cargo-deny opens, under
/// `target/advisory-dbs`; returns that folder (cargo-deny's `db-path`).
fn advisory_dbs(root: &Path) -> Result<PathBuf, String> {
    let source = std::env::var_os("MOAT_ADVISORY_DB").map_or_else(|| root.join("../shared/advisory-db"), PathBuf::from);
    if !source.join("crates").is_dir() {
        return Err(format!(
            "no RustSec advisory database at {} (a folder with crates/): set MOAT_ADVISORY_DB",
            source.display()
        ));
    }
    let dbs = root.join("target/advisory-dbs");
    // cargo-deny's folder for its default URL, https://github.com/RustSec/advisory-db.
    let db = dbs.join(ADVISORY_DB_DIR);
    let _ = std::fs::remove_dir_all(&db);
    std::fs::create_dir_all(&db).map_err(|e| format!("creating {}: {e}", db.display()))?;
    let copy = Command::new("cp")
        .arg("-a")
        .arg(source.join("."))
        .arg(&db)
        .status()
        .map_err(|e| format!("copying the advisory database: {e}"))?;
    if !copy.success() {
        return Err(format!("copying {} failed", source.display()));
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"][..],
        &[
            "-c",
            "user.name=moat",
            "-c",
            "user.email=moat@localhost",
            "commit",
            "-q",
            "--no-gpg-sign",
            "-m",
            "RustSec advisory database snapshot",
        ][..],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(&db)
            .status()
            .map_err(|e| format!("running git {args:?}: {e}"))?;
        if !status.success() {
            return Err(format!("git {args:?} in {} failed", db.display()));
        }
    }
    Ok(dbs)
}

/// The folder cargo-deny clones https://github.com/RustSec/advisory-db into.
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

/// Fails on an exception of `deny.toml` (an ignored advisory, a skipped
/// duplicate, an allowed git source) without a reason that ends in
/// `expires YYYY-MM-DD`, or whose date is before `today` (YYYY-MM-DD).
fn check_exceptions(deny: &Path, today: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(deny).map_err(|e| format!("reading {}: {e}", deny.display()))?;
    let config: toml::Table = text.parse().map_err(|e| format!("{}: {e}", deny.display()))?;
    let mut problems = Vec::new();
    for (section, key) in [("advisories", "ignore"), ("bans", "skip"), ("bans", "skip-tree")] {
        let entries = config
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default();
        for entry in entries {
            let what = format!("[{section}] {key} entry {entry}");
            let Some(reason) = entry.get("reason").and_then(toml::Value::as_str) else {
                problems.push(format!("{what}: needs a reason ending in \"expires YYYY-MM-DD\""));
                continue;
            };
            match reason
                .rsplit_once("expires ")
                .map(|(_, date)| date.trim_end_matches('.'))
            {
                Some(date) if is_date(date) && date >= today => {}
                Some(date) if is_date(date) => problems.push(format!("{what}: expired on {date}; look at it again")),
                _ => problems.push(format!("{what}: the reason must end in \"expires YYYY-MM-DD\"")),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("deny.toml exceptions:\n  {}", problems.join("\n  ")))
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Today's UTC date as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_come_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn exceptions_need_a_reason_with_a_date_to_come() {
        let dir = std::env::temp_dir().join(format!("moat-deny-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("deny.toml");
        let check = |body: &str| {
            std::fs::write(&file, body).unwrap();
            check_exceptions(&file, "2026-11-29")
        };
        assert!(check("[advisories]\nignore = []\n").is_ok());
        assert!(
            check(
                "[advisories]\nignore = [{ id = \"RUSTSEC-2020-0001\", reason = \"no fix yet; expires 2027-01-31\" }]\n"
            )
            .is_ok()
        );
        let bare = check("[advisories]\nignore = [\"RUSTSEC-2020-0001\"]\n").unwrap_err();
        assert!(bare.contains("needs a reason"), "{bare}");
        let undated = check("[bans]\nskip = [{ crate = \"syn@1\", reason = \"old macros\" }]\n").unwrap_err();
        assert!(undated.contains("must end in"), "{undated}");
        let expired =
            check("[bans]\nskip-tree = [{ crate = \"windows-sys@0.52\", reason = \"x; expires 2026-11-28\" }]\n")
                .unwrap_err();
        assert!(expired.contains("expired on 2026-11-28"), "{expired}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
