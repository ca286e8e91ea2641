//! The real peers the tests and the development stack talk to: ganache and
//! ethers from npm (`tests/peers`), web3.py and grpcio from PyPI, and the
//! deployment validator's Python packages. `cargo xtask up` and `cargo
//! xtask test` install them here, so a fresh machine needs nothing else.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::engines::{install_lock, python, target_dir};
use crate::install::{Package, apt_install, ensure_installed};

/// The requirement files installed into the project's virtual environment.
const REQUIREMENTS: &[&str] = &["tests/peers/requirements.txt", "deploy/requirements.txt"];

/// The virtual environment holding the Python peers: `target/moat-venv`.
pub fn venv_dir() -> PathBuf {
    target_dir().join("moat-venv")
}

/// Makes sure `target/moat-venv` exists with every requirement of
/// [`REQUIREMENTS`] installed (again when a file changed), and returns its
/// `bin` folder, to put first on the `PATH` of whatever runs `python3`.
pub fn ensure_python_peers(root: &Path) -> Result<PathBuf> {
    let venv = venv_dir();
    let bin = venv.join("bin");
    let mut wanted = String::new();
    for file in REQUIREMENTS {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        wanted.push_str(&text);
    }
    let stamp = venv.join(".requirements");
    let current = || bin.join("python3").exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted);
    if current() {
        return Ok(bin);
    }
    let _lock = install_lock()?;
    if current() {
        return Ok(bin);
    }
    if !bin.join("python3").exists() {
        create_venv(&venv)?;
    }
    eprintln!("installing the Python test peers into {}", venv.display());
    let mut cmd = Command::new(bin.join("python3"));
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    for file in REQUIREMENTS {
        cmd.arg("-r").arg(root.join(file));
    }
    let out = cmd.output().map_err(|e| format!("running the venv's pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip could not install the Python peers (is PyPI reachable?):\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    Ok(bin)
}

/// The SDK's pinned test requirements.
const SDK_REQUIREMENTS: &str = "sdk/python/requirements-test.txt";

/// The reference feed handler the connectors are compared with.
const REFERENCE_REQUIREMENTS: &str = "tests/reference/requirements.txt";

/// Makes sure `target/<name>` is a virtual environment holding the pinned
/// requirements of `file` (installed again when the file changed), and
/// returns its `python3`.
fn ensure_venv(root: &Path, name: &str, file: &str) -> Result<PathBuf> {
    let venv = target_dir().join(name);
    let python = venv.join("bin").join("python3");
    let path = root.join(file);
    let wanted = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let stamp = venv.join(".requirements");
    let current = || python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted);
    if current() {
        return Ok(python);
    }
    let _lock = install_lock()?;
    if !current() {
        if !python.exists() {
            create_venv(&venv)?;
        }
        eprintln!("installing {file} into {}", venv.display());
        pip(&python, &[OsStr::new("-r"), path.as_os_str()])?;
        std::fs::write(&stamp, &wanted).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    }
    Ok(python)
}

/// `target/moat-reference-venv` with cryptofeed, which plays the exchange
/// recordings back through its own normalization
/// (`tests/reference/cryptofeed_playback.py`); returns its `python3`.
pub fn ensure_reference_venv(root: &Path) -> Result<PathBuf> {
    ensure_venv(root, "moat-reference-venv", REFERENCE_REQUIREMENTS)
}

/// Makes sure `target/moat-sdk-venv` holds the Python SDK's test
/// requirements ([`SDK_REQUIREMENTS`], again when the file changed) and the
/// SDK itself as `sdk/python` is now (`pip install ./sdk/python`, every
/// time), and returns the venv's `python3`.
pub fn ensure_sdk_venv(root: &Path) -> Result<PathBuf> {
    let python = ensure_venv(root, "moat-sdk-venv", SDK_REQUIREMENTS)?;
    let _lock = install_lock()?;
    // The SDK as a user installs it, built from the sources of this checkout
    // (setuptools is pinned above, so no build environment is fetched). The
    // build runs on a copy: setuptools writes build/ and *.egg-info beside
    // the sources, and tests write only under target/.
    let sdk = target_dir().join("moat-sdk-src");
    let _ = std::fs::remove_dir_all(&sdk);
    copy_tree(&root.join("sdk/python"), &sdk)?;
    pip(
        &python,
        &[
            OsStr::new("--no-build-isolation"),
            OsStr::new("--force-reinstall"),
            OsStr::new("--no-deps"),
            sdk.as_os_str(),
        ],
    )?;
    // Its dependencies as declared, checked against what is installed.
    check_pip(&python)?;
    Ok(python)
}

/// Copies the files of `from` into `to`, leaving out build output and caches.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", from.display()))?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text == "build" || name_text == "__pycache__" || name_text.ends_with(".egg-info") {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&source, &dest)?;
        } else {
            std::fs::copy(&source, &dest).map_err(|e| format!("copying {}: {e}", source.display()))?;
        }
    }
    Ok(())
}

fn pip(python: &Path, args: &[&OsStr]) -> Result<()> {
    let out = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(args)
        .output()
        .map_err(|e| format!("running {} -m pip: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pip install {} failed (is PyPI reachable?):\n{}",
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn check_pip(python: &Path) -> Result<()> {
    let out = Command::new(python)
        .args(["-m", "pip", "check", "--disable-pip-version-check"])
        .output()
        .map_err(|e| format!("running {} -m pip check: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the SDK's dependencies do not match what is installed:\n{}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn create_venv(venv: &Path) -> Result<()> {
    let python = python()?;
    let create = || {
        let _ = std::fs::remove_dir_all(venv);
        Command::new(&python)
            .args(["-m", "venv"])
            .arg(venv)
            .output()
            .map_err(|e| format!("running {} -m venv: {e}", python.display()))
    };
    let mut out = create()?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ensurepip") {
        // Debian splits venv's ensurepip into its own package.
        apt_install(&["python3-venv"])?;
        out = create()?;
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "could not create the virtual environment {}: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes sure Node.js and npm are there (apt on Debian as root) and that
/// `tests/peers/node_modules` matches `package-lock.json`.
pub fn ensure_node_peers(root: &Path) -> Result<()> {
    ensure_installed(&[Package::NODE, Package::NPM])?;
    let dir = root.join("tests/peers");
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .map_err(|e| format!("reading package-lock.json: {e}"))?;
    let stamp = dir.join("node_modules/.moat-lock");
    let current =
        || dir.join("node_modules/.bin/ganache").exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock);
    if current() {
        return Ok(());
    }
    let _lock = install_lock()?;
    if current() {
        return Ok(());
    }
    eprintln!(
        "installing the npm test peers into {}",
        dir.join("node_modules").display()
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("running npm ci: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`npm ci` in {} failed (is the npm registry reachable?):\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::write(&stamp, lock).map_err(|e| format!("writing {}: {e}", stamp.display()))
}

/// `PATH` with `bin` first.
pub fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_owned()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
