//! Waiting for a name in /dev/shm to change: how a consumer that started
//! before its producer learns that the ring appeared, woken by inotify once
//! the producer has published its header (the `fchmod` that ends
//! [`Segment`](super::segment::Segment) creation is an `IN_ATTRIB` event),
//! instead of trying to open it every few milliseconds.
//! Where inotify is not available (no /dev/shm directory to watch, out of
//! watches) it falls back to such polling.

use crate::error::SHM_DIR;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How often a watch without inotify looks again.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// A watch of /dev/shm for one name, made before the first look at the
/// name so that no change after that look is missed.
#[derive(Debug)]
pub(crate) struct ShmWatch {
    name: String,
    inotify: Option<Inotify>,
}

impl ShmWatch {
    /// Starts watching /dev/shm for changes to `name`.
    pub(crate) fn new(name: &str) -> ShmWatch {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| {
                // Given its final mode, which a producer does last, once
                // the header is published (or moved in). Not its creation
                // or sizing: the ring cannot be opened yet then, and a
                // consumer woken for nothing takes a core from the
                // producer creating it.
                let events = AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_MOVED_TO;
                i.add_watch(SHM_DIR, events).map(|_| i)
            })
            .map_err(
                |e| tracing::debug!(error = %e, "no inotify on {SHM_DIR}: polling for the ring"),
            )
            .ok();
        ShmWatch {
            name: name.to_string(),
            inotify,
        }
    }

    /// Whether changes come as events (else this watch polls).
    #[cfg(test)]
    pub(crate) fn notified(&self) -> bool {
        self.inotify.is_some()
    }

    /// Waits until the name may have changed: an event names it (`true`),
    /// or `timeout` passed (`false`). Without inotify it waits a couple of
    /// milliseconds at most and says the name may have changed.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(timeout.min(POLL_EVERY));
            return true;
        };
        let deadline = Instant::now() + timeout;
        loop {
            // Drained first: events that came since the last look count.
            match inotify.read_events() {
                Ok(events) => {
                    let ours = events
                        .iter()
                        .any(|e| e.name.as_deref().is_some_and(|n| n == self.name.as_str()));
                    if ours {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                // A watch that fails is a poll: say the name may have changed.
                Err(_) => return true,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }
}

impl Drop for ShmWatch {
    /// Closing an inotify instance waits for the kernel's RCU grace period
    /// (5–30 ms measured here, in the consumer that just attached and is
    /// about to take its first frame): a thread of its own closes it.
    fn drop(&mut self) {
        if let Some(inotify) = self.inotify.take() {
            let _ = std::thread::Builder::new()
                .name("framering-unwatch".into())
                .spawn(move || drop(inotify));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Giving the watched name its mode (as a producer does last) is an
    /// event, another name is not; a watch made before the name appears
    /// sees it appear.
    #[test]
    fn the_watched_name_appearing_is_an_event_and_another_name_is_not() {
        let name = format!("framering-watch-{}", std::process::id());
        let other = format!("framering-watch-other-{}", std::process::id());
        let path = |n: &str| format!("{SHM_DIR}/{n}");
        let _ = std::fs::remove_file(path(&name));
        let watch = ShmWatch::new(&name);
        assert!(watch.notified(), "inotify on {SHM_DIR}");
        let chmod = |n: &str| {
            let f = std::fs::File::open(path(n)).unwrap();
            f.set_permissions(f.metadata().unwrap().permissions())
                .unwrap();
        };
        std::fs::write(path(&other), b"x").unwrap();
        chmod(&other);
        assert!(!watch.wait(Duration::from_millis(50)), "another name");
        std::fs::write(path(&name), b"x").unwrap();
        chmod(&name);
        assert!(watch.wait(Duration::from_secs(60)), "the name appeared");
        std::fs::remove_file(path(&name)).unwrap();
        std::fs::remove_file(path(&other)).unwrap();
    }
}
