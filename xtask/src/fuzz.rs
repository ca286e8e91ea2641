//! `cargo xtask fuzz [SECS] [TARGET...]`: builds the `cargo fuzz` targets in
//! `fuzz/` with libFuzzer's coverage instrumentation (the flags `cargo fuzz
//! build --sanitizer none` passes, which stable Rust accepts) and runs each
//! for SECS seconds (20) on a corpus seeded from the exchange recordings
//! and the shipped config files. A crash leaves its input under
//! `target/fuzz/artifacts/<target>/` and fails the run.

use std::path::{Path, PathBuf};

use crate::{cargo_with_env, root};

/// Each target and where its seeds come from.
const TARGETS: &[(&str, Seeds)] = &[
    (
        "binance_frame",
        Seeds::Recordings(&["BINANCE.ws.1.0", "BINANCE_FUTURES.ws.1.0", "BINANCE_DELIVERY.ws.1.0"]),
    ),
    ("okx_frame", Seeds::Recordings(&["OKX.ws.1.0"])),
    ("coinbase_frame", Seeds::Recordings(&["COINBASE.ws.28.0"])),
    ("bybit_frame", Seeds::Recordings(&["BYBIT.ws.2.0", "BYBIT.ws.3.0"])),
    (
        "kraken_frame",
        Seeds::Recordings(&["KRAKEN.ws.48.0", "KRAKEN.ws.49.0", "KRAKEN.ws.50.0"]),
    ),
    ("gemini_frame", Seeds::Recordings(&["GEMINI.ws.1.0"])),
    (
        "bitstamp_frame",
        Seeds::Recordings(&["BITSTAMP.ws.1.0", "BITSTAMP.http.0.0"]),
    ),
    ("kraken_futures_frame", Seeds::Recordings(&["KRAKEN_FUTURES.ws.1.0"])),
    ("deribit_frame", Seeds::Recordings(&["DERIBIT.ws.1.0"])),
    ("bitmex_frame", Seeds::Recordings(&["BITMEX.ws.1.0"])),
    (
        "scan_json",
        Seeds::Recordings(&[
            "BINANCE_FUTURES.ws.1.0",
            "DERIBIT.ws.1.0",
            "KRAKEN.ws.49.0",
            "BITMEX.ws.1.0",
        ]),
    ),
    ("jsonrpc_request", Seeds::JsonRpc),
    ("config", Seeds::ConfigFiles),
];

/// Seeds per target: enough variety to start from, few enough that the
/// first pass over them stays a small part of a short run.
const MAX_SEEDS: usize = 400;

#[derive(Clone, Copy)]
enum Seeds {
    /// The frames received in these recordings.
    Recordings(&'static [&'static str]),
    JsonRpc,
    /// `config/*.toml`.
    ConfigFiles,
}

const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut secs = 20u64;
    let mut only = Vec::new();
    for arg in args {
        match arg.parse::<u64>() {
            Ok(s) if s > 0 => secs = s,
            _ if TARGETS.iter().any(|(name, _)| name == arg) => only.push(arg.as_str()),
            _ => {
                let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "fuzz {arg:?}: expected seconds per target or a target ({})",
                    names.join(", ")
                ));
            }
        }
    }
    moat_devstack::ensure_installed(&[moat_devstack::Package::CXX])?;
    let target_dir = root().join("target/fuzz");
    let manifest = root().join("fuzz/Cargo.toml");
    // An explicit target keeps the instrumentation out of build scripts and
    // proc macros, which run on the host without libFuzzer linked in.
    let host = host_triple()?;
    cargo_with_env(
        &[
            "build",
            "--manifest-path",
            &manifest.display().to_string(),
            "--bins",
            "--target",
            &host,
        ],
        &[
            ("RUSTFLAGS", RUSTFLAGS),
            ("CARGO_TARGET_DIR", &target_dir.display().to_string()),
        ],
    )?;
    let fixtures = fixtures();
    if !fixtures.is_dir() {
        println!(
            "fuzz: {} is missing: the frame targets start from an empty corpus",
            fixtures.display()
        );
    }
    let bins = target_dir.join(&host).join("debug");
    let mut failed = Vec::new();
    for (name, seeds) in TARGETS.iter().filter(|(n, _)| only.is_empty() || only.contains(n)) {
        let corpus = target_dir.join("corpus").join(name);
        let artifacts = target_dir.join("artifacts").join(name);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let seeded = seed(&corpus, *seeds, &fixtures)?;
        println!("== fuzz {name}: {secs} s, {seeded} seeds");
        let status = std::process::Command::new(bins.join(name))
            .arg(format!("-max_total_time={secs}"))
            .arg("-max_len=65536")
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus)
            .status()
            .map_err(|e| format!("running fuzz target {name}: {e}"))?;
        if !status.success() {
            failed.push(format!(
                "{name} ({status}; the input is in {}; reproduce with {} <file>)",
                artifacts.display(),
                bins.join(name).display()
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join("; ")))
    }
}

/// The triple `rustc` builds for by default, as `cargo fuzz` finds it.
fn host_triple() -> Result<String, String> {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("running rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV printed no host triple".to_owned())
}

fn fixtures() -> PathBuf {
    std::env::var_os("MOAT_EXCHANGE_FIXTURES")
        .map_or_else(|| root().join("../shared/fixtures/exchanges"), PathBuf::from)
}

/// Writes the seeds of a target into its corpus folder; returns how many.
fn seed(corpus: &Path, seeds: Seeds, fixtures: &Path) -> Result<usize, String> {
    let inputs: Vec<Vec<u8>> = match seeds {
        Seeds::Recordings(files) => {
            let mut frames = Vec::new();
            for file in files {
                // A missing recording is reported once above.
                let Ok(text) = std::fs::read_to_string(fixtures.join(file)) else {
                    continue;
                };
                frames.extend(text.lines().filter_map(received_frame).map(|f| f.as_bytes().to_vec()));
            }
            spread(frames)
        }
        Seeds::JsonRpc => [
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"eth_getBalance","params":["0x0000000000000000000000000000000000000000","latest"]}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version","params":null}]"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"eth_call","params":{"to":"0x01","data":"0x"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"params":[]}"#,
            r#"[]"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        Seeds::ConfigFiles => {
            let dir = root().join("config");
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
                let path = entry.map_err(|e| e.to_string())?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?);
                }
            }
            files
        }
    };
    for (i, input) in inputs.iter().enumerate() {
        let path = corpus.join(format!("seed-{i:04}"));
        std::fs::write(&path, input).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(inputs.len())
}

/// The payload of a `T: PAYLOAD` line (a frame the client received).
fn received_frame(line: &str) -> Option<&str> {
    let (head, payload) = line.split_once(": ")?;
    head.parse::<f64>().ok().map(|_| payload)
}

/// At most [`MAX_SEEDS`] frames taken evenly across the recording, so every
/// kind of frame in it is likely represented.
fn spread(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let step = frames.len().div_ceil(MAX_SEEDS).max(1);
    frames.into_iter().step_by(step).collect()
}
