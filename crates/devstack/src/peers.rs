//! The real peers the tests and the development stack talk to: ganache and
//! ethers from npm (`tests/peers`), web3.py and grpcio from PyPI, and the
//! deployment validator's Python packages. `cargo xtask up` and `cargo
//! xtask test` install them here, so a fresh machine needs nothing else.

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
