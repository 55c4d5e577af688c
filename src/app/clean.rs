//! `framering clean`: removes the rings whose producer is dead.

use super::exit;
use framering_ring::inspect::{self, Removal};
use framering_ring::OpenError;
use std::io::Write;

/// Removes the rings whose producer is dead, all of them or just `only`,
/// saying on `out` what it removed and what it kept. With `force` (and a
/// name) a ring that cannot be read as one is removed too. The exit code:
/// 3 when `only` was kept.
pub fn run(only: Option<String>, force: bool, out: &mut impl Write) -> anyhow::Result<i32> {
    let names = match &only {
        Some(n) => vec![n.clone()],
        None => inspect::shm_names()?,
    };
    let mut code = exit::OK;
    for name in names {
        match inspect::remove_if_abandoned(&name) {
            Ok(Removal::Kept { pid }) => {
                writeln!(out, "kept {name}: its producer (pid {pid}) is alive")?;
                if only.is_some() {
                    code = exit::RING;
                }
            }
            Ok(Removal::Removed { pid }) => {
                writeln!(out, "removed {name} (producer pid {pid} is gone)")?
            }
            Err(OpenError::NotARing { .. }) | Err(OpenError::InvalidName(_)) if only.is_none() => {}
            Err(e) => {
                // Unreadable as a ring: its producer cannot be checked, so
                // only an explicit --force removes it.
                let forceable = matches!(
                    e,
                    OpenError::NotARing { .. }
                        | OpenError::NotReady { .. }
                        | OpenError::Corrupt { .. }
                        | OpenError::Version { .. }
                );
                if forceable && force {
                    match std::fs::remove_file(format!("/dev/shm/{name}")) {
                        Ok(()) => writeln!(out, "removed {name} (--force: {e})")?,
                        Err(io) => {
                            writeln!(out, "kept {name}: {io}")?;
                            code = exit::RING;
                        }
                    }
                } else {
                    let hint = if forceable && only.is_some() {
                        " (if it is a dead leftover: framering clean --force NAME)"
                    } else {
                        ""
                    };
                    writeln!(out, "kept {name}: {e}{hint}")?;
                    code = exit::RING;
                }
            }
        }
    }
    Ok(code)
}
