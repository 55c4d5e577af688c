//! `framering list`: every framering ring in /dev/shm with its producer and
//! state, one line each.

use super::exit;
use framering_ring::inspect::{self, RingView};
use framering_ring::OpenError;
use std::io::Write;

/// Writes the table to `out` (files in /dev/shm that are not rings are
/// left out; a ring that cannot be read says why).
pub fn run(out: &mut impl Write) -> anyhow::Result<i32> {
    writeln!(
        out,
        "{:<32} {:>5} {:>16} {:>7} {:>8} {:>6} {:>10} {:>9}  state",
        "NAME", "SLOTS", "FRAME (HxWxC)", "DTYPE", "PRODUCER", "ALIVE", "PUBLISHED", "CONSUMERS"
    )?;
    for name in inspect::shm_names()? {
        match RingView::open(&name) {
            Ok(view) => {
                let s = view.snapshot();
                let p = &s.producer;
                let state = if p.alive {
                    p.state
                } else {
                    "abandoned (framering clean removes it)"
                };
                writeln!(
                    out,
                    "{:<32} {:>5} {:>16} {:>7} {:>8} {:>6} {:>10} {:>9}  {}",
                    name,
                    s.slots,
                    format!("{}x{}x{}", s.height, s.width, s.channels),
                    s.dtype.name(),
                    p.pid,
                    if p.alive { "yes" } else { "no" },
                    p.published,
                    s.consumers.len(),
                    state
                )?;
            }
            Err(OpenError::NotARing { .. }) | Err(OpenError::InvalidName(_)) => {}
            Err(e) => writeln!(out, "{name:<32} (unreadable: {e})")?,
        }
    }
    Ok(exit::OK)
}
