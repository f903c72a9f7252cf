//! Fault injection for tests: `CLIENTELE_FAILPOINT=name=action[,name=action...]` makes the named
//! point of a run fail. Actions: `error` (the operation returns an error), `panic` (a bug), and
//! `crash` (the process aborts on the spot, as a SIGKILL or a power cut would end it: no cleanup,
//! no unwinding, the lock left behind).
//!
//! The points: `step:<name>` before a step runs, and inside publishing `publish:renamed-first`
//! (one staged file moved into place), `publish:renamed` (all moved, before the commit),
//! `publish:committed` (the commit written, before `_latest.json`), `publish:pointed` (before the
//! superseded files are removed) and `run:manifest` (published, before the run's manifest).
//! Unset, a failpoint costs one environment lookup.

use crate::error::{Error, Result};

/// The environment variable naming the failpoints.
pub const VARIABLE: &str = "CLIENTELE_FAILPOINT";

/// What a failpoint does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    Panic,
    Error,
    Crash,
}

/// The action set for `name`, if any.
pub fn failpoint(name: &str) -> Option<Failpoint> {
    let spec = std::env::var(VARIABLE).ok()?;
    spec.split(',').find_map(|pair| {
        let (n, action) = pair.split_once('=')?;
        (n.trim() == name).then_some(())?;
        match action.trim() {
            "panic" => Some(Failpoint::Panic),
            "error" => Some(Failpoint::Error),
            "crash" => Some(Failpoint::Crash),
            _ => None,
        }
    })
}

/// Reaches the failpoint `name`: returns an error, panics or aborts the process as it is set, and
/// does nothing when it is not.
pub fn reach(name: &str) -> Result<()> {
    match failpoint(name) {
        None => Ok(()),
        Some(Failpoint::Error) => Err(Error::Injected(name.to_string())),
        // A deliberate panic: the fault injection that tests how a bug ends a run.
        #[allow(clippy::panic)]
        Some(Failpoint::Panic) => panic!("failpoint {name} reached"),
        Some(Failpoint::Crash) => {
            eprintln!("failpoint {name}: crashing");
            std::process::abort()
        }
    }
}
