//! Finding Debian-packaged tools (PostgreSQL, nginx, Python, Node.js), and
//! installing them with apt where that is possible (Debian or Ubuntu, as root).

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
    /// Python 3, which installs and runs the engines (see `engines`).
    pub const PYTHON: Package = Package {
        name: "python3",
        binary: "python3",
        paths: &["/usr/bin/python3"],
    };
    pub const PIP: Package = Package {
        name: "python3-pip",
        binary: "pip3",
        paths: &["/usr/bin/pip3"],
    };
    /// Node.js and npm run the EVM test node (ganache) and the ethers client.
    pub const NODE: Package = Package {
        name: "nodejs",
        binary: "node",
        paths: &["/usr/bin/node"],
    };
    pub const NPM: Package = Package {
        name: "npm",
        binary: "npm",
        paths: &["/usr/bin/npm"],
    };
    /// libFuzzer's C++ sources are compiled for the fuzz targets.
    pub const CXX: Package = Package {
        name: "g++",
        binary: "c++",
        paths: &["/usr/bin/c++"],
    };
    /// Validates the compose file without a Docker engine.
    pub const DOCKER_COMPOSE: Package = Package {
        name: "docker-compose",
        binary: "docker-compose",
        paths: &["/usr/bin/docker-compose"],
    };
    /// The reverse proxy the gateway's JSON-RPC throughput is compared with.
    pub const NGINX: Package = Package {
        name: "nginx",
        binary: "nginx",
        paths: &["/usr/sbin/nginx"],
    };
    /// Prometheus, which the development stack runs with moat's alert rules.
    pub const PROMETHEUS: Package = Package {
        name: "prometheus",
        binary: "prometheus",
        paths: &["/usr/bin/prometheus"],
    };
    /// `promtool`, from the same package: checks and unit-tests the rules.
    pub const PROMTOOL: Package = Package {
        name: "prometheus",
        binary: "promtool",
        paths: &["/usr/bin/promtool"],
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
    apt_install(&names)?;
    match missing.iter().find(|p| find_binary(p).is_none()) {
        Some(p) => Err(format!("{} was installed but {} is still not found", p.name, p.binary)),
        None => Ok(()),
    }
}

/// Installs Debian packages with apt as root, otherwise fails with the
/// exact command to run.
pub fn apt_install(names: &[&str]) -> Result<()> {
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
    // Packages with a daemon (prometheus, postgresql) would start it on its
    // default port, where the stack's own parts listen: a policy-rc.d that
    // refuses every start keeps them installed and stopped.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists() && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok();
    if own_policy {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755));
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    let status = status.map_err(|e| format!("running apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed with {status}"))
    }
}
