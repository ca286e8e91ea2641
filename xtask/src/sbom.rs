//! `cargo xtask sbom`: a CycloneDX 1.5 SBOM (JSON) of each service binary:
//! every crate the binary links (normal dependencies on Linux, build and dev
//! dependencies left out) with its version, licence expression, package URL
//! and repository, and the dependency graph.
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
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let wanted: Vec<String> = if packages.is_empty() {
        SERVICES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        packages.to_vec()
    };
    for package in wanted {
        let bom = bom(&package)?;
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

/// One crate of the graph.
struct Crate {
    name: String,
    version: String,
    license: String,
    repository: String,
}

impl Crate {
    fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }

    fn component(&self, kind: &str) -> Value {
        let mut c = json!({
            "type": kind,
            "bom-ref": self.purl(),
            "name": self.name,
            "version": self.version,
            "purl": self.purl(),
        });
        if !self.license.is_empty() {
            // Old manifests write `MIT/Apache-2.0`; SPDX says `MIT OR Apache-2.0`.
            let expression = self.license.replace(" / ", " OR ").replace('/', " OR ");
            c["licenses"] = json!([{ "expression": expression }]);
        }
        if !self.repository.is_empty() {
            c["externalReferences"] = json!([{ "type": "vcs", "url": self.repository }]);
        }
        c
    }
}

/// The SBOM of package `name`: what `cargo build --bin <name>` links on
/// Linux, read from `cargo tree` (which resolves features for that package
/// alone, as the image build does; `cargo metadata` would report the
/// whole workspace's features).
fn bom(name: &str) -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "-p",
            name,
            "-e",
            "normal",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--prefix",
            "depth",
            "-f",
            "{p}|{l}|{r}",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| format!("running cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree -p {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut crates: BTreeMap<String, Crate> = BTreeMap::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The purl of the crate at each depth of the current branch.
    let mut branch: Vec<String> = Vec::new();
    let mut root_ref = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let depth: usize = line[..digits]
            .parse()
            .map_err(|_| format!("cargo tree printed {line:?}"))?;
        let mut fields = line[digits..].split('|');
        let package = fields.next().unwrap_or_default();
        let mut words = package.split_whitespace();
        let (Some(crate_name), Some(version)) = (words.next(), words.next()) else {
            return Err(format!("cargo tree printed {line:?}"));
        };
        let krate = Crate {
            name: crate_name.to_owned(),
            version: version.trim_start_matches('v').to_owned(),
            license: fields.next().unwrap_or_default().to_owned(),
            repository: fields.next().unwrap_or_default().to_owned(),
        };
        let purl = krate.purl();
        branch.truncate(depth);
        if let Some(parent) = branch.last() {
            edges.entry(parent.clone()).or_default().insert(purl.clone());
        } else {
            root_ref = Some(purl.clone());
        }
        branch.push(purl.clone());
        edges.entry(purl.clone()).or_default();
        crates.entry(purl).or_insert(krate);
    }
    let root_ref = root_ref.ok_or_else(|| format!("cargo tree printed nothing for {name}"))?;
    let components: Vec<Value> = crates
        .iter()
        .filter(|(purl, _)| **purl != root_ref)
        .map(|(_, c)| c.component("library"))
        .collect();
    let dependencies: Vec<Value> = edges
        .iter()
        .map(|(purl, on)| json!({ "ref": purl, "dependsOn": on }))
        .collect();
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": { "components": [{ "type": "application", "name": "cargo xtask sbom" }] },
            "component": crates[&root_ref].component("application"),
        },
        "components": components,
        "dependencies": dependencies,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_sbom_lists_what_it_links_with_licences_and_a_closed_graph() {
        let bom = bom("moat-gateway").expect("an SBOM");
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["metadata"]["component"]["name"], "moat-gateway");
        let components = bom["components"].as_array().expect("components");
        let names: BTreeSet<&str> = components.iter().filter_map(|c| c["name"].as_str()).collect();
        for linked in ["tonic", "async-nats", "clickhouse", "moat-common-types"] {
            assert!(names.contains(linked), "{linked} missing from {names:?}");
        }
        // Test and bench tools are not in the binary.
        for unlinked in ["tempfile", "criterion", "moat-integration-tests"] {
            assert!(!names.contains(unlinked), "{unlinked} is not linked by the gateway");
        }
        for c in components {
            assert!(c["licenses"][0]["expression"].is_string(), "{c} has no licence");
            assert!(c["purl"].as_str().is_some_and(|p| p.starts_with("pkg:cargo/")), "{c}");
        }
        let refs: BTreeSet<&str> = components
            .iter()
            .chain([&bom["metadata"]["component"]])
            .filter_map(|c| c["bom-ref"].as_str())
            .collect();
        for dependency in bom["dependencies"].as_array().expect("dependencies") {
            for on in dependency["dependsOn"].as_array().expect("dependsOn") {
                assert!(
                    refs.contains(on.as_str().unwrap_or_default()),
                    "{on} is not a component"
                );
            }
        }
    }
}
