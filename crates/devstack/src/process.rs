//! Child processes that are stopped for sure: SIGTERM, a grace period, then
//! SIGKILL, on `stop()` or on drop.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Result;

/// A free TCP port on 127.0.0.1 (bound, then released for the child).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 always works on loopback")
}

/// Fails, naming `what` and the port, when another process already listens
/// on 127.0.0.1:`port`: a child started there would die on its bind while
/// the stranger answered its health probe.
pub fn ensure_port_free(port: u16, what: &str) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "{what} cannot listen on 127.0.0.1:{port}: address already in use by another process ({e})"
        )),
    }
}

/// A running child with its output captured in a log file.
#[derive(Debug)]
pub struct ManagedProcess {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
    grace: Duration,
}

impl ManagedProcess {
    /// Spawns `command` with stdout and stderr appended to `log`. The child
    /// gets its own process group so a terminal's Ctrl-C reaches only the
    /// parent, which then stops its children in order.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<ManagedProcess> {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
        Ok(ManagedProcess {
            name: name.to_owned(),
            log: log.to_owned(),
            child: Some(child),
            grace: Duration::from_secs(10),
        })
    }

    pub fn with_grace(mut self, grace: Duration) -> ManagedProcess {
        self.grace = grace;
        self
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Like [`ManagedProcess::is_running`] without reaping, for `&self`
    /// callers: a child that exited is reported gone.
    pub fn is_running_now(&self) -> bool {
        self.pid().is_some_and(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Field 3 is the state; Z is a zombie waiting to be reaped.
            !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
        })
    }

    /// Waits until `GET http://addr{path}` answers 2xx while the child
    /// runs, failing at once when it exits (so an answer from a stranger on
    /// the same port is never taken for the child's) or after `within`; the
    /// error carries the log's last lines.
    pub fn wait_ready(&mut self, addr: &str, path: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let probe = crate::http::wait_http_ok(addr, path, Duration::from_millis(250));
            if !self.is_running() {
                return Err(format!(
                    "{} exited during start-up; last log lines ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(20)
                ));
            }
            match probe {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(format!(
                        "{} did not become healthy: {error}\nlast log lines ({}):\n{}",
                        self.name,
                        self.log.display(),
                        self.log_tail(20)
                    ));
                }
                Err(_) => {}
            }
        }
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL; reaps the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL at once, as a crash would; reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ManagedProcess {
    /// Leaves the child running after this handle is gone (`xtask up
    /// --detach`); returns its pid for a later `down`.
    pub fn detach(mut self) -> Option<u32> {
        let pid = self.pid();
        // Dropping a std Child neither kills nor waits for it.
        self.child.take();
        pid
    }
}
