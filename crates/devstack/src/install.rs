//! Finding the dependency servers, and installing them with apt where that
//! is possible (Debian or Ubuntu, as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// A Debian package and the binary it provides.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    pub binary: &'static str,
    /// Extra places to look besides `PATH`.
    pub paths: &'static [&'static str],
}

impl Package {
    pub const NATS: Package = Package {
        name: "nats-server",
        binary: "nats-server",
        paths: &["/usr/sbin/nats-server", "/usr/bin/nats-server"],
    };
    pub const CLICKHOUSE: Package = Package {
        name: "clickhouse-server",
        binary: "clickhouse-server",
        paths: &["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"],
    };
    /// The reverse proxy the gateway's JSON-RPC throughput is compared with.
    pub const NGINX: Package = Package {
        name: "nginx",
        binary: "nginx",
        paths: &["/usr/sbin/nginx"],
    };
    pub const POSTGRES: Package = Package {
        name: "postgresql",
        binary: "initdb",
        paths: &[
            "/usr/lib/postgresql/17/bin/initdb",
            "/usr/lib/postgresql/16/bin/initdb",
            "/usr/lib/postgresql/15/bin/initdb",
        ],
    };
}

/// Full path of a package's binary, if it is installed.
pub fn find_binary(package: &Package) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(package.binary))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| package.paths.iter().map(PathBuf::from).find(|p| p.is_file()))
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists() && Path::new("/usr/bin/apt-get").exists()
}

/// Makes sure every package is installed: installs the missing ones with
/// apt on Debian/Ubuntu as root, otherwise fails with the exact command.
pub fn ensure_installed(packages: &[Package]) -> Result<()> {
    let missing: Vec<&Package> = packages.iter().filter(|p| find_binary(p).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    let command = format!("apt-get install -y {}", names.join(" "));
    if !(is_root() && is_debian_like()) {
        return Err(format!(
            "{} not installed; install with: sudo apt-get update && sudo {command}",
            names.join(", ")
        ));
    }
    eprintln!("installing {} with apt", names.join(", "));
    let update = Command::new("apt-get").args(["update", "-qq"]).status();
    if !update.is_ok_and(|s| s.success()) {
        return Err("apt-get update failed".into());
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("running apt-get: {e}"))?;
    if !status.success() {
        return Err(format!("`{command}` failed with {status}"));
    }
    match missing.iter().find(|p| find_binary(p).is_none()) {
        Some(p) => Err(format!("{} was installed but {} is still not found", p.name, p.binary)),
        None => Ok(()),
    }
}
