//! `framering bridge send|recv`: frames across hosts over Zenoh (feature
//! `bridge`).
//!
//! The sender joins a group of a local ring and publishes each frame on a
//! zenoh key, the payload owning the frame's lease (no copy of our own), the
//! metadata in the attachment ([`wire`]), its session in the source info.
//! It serves the ring's geometry on `<key>/@geometry` and holds a
//! liveliness token `<key>/@alive/<zid>`. The receiver learns the geometry,
//! creates a local ring of that shape, and takes messages only from that
//! sender's session: it copies each payload into a loaned slot (the one
//! copy), publishes it with the remote timestamps, counts gaps in the remote
//! seq and acknowledges it (`<key>/@ack`). A lossless sender keeps each
//! frame's slot until every receiver (liveliness `<key>/@recv/<id>`) has
//! acknowledged it, and sends again what a restarted receiver, resuming
//! from the position it left in /dev/shm (`position`), does not have.
//!
//! [`args`] (the flags over the `[bridge]` config section,
//! [`crate::app::config::bridge`]) and [`wire`] (the attachment) are
//! compiled without the feature, so any build accepts a config file with a
//! `[bridge]` section.

pub mod args;
pub mod wire;

#[cfg(feature = "bridge")]
pub mod command;
#[cfg(feature = "bridge")]
pub mod recv;
#[cfg(feature = "bridge")]
pub mod send;

#[cfg(feature = "bridge")]
mod position;
#[cfg(feature = "bridge")]
mod window;

#[cfg(feature = "bridge")]
pub use session::{
    ack_key, alive_key, alive_token, geometry_key, open_session, receiver_key, receiver_token,
    start_watchdog, token_id,
};

#[cfg(feature = "bridge")]
mod session {
    use crate::app::config::bridge::{BridgeConfig, ZenohMode};
    use anyhow::Context;
    use std::time::Duration;
    use zenoh::Wait;

    /// The TCP send buffer of a live sender (`tcp_send_buffer = 0`): 2 ms at
    /// 1 Gbit/s, so the newest frame does not wait behind older ones in the
    /// kernel.
    const LIVE_TCP_SEND_BUFFER: u32 = 256 * 1024;

    /// The key expression of the senders' liveliness tokens,
    /// `<key>/@alive/<zid>` (the sender's zenoh session id: the receiver
    /// accepts frames only from the session whose token it follows).
    pub fn alive_key(key: &str) -> String {
        format!("{key}/@alive/*")
    }

    /// The liveliness token of the sender whose session is `zid`.
    pub fn alive_token(key: &str, zid: zenoh::session::ZenohId) -> String {
        format!("{key}/@alive/{zid}")
    }

    /// The key expression of the receivers' liveliness tokens,
    /// `<key>/@recv/<id>` (the receiver's id, 16 hex digits, kept across
    /// its restarts).
    pub fn receiver_key(key: &str) -> String {
        format!("{key}/@recv/*")
    }

    /// The liveliness token of receiver `id`.
    pub fn receiver_token(key: &str, id: u64) -> String {
        format!("{key}/@recv/{id:016x}")
    }

    /// The last chunk of a token's key (the zid or receiver id).
    pub fn token_id<'a>(token: &'a zenoh::key_expr::KeyExpr<'_>) -> &'a str {
        token.as_str().rsplit('/').next().unwrap_or("")
    }

    /// The key of the sender's geometry queryable.
    pub fn geometry_key(key: &str) -> String {
        format!("{key}/@geometry")
    }

    /// The key on which receivers acknowledge each frame once it is in
    /// their ring ([`super::wire::Ack`]): a lossless sender keeps each frame
    /// until every receiver has it (and sends it again to one that
    /// restarts); a live sender keeps a window of frames in flight sized
    /// to the link's bandwidth-delay product (`window`), so the next one it
    /// picks is the newest when the window has room, not one queued behind
    /// it.
    pub fn ack_key(key: &str) -> String {
        format!("{key}/@ack")
    }

    fn json_list(v: &[String]) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
    }

    /// The zenoh configuration for `c`: every setting that changes results
    /// is set here, explicitly.
    pub fn zenoh_config(c: &BridgeConfig) -> anyhow::Result<zenoh::Config> {
        let mut z = if c.zenoh_config.is_empty() {
            zenoh::Config::default()
        } else {
            zenoh::Config::from_file(&c.zenoh_config)
                .map_err(|e| anyhow::anyhow!("bridge.zenoh_config {:?}: {e}", c.zenoh_config))?
        };
        let mode = match c.mode {
            ZenohMode::Peer => "\"peer\"",
            ZenohMode::Client => "\"client\"",
        };
        let block_us = (c.block_timeout_secs * 1e6).round().max(1.0) as u64;
        let mut settings = vec![
            ("mode", mode.to_string()),
            ("connect/endpoints", json_list(&c.connect)),
            // A peer connects in the background (zenoh's peer default:
            // `open` does not wait), retrying every 250 ms to 1 s until the
            // other side is up (and after it went away).
            (
                "connect/retry",
                "{period_init_ms: 250, period_max_ms: 1000, period_increase_factor: 2}".into(),
            ),
            (
                "scouting/multicast/enabled",
                c.multicast_scouting.to_string(),
            ),
            (
                "transport/shared_memory/enabled",
                c.shared_memory.to_string(),
            ),
            ("transport/link/tx/lease", c.lease_ms.to_string()),
            (
                "transport/link/tx/queue/congestion_control/block/wait_before_close",
                block_us.to_string(),
            ),
        ];
        if !c.listen.is_empty() {
            settings.push(("listen/endpoints", json_list(&c.listen)));
        }
        let sndbuf = match (c.tcp_send_buffer, c.live) {
            (0, true) => Some(LIVE_TCP_SEND_BUFFER),
            (0, false) => None,
            (n, _) => Some(n),
        };
        if let Some(n) = sndbuf {
            settings.push(("transport/link/tcp/so_sndbuf", n.to_string()));
        }
        if c.tls() {
            // Mutual: both sides show a certificate the CA signed, on the
            // links they accept and on those they open.
            let s = |v: &str| serde_json::Value::from(v).to_string();
            settings.extend([
                ("transport/link/tls/root_ca_certificate", s(&c.tls_root_ca)),
                (
                    "transport/link/tls/listen_certificate",
                    s(&c.tls_certificate),
                ),
                (
                    "transport/link/tls/listen_private_key",
                    s(&c.tls_private_key),
                ),
                (
                    "transport/link/tls/connect_certificate",
                    s(&c.tls_certificate),
                ),
                (
                    "transport/link/tls/connect_private_key",
                    s(&c.tls_private_key),
                ),
                ("transport/link/tls/enable_mtls", "true".into()),
                (
                    "transport/link/tls/verify_name_on_connect",
                    c.tls_verify_name.to_string(),
                ),
            ]);
        }
        if c.batch_size != 0 {
            settings.push(("transport/link/tx/batch_size", c.batch_size.to_string()));
        }
        for (k, v) in settings {
            z.insert_json5(k, &v)
                .map_err(|e| anyhow::anyhow!("zenoh config {k} = {v}: {e}"))?;
        }
        Ok(z)
    }

    /// Opens the zenoh session of `c`.
    pub fn open_session(c: &BridgeConfig) -> anyhow::Result<zenoh::Session> {
        let z = zenoh_config(c)?;
        let session = zenoh::open(z)
            .wait()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "cannot open the zenoh session (listen {:?}, connect {:?})",
                    c.listen, c.connect
                )
            })?;
        tracing::info!(zid = %session.zid(), mode = ?c.mode, listen = ?c.listen, connect = ?c.connect, "zenoh session open");
        Ok(session)
    }

    /// After a stop signal, gives the process `grace` to end cleanly, then
    /// exits with 130 (a send blocked on a full zenoh queue, a stuck
    /// close): Ctrl-C and SIGTERM always work.
    pub fn start_watchdog(grace: Duration) {
        std::thread::Builder::new()
            .name("stop-watchdog".into())
            .spawn(move || {
                while !crate::app::signals::stop_requested() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(grace);
                eprintln!(
                    "bridge: did not stop within {} s of the signal; exiting",
                    grace.as_secs_f64()
                );
                std::process::exit(crate::app::exit::INTERRUPTED);
            })
            .ok();
    }
}
