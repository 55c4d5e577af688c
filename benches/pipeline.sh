#!/usr/bin/env bash
# End-to-end figures with the real binaries (run on demand, not in CI):
#   benches/pipeline.sh [RUNS]
# 720x1080x3 frames, 1 producer -> 1 consumer (--output null: every byte read
# into a checksum). Prints the median of RUNS (default 3) runs of:
#   * ring-bound: inputs decoded once, then replayed from memory (--loop-cache-mb),
#     so the producer writes (copies) every byte of every frame;
#   * decode-bound: 1080x720 JPEG (quality 90) decoded every time, 1 and 2 threads;
#   * the same for PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
cargo build --release --quiet --bins --examples
B=target/release
DATA=${BENCH_DATA:-target/bench-inputs}
[ -d "$DATA/jpeg" ] || $B/examples/bench_inputs "$DATA" 10 >/dev/null
SHAPE=(--config /dev/null --height 720 --width 1080 --channels 3)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# run NAME PRODUCER_ARGS... ; prints "producer_fps consumer_fps latency_p50_us"
run() {
  local ring="framering-bench-$$"
  $B/framering-consumer "${SHAPE[@]}" --ring "$ring" --output null \
    --stats-json /tmp/fr-c.json 2>/dev/null &
  local c=$!
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --slots 8 "$@" \
    --stats-json /tmp/fr-p.json 2>/dev/null
  wait $c
  python3 -c 'import json; p=json.load(open("/tmp/fr-p.json")); c=json.load(open("/tmp/fr-c.json")); print(p["fps"], c["fps"], c["latency"]["p50_us"])'
}

measure() {
  local label=$1; shift
  local out; out=$(for _ in $(seq "$RUNS"); do run "$@"; done)
  printf '%-44s producer %8.1f fps   consumer %8.1f fps   latency p50 %8.1f us\n' "$label" \
    "$(cut -d' ' -f1 <<<"$out" | median)" "$(cut -d' ' -f2 <<<"$out" | median)" \
    "$(cut -d' ' -f3 <<<"$out" | median)"
}

measure "ring-bound (replay, copy every byte)" --input "$DATA/jpeg" --loop 300 --loop-cache-mb 1024
measure "JPEG q90 decode, 1 thread" --input "$DATA/jpeg" --loop 20 --decode-threads 1
measure "JPEG q90 decode, 2 threads" --input "$DATA/jpeg" --loop 20 --decode-threads 2
measure "PNG decode, 1 thread" --input "$DATA/png" --loop 10 --decode-threads 1
measure "PNG decode, 2 threads" --input "$DATA/png" --loop 10 --decode-threads 2
