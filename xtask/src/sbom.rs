//! `cargo xtask sbom`: a CycloneDX 1.5 SBOM (JSON) of each service binary,
//! from `cargo metadata`: every crate the binary links (normal
//! dependencies on Linux, build and dev dependencies left out) with its
//! version, licence expression and package URL, and the dependency graph.
//! The Dockerfile writes one into each image and labels the image with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::root;

/// The service binaries, as their packages are named.
pub const SERVICES: [&str; 4] = ["moat-collector", "moat-storage-writer", "moat-state", "moat-gateway"];

/// Writes `<out>/<package>.cdx.json` for each of `packages` (every service
/// when empty).
pub fn run_for(out: &Path, packages: &[String]) -> Result<(), String> {
    let metadata = metadata()?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let wanted: Vec<String> = if packages.is_empty() {
        SERVICES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        packages.to_vec()
    };
    for package in wanted {
        let bom = bom(&metadata, &package)?;
        let file = out.join(format!("{package}.cdx.json"));
        let text = serde_json::to_string_pretty(&bom).map_err(|e| e.to_string())?;
        std::fs::write(&file, text + "\n").map_err(|e| format!("writing {}: {e}", file.display()))?;
        println!(
            "{}: {} components",
            file.display(),
            bom["components"].as_array().map_or(0, Vec::len)
        );
    }
    Ok(())
}

/// Every service's SBOM into `out`.
pub fn run(out: &Path) -> Result<(), String> {
    run_for(out, &[])
}

fn metadata() -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata printed no JSON: {e}"))
}

fn purl(package: &Value) -> String {
    format!(
        "pkg:cargo/{}@{}",
        package["name"].as_str().unwrap_or_default(),
        package["version"].as_str().unwrap_or_default()
    )
}

fn component(package: &Value, kind: &str) -> Value {
    let mut c = json!({
        "type": kind,
        "bom-ref": purl(package),
        "name": package["name"],
        "version": package["version"],
        "purl": purl(package),
    });
    if let Some(license) = package["license"].as_str() {
        // Old manifests write `MIT/Apache-2.0`; SPDX says `MIT OR Apache-2.0`.
        let expression = license.replace(" / ", " OR ").replace('/', " OR ");
        c["licenses"] = json!([{ "expression": expression }]);
    }
    if let Some(description) = package["description"].as_str() {
        c["description"] = json!(description.trim());
    }
    if let Some(repository) = package["repository"].as_str() {
        c["externalReferences"] = json!([{ "type": "vcs", "url": repository }]);
    }
    c
}

/// The SBOM of `name`: the package's normal dependency closure.
fn bom(metadata: &Value, name: &str) -> Result<Value, String> {
    let packages: BTreeMap<&str, &Value> = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let root_id = packages
        .iter()
        .find(|(_, p)| p["name"] == name && p["source"].is_null())
        .map(|(id, _)| *id)
        .ok_or_else(|| format!("{name} is not a package of this workspace"))?;
    // id -> ids of its normal (not build, not dev) dependencies.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata has no resolve graph")?
    {
        let id = node["id"].as_str().unwrap_or_default();
        let normal = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|d| d["pkg"].as_str())
            .collect();
        edges.insert(id, normal);
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo = vec![root_id];
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            todo.extend(edges.get(id).into_iter().flatten().copied());
        }
    }
    let root_package = packages[root_id];
    let components: Vec<Value> = seen
        .iter()
        .filter(|id| **id != root_id)
        .map(|id| component(packages[id], "library"))
        .collect();
    let dependencies: Vec<Value> = seen
        .iter()
        .map(|id| {
            let on: BTreeSet<String> = edges
                .get(id)
                .into_iter()
                .flatten()
                .map(|dep| purl(packages[dep]))
                .collect();
            json!({ "ref": purl(packages[id]), "dependsOn": on })
        })
        .collect();
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": { "components": [{ "type": "application", "name": "cargo xtask sbom" }] },
            "component": component(root_package, "application"),
        },
        "components": components,
        "dependencies": dependencies,
    }))
}
