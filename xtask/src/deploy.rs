//! `cargo xtask compose up|down|config|…` and `cargo xtask helm`: thin
//! wrappers so the deployment files are driven the same way everywhere.

use std::process::Command;

use crate::root;

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("running {what}: {e} (is it installed?)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed with {status}"))
    }
}

/// `docker compose` (or Debian's `docker-compose`) on deploy/compose.
pub fn compose(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("usage: cargo xtask compose up|down|config|<docker compose args>".into());
    }
    let file = "deploy/compose/docker-compose.yml";
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if plugin {
        let mut c = Command::new("docker");
        c.args(["compose", "-f", file]);
        c
    } else {
        let mut c = Command::new("docker-compose");
        c.args(["-f", file]);
        c
    };
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args == ["up"] {
        args = vec!["up", "--build", "--detach"];
    }
    cmd.args(&args)
        .env("DOCKER_BUILDKIT", "1")
        .env("COMPOSE_DOCKER_CLI_BUILD", "1");
    run(cmd, "docker compose")
}

/// Validates the charts and the compose file offline (deploy/validate.py,
/// run by the project's venv with docker-compose installed first).
pub fn helm() -> Result<(), String> {
    moat_devstack::ensure_installed(&[moat_devstack::Package::DOCKER_COMPOSE])?;
    let bin = moat_devstack::peers::ensure_python_peers(&root())?;
    let mut cmd = Command::new(bin.join("python3"));
    cmd.args(["deploy/validate.py", "--require-compose"]);
    run(cmd, "deploy/validate.py")
}
