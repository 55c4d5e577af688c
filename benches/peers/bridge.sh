#!/usr/bin/env bash
# The Zenoh bridge on loopback against its baselines, 720x1080x3 u8 frames,
# zenoh's shared memory off (so loopback measures the network path):
#   bridge: framering-producer (real images, cached) -> ring A ->
#           framering bridge send -> zenoh/TCP -> framering bridge recv ->
#           ring B -> framering-consumer --output null (reads every byte);
#           fps = the consumer's (first frame to last).
#   zenoh:  examples/zenoh_peer.rs zenoh-pub -> zenoh-sub, the same payloads
#           and zenoh settings (Block, reliable, batch 65535), every byte read.
#   tcp:    zenoh_peer tcp-send -> tcp-recv, the same bytes over one TCP
#           socket, read into a buffer (the limit).
# Prints one JSON line per run, then a table of medians and the ratios.
#   benches/peers/bridge.sh [FRAMES [RUNS]]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2000}
RUNS=${2:-3}
H=720 W=1080
cargo build --release --features bridge --bins --example zenoh_peer >&2
BIN=target/release
PEER=$BIN/examples/zenoh_peer
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LOOPS=$(( (N + 7) / 8 ))
FRAMES=$(( LOOPS * 8 ))

bridge_run() {
  local p key a b
  p=$(port); key="framering/bench-$$-$1"; a="frb-bench-a-$$"; b="frb-bench-b-$$"
  $BIN/framering bridge recv --config /dev/null --ring "$b" --groups bench --key "$key" \
    --listen "tcp/127.0.0.1:$p" --multicast-scouting false -q 2>"$TMP/recv.log" &
  local recv=$!
  $BIN/framering-producer --config /dev/null --ring "$a" --height $H --width $W --channels 3 \
    --input assets --loop $LOOPS --loop-cache-mb 256 -q 2>"$TMP/prod.log" &
  local prod=$!
  $BIN/framering bridge send "$a" --config /dev/null --key "$key" --connect "tcp/127.0.0.1:$p" \
    --multicast-scouting false -q 2>"$TMP/send.log" &
  local send=$!
  $BIN/framering-consumer --config /dev/null --ring "$b" --group bench --output null \
    --wait-timeout 60 -q --stats-json "$TMP/cons.json" 2>"$TMP/cons.log"
  wait $send $recv $prod
  python3 - "$TMP/cons.json" $H $W <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); h, w = int(sys.argv[2]), int(sys.argv[3])
print(json.dumps({"mode": "bridge", "frames": s["frames"], "seconds": round(s["seconds"], 3),
                  "fps": round(s["fps"], 1), "gbit_per_s": round(s["fps"] * h * w * 3 * 8 / 1e9, 3)}))
PY
}

zenoh_run() {
  local p; p=$(port)
  $PEER zenoh-sub --frames $FRAMES --listen "tcp/127.0.0.1:$p" --key "framering/plain-$$-$1" > "$TMP/z.json" &
  local sub=$!
  $PEER zenoh-pub --frames $FRAMES --connect "tcp/127.0.0.1:$p" --key "framering/plain-$$-$1" >/dev/null 2>&1
  wait $sub
  cat "$TMP/z.json"
}

tcp_run() {
  local p; p=$(port)
  $PEER tcp-recv --frames $FRAMES --addr "127.0.0.1:$p" > "$TMP/t.json" &
  local r=$!
  $PEER tcp-send --frames $FRAMES --addr "127.0.0.1:$p"
  wait $r
  cat "$TMP/t.json"
}

: > "$TMP/all.jsonl"
for i in $(seq "$RUNS"); do
  for m in bridge zenoh tcp; do
    "${m}_run" "$i" | tee -a "$TMP/all.jsonl"
  done
done
python3 - "$TMP/all.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {m: statistics.median(r["fps"] for r in rows if r["mode"] == m) for m in ("bridge", "zenoh", "tcp")}
gb = {m: statistics.median(r["gbit_per_s"] for r in rows if r["mode"] == m) for m in med}
print(f"{'peer':<8} {'fps (median)':>13} {'Gbit/s':>8}")
for m in med:
    print(f"{m:<8} {med[m]:>13.1f} {gb[m]:>8.2f}")
print(f"bridge / plain zenoh = {med['bridge'] / med['zenoh']:.2f}x   bridge / raw TCP = {med['bridge'] / med['tcp']:.2f}x")
PY
