//! Keeps a command's processes from outliving flow.
//!
//! A command runs in a process group of its own, led by a small supervisor:
//! the `flow` binary started again as `flow __supervise PARENT PROGRAM ARGS...`.
//! The supervisor starts the command in its group, passes on its exit status,
//! and watches its own parent: when flow is gone (killed with SIGKILL, say),
//! it ends the whole group, the command and everything the command started,
//! within `WATCH`. A cancelled step ends the group from flow's side (see
//! `Group`), so Ctrl-C, SIGTERM, a timeout and a failed sibling all end a
//! command's processes too.
//!
//! Linux's `PR_SET_PDEATHSIG` alone does not do this: it reaches only the
//! direct child (a shell's children survive it), and it fires when the
//! *thread* that spawned the child ends, which in a thread pool is not when
//! flow ends. Watching the parent id is what stays true.
//!
//! The supervisor is only there when the running binary can be one (the
//! binary calls [`install`] first thing); elsewhere the command still gets a
//! group of its own, ended on cancellation.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp};

/// The argument that makes the `flow` binary a supervisor.
const ARG: &str = "__supervise";

/// How often the supervisor checks that flow is still there.
const WATCH: Duration = Duration::from_millis(50);

static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Called by the binary before anything else: when it was started as a
/// supervisor, supervises and returns the exit code to end with; otherwise
/// records that commands can be supervised by this binary and returns `None`.
pub fn install() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(ARG.as_ref()) {
        AVAILABLE.store(true, Ordering::Relaxed);
        return None;
    }
    let parent = args.next().and_then(|p| p.to_str()?.parse::<u32>().ok());
    let program = args.next();
    let (Some(parent), Some(program)) = (parent, program) else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: flow {ARG} PARENT_PID PROGRAM [ARGS...]"
        );
        return Some(ExitCode::from(2));
    };
    Some(supervise(parent, &program, args.collect()))
}

/// The command to spawn for `program args`: the supervisor leading a new
/// process group, or the program itself in a new group.
pub fn command(program: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = if AVAILABLE.load(Ordering::Relaxed) {
        // `/proc/self/exe` is this very binary even if its file was replaced.
        let mut command = tokio::process::Command::new("/proc/self/exe");
        command
            .arg(ARG)
            .arg(std::process::id().to_string())
            .arg(program);
        command
    } else {
        tokio::process::Command::new(program)
    };
    command.args(args).process_group(0);
    command
}

/// The supervisor's report that it could not start the program, if that is
/// how the command ended.
pub fn spawn_failure(output: &std::process::Output) -> Option<String> {
    if output.status.code() != Some(127) {
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|l| l.starts_with(CANNOT_RUN))?;
    Some(line.rsplit_once("`: ").map_or(line, |(_, e)| e).to_owned())
}

const CANNOT_RUN: &str = "flow: cannot run `";

/// A command's process group, ended (SIGKILL to every member) when dropped
/// while armed: when the step is cancelled and its future dropped.
pub struct Group(Option<Pid>);

impl Group {
    pub fn new(leader: Option<u32>) -> Self {
        Self(
            leader
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        )
    }

    /// The command ended by itself: nothing to end.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// The exit code a shell would give for `status`.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .map_or(1, |c| u8::try_from(c).unwrap_or(1))
}

fn supervise(parent: u32, program: &OsString, args: Vec<OsString>) -> ExitCode {
    let mut child = match Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "{CANNOT_RUN}{}`: {error}",
                program.to_string_lossy()
            );
            return ExitCode::from(127);
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return ExitCode::from(exit_code(status)),
            Ok(None) => {}
            Err(_) => return ExitCode::from(1),
        }
        if std::os::unix::process::parent_id() != parent {
            // flow is gone: end the group, this process included.
            let _ = killpg(getpgrp(), Signal::SIGKILL);
            return ExitCode::from(137);
        }
        std::thread::sleep(WATCH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_a_shells() {
        use std::process::ExitStatus;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}

flow_engine::inventory::submit!(flow_engine::Startup(install));
