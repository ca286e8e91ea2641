//! The alert rules (`deploy/helm/moat/files/alerts.yml`) pass `promtool
//! check rules`, every alert fires and resolves in `promtool test rules`
//! (`deploy/prometheus/alerts.test.yml`), and every runbook link, README row
//! and SLO page entry names the same alerts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool() -> PathBuf {
    moat_devstack::find_binary(&moat_devstack::Package::PROMTOOL)
        .expect("promtool is not installed: `cargo xtask test` installs Debian's prometheus package")
}

fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// `(alert, runbook_url)` of every alerting rule, in file order.
fn alerts() -> Vec<(String, String)> {
    let rules = read("deploy/helm/moat/files/alerts.yml");
    let mut alerts: Vec<(String, String)> = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push((name.to_owned(), String::new()));
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            let last = alerts.last_mut().expect("a runbook_url belongs to an alert");
            last.1 = url.trim_matches('"').to_owned();
        }
    }
    alerts
}

#[test]
fn rules_pass_promtool_check() {
    let (ok, out) = run(&root(), &["check", "rules", "deploy/helm/moat/files/alerts.yml"]);
    assert!(ok, "promtool check rules failed:\n{out}");
}

#[test]
fn every_alert_fires_and_resolves_in_promtool_unit_tests() {
    let (ok, out) = run(&root().join("deploy/prometheus"), &["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules failed:\n{out}");
    let tests = read("deploy/prometheus/alerts.test.yml");
    let alerts = alerts();
    assert!(alerts.len() >= 15, "expected the full rule set, found {alerts:?}");
    for (alert, _) in &alerts {
        let evals = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            evals >= 2,
            "{alert} needs a unit test that sees it fire and resolve (found {evals} evaluations)"
        );
    }
}

#[test]
fn runbooks_readme_and_slo_page_name_the_same_alerts() {
    let readme = read("README.md");
    let slo = read("docs/slo.md");
    for (alert, runbook) in alerts() {
        let anchor = format!("alert-{}", alert.to_lowercase());
        assert_eq!(runbook, format!("README.md#{anchor}"), "{alert}'s runbook_url");
        assert!(
            readme.contains(&format!("<a id=\"{anchor}\"></a>")),
            "README.md has no row for {alert} (anchor {anchor})"
        );
        assert!(slo.contains(&alert), "docs/slo.md does not mention {alert}");
    }
}
