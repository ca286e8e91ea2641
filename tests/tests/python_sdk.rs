//! The Python SDK (`sdk/python`) against a real stack: `pip install
//! ./sdk/python` into a virtual environment of its own, its pytest suite
//! (every method and error class against the real gateway, and a check that
//! the checked-in stubs match `proto/`), then the README's example strategy
//! run twice, unchanged, as a new user would.

use std::path::PathBuf;
use std::process::Command;

use moat_integration_tests::stack::{EXCHANGE, Stack, StackOptions};

const SDK_TOKEN: &str = "sdk-token-0123456789abcdef";
const OTHER_TOKEN: &str = "sdk-other-token-0123456789";
const LIMITED_TOKEN: &str = "sdk-limited-token-0123456789";
/// The example strategy's own, so that it starts with no saved state.
const EXAMPLE_TOKEN: &str = "sdk-example-token-0123456789";
/// A chain whose only upstream refuses connections.
const DEAD_CHAIN: &str = "base";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn gateway_env(cmd: &mut Command, stack: &Stack) {
    cmd.env("GATEWAY_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", stack.spec.ports.gateway_grpc.to_string())
        .env_remove("MOAT_TOKEN")
        .env_remove("MOAT_TOKEN_FILE")
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_works_against_the_real_gateway() {
    let root = root();
    let python = tokio::task::block_in_place(|| moat_devstack::peers::ensure_sdk_venv(&root))
        .unwrap_or_else(|e| panic!("installing the SDK: {e}"));
    let stack = Stack::start(StackOptions {
        tokens: vec![
            ("sdk".to_owned(), SDK_TOKEN.to_owned()),
            ("sdk-other".to_owned(), OTHER_TOKEN.to_owned()),
            ("sdk-limited".to_owned(), LIMITED_TOKEN.to_owned()),
            ("example".to_owned(), EXAMPLE_TOKEN.to_owned()),
        ],
        overrides: vec![
            (
                format!("MOAT_GATEWAY__RPC__CHAINS__{}__ENABLED", DEAD_CHAIN.to_uppercase()),
                "true".to_owned(),
            ),
            (
                format!("MOAT_GATEWAY__RPC__CHAINS__{}__UPSTREAMS", DEAD_CHAIN.to_uppercase()),
                "[\"http://127.0.0.1:1\"]".to_owned(),
            ),
        ],
        ..StackOptions::default()
    })
    .await;

    // The pytest suite.
    // The venv's pytest script, not `python -m pytest`, which would put the
    // working folder first on sys.path and test the sources, not the install.
    let mut pytest = Command::new(python.with_file_name("pytest"));
    pytest
        .args(["-q", "-rfEs", "-p", "no:cacheprovider", "tests"])
        .current_dir(root.join("sdk/python"));
    gateway_env(&mut pytest, &stack);
    pytest
        .env("MOAT_TOKEN", SDK_TOKEN)
        .env("MOAT_SDK_TEST_STRATEGY", "sdk")
        .env("MOAT_SDK_TEST_OTHER_TOKEN", OTHER_TOKEN)
        .env("MOAT_SDK_TEST_LIMITED_TOKEN", LIMITED_TOKEN)
        .env("MOAT_SDK_TEST_EXCHANGE", EXCHANGE)
        .env("MOAT_SDK_TEST_SYMBOL", "BTC-USDT")
        .env("MOAT_SDK_TEST_ASSET", "BTC")
        .env("MOAT_SDK_TEST_CHAIN", "ethereum")
        .env("MOAT_SDK_TEST_CHAIN_ID", "1")
        .env("MOAT_SDK_TEST_DEAD_CHAIN", DEAD_CHAIN)
        .env("MOAT_SDK_TEST_AUDIT_LOG", stack.log("gateway"));
    let report = tokio::task::block_in_place(|| run(pytest, "pytest sdk/python/tests"));
    let summary = report.lines().last().unwrap_or_default().to_owned();
    println!("pytest sdk/python/tests: {summary}");
    assert!(
        summary.contains(" passed") && !summary.contains("skipped") && !summary.contains("failed"),
        "every SDK test must run and pass against the stack: {summary}\n{report}"
    );

    // The README's example strategy, unchanged, twice: the second run
    // starts from the state the first saved.
    let example = root.join("sdk/python/examples/strategy.py");
    let readme = std::fs::read_to_string(root.join("sdk/python/README.md")).unwrap();
    let code = std::fs::read_to_string(&example).unwrap();
    assert!(
        readme.contains(code.trim_end()),
        "sdk/python/README.md must show examples/strategy.py as it is"
    );
    let token_file = stack.dir.path().join("dev.token");
    std::fs::write(&token_file, format!("# the example's token\n{EXAMPLE_TOKEN}\n")).unwrap();
    let run_example = |n: u32| {
        let mut cmd = Command::new(&python);
        cmd.arg(&example).current_dir(&root);
        gateway_env(&mut cmd, &stack);
        cmd.env("MOAT_TOKEN_FILE", &token_file)
            .env("STRATEGY_EXCHANGE", EXCHANGE);
        let out = tokio::task::block_in_place(|| run(cmd, &format!("the example strategy, run {n}")));
        assert!(out.contains("BTC: "), "{out}");
        assert!(out.contains("ethereum: chain id 1, block "), "{out}");
        assert!(out.contains("VWAP over "), "{out}");
        out
    };
    let first = run_example(1);
    assert!(first.contains("restored state version 0"), "{first}");
    let saved: u64 = version_after(&first, "saved state version ");
    let second = run_example(2);
    assert!(second.contains(&format!("restored state version {saved}")), "{second}");
    assert!(second.contains("(run 2)"), "{second}");
    assert_eq!(version_after(&second, "saved state version "), saved + 1);
}

fn version_after(out: &str, prefix: &str) -> u64 {
    let rest = out
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?} in {out}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}
