//! One component process: started in its own process group with its output in a log file,
//! stopped gracefully on request and killed (with its whole group) when dropped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::Error;

/// How many lines of a log an error shows.
const TAIL_LINES: usize = 40;

/// A component of the control plane and how to run it.
#[derive(Debug)]
pub(crate) struct Process {
    pub component: &'static str,
    binary: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Describes a component; nothing runs until [`Process::start`].
    pub fn new(
        component: &'static str,
        binary: PathBuf,
        args: Vec<OsString>,
        dir: &Path,
    ) -> Process {
        Process {
            component,
            binary,
            args,
            envs: Vec::new(),
            dir: dir.to_owned(),
            log: dir.join(format!("{component}.log")),
            child: None,
        }
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Process {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts the process, appending its stdout and stderr to its log file.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.check_running().is_ok() {
            return Err(Error::AlreadyRunning {
                component: self.component,
            });
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::io(format!("opening {}", self.log.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", self.log.display()), e))?;
        // With setpriv (util-linux, on every Debian), the kernel kills the component when the
        // test process dies without running Drop (SIGKILL, Ctrl-C of the test run).
        let mut command = match setpriv() {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command
                    .args(["--pdeathsig", "KILL", "--"])
                    .arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own group, so a stop reaches any child it forks.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                component: self.component,
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Fails with the log tail if the process has exited (or was never started).
    pub fn check_running(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::NotRunning {
                component: self.component,
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(Error::Exited {
                    component: self.component,
                    status,
                    log: self.log.clone(),
                    tail: self.tail(),
                })
            }
            Err(e) => Err(Error::io(format!("waiting for {}", self.component), e)),
        }
    }

    /// Sends SIGTERM to the process group, waits up to `grace`, then SIGKILLs it.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal_group(pid, Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::io(format!("waiting for {}", self.component), e)),
            Err(_elapsed) => {
                if let Some(pid) = child.id() {
                    signal_group(pid, Signal::SIGKILL);
                }
                child.kill().await.map_err(|e| Error::Stop {
                    component: self.component,
                    detail: format!("SIGKILL after {grace:?}: {e}"),
                })
            }
        }
    }

    /// Kills the process group at once (SIGKILL), as a crash would, and reaps the process.
    pub async fn kill(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal_group(pid, Signal::SIGKILL);
        }
        child.kill().await.map_err(|e| Error::Stop {
            component: self.component,
            detail: format!("SIGKILL: {e}"),
        })
    }

    /// The last lines of the log file.
    pub fn tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(pid) = child.id() {
                signal_group(pid, Signal::SIGKILL);
            }
            // Also kills the leader if the group signal failed; tokio reaps it afterwards.
            let _ = child.start_kill();
        }
    }
}

/// `setpriv` from the PATH, if there is one.
fn setpriv() -> Option<PathBuf> {
    static SETPRIV: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("setpriv"))
                .find(|path| path.is_file())
        })
        .clone()
}

fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // The group id is the leader's pid (process_group(0)); a group that already exited is
        // no error for us.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// The last `lines` lines of a file (reading at most its last 64 KiB).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log: {e})"),
    }
}
