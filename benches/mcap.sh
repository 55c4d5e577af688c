#!/usr/bin/env bash
# MCAP recording and replay figures with the real binaries (run on demand):
#   benches/mcap.sh [RUNS] [FRAMES]
# FRAMES (default 150) frames of 720x1080x3 (ffmpeg testsrc2, raw rgb24, in
# the page cache) published into a ring; one consumer records them to a file
# in target/ (same disk). Medians of RUNS (default 3) runs, each run all of:
#   * --output rec.mcap with chunk compression none, lz4, zstd;
#   * --output - > raw.bin (raw frames, the reference);
#   * --output - | ffmpeg -f rawvideo ... -c copy rec.mkv;
#   * replay: --input rec.mcap against raw frames on stdin (--input -),
#     a consumer reading every byte (--output null).
# fps = FRAMES / wall time of the pipeline; MB/s of frame bytes; the
# recorder's peak private memory (Private_* of /proc/PID/smaps_rollup,
# sampled every 20 ms: the ring's shared pages are not counted). Each
# recording run starts after a sync, so that none pays for the writeback
# of the one before.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
N=${2:-150}
cargo build --release --quiet --bins
B=$PWD/target/release
DATA=${BENCH_DATA:-target/bench-inputs}
OUT=target/bench-mcap
mkdir -p "$DATA" "$OUT"
RAW=$DATA/testsrc2-720x1080-$N.rgb
[ -f "$RAW" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1080x720:rate=30 \
  -frames:v "$N" -f rawvideo -pix_fmt rgb24 "$RAW"
cat "$RAW" >/dev/null # into the page cache
FRAME=$((720 * 1080 * 3))
SHAPE=(--config /dev/null --height 720 --width 1080 --channels 3 --slots 8 --quiet)
CONS=(--config /dev/null --quiet)
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

# peak PID: the largest private memory (KiB) of PID until it exits.
peak() {
  local pid=$1 max=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^Private_(Clean|Dirty):/ {s+=$2} END {print s+0}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$max" ] && max=$v
    sleep 0.02
  done
  echo "$max"
}

# record KIND: prints the fps of one recording run.
record() {
  local kind=$1 ring="framering-mbench-$$" t0 t1
  case $kind in raw) rm -f "$OUT/raw.bin" ;; mkv) rm -f "$OUT/rec.mkv" ;; *) rm -f "$OUT/rec.mcap" ;; esac
  # No run starts with the previous run's dirty pages still to write back.
  sync
  t0=$(now)
  case $kind in
    none|lz4|zstd)
      $B/framering-consumer "${CONS[@]}" --ring "$ring" --output "$OUT/rec.mcap" \
        --mcap-compression "$kind" & ;;
    raw)
      $B/framering-consumer "${CONS[@]}" --ring "$ring" --output - >"$OUT/raw.bin" & ;;
    mkv)
      $B/framering-consumer "${CONS[@]}" --ring "$ring" --output - |
        ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt rgb24 -s 1080x720 -r 30 -i - \
          -c copy -allow_raw_vfw 1 "$OUT/rec.mkv" &
      ;;
  esac
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --input "$RAW" --source raw
  wait
  t1=$(now)
  python3 -c "print($N/($t1-$t0))"
}

# recorder_memory: peak private KiB of an mcap recorder.
recorder_memory() {
  local ring="framering-mbench-mem-$$" pid
  rm -f "$OUT"/rec.mcap
  $B/framering-consumer "${CONS[@]}" --ring "$ring" --output "$OUT/rec.mcap" &
  pid=$!
  peak "$pid" >"$OUT/peak" &
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --input "$RAW" --source raw
  wait
  cat "$OUT/peak"
}

# replay KIND: fps of replaying rec.mcap / raw.bin into a null consumer.
replay() {
  local kind=$1 ring="framering-mbench-r-$$" t0 t1
  t0=$(now)
  $B/framering-consumer "${CONS[@]}" --ring "$ring" --output null &
  if [ "$kind" = mcap ]; then
    $B/framering-producer --config /dev/null --slots 8 --quiet --ring "$ring" --input "$OUT/rec.mcap"
  else
    $B/framering-producer "${SHAPE[@]}" --ring "$ring" --input - --source raw <"$OUT/raw.bin"
  fi
  wait
  t1=$(now)
  python3 -c "print($N/($t1-$t0))"
}

declare -A R
for _ in $(seq "$RUNS"); do
  for k in raw none lz4 zstd mkv; do R[$k]+="$(record $k) "; done
  # Replays read the raw frames and an uncompressed recording.
  record raw >/dev/null
  record none >/dev/null
  for k in rawin mcap; do R[replay-$k]+="$(replay $k) "; done
  R[mem]+="$(recorder_memory) "
done
mb() { python3 -c "print(f'{$1*$FRAME/1e6:.0f}')"; }
RAWFPS=$(echo ${R[raw]} | tr ' ' '\n' | median)
echo "recording $N frames of 720x1080x3, median of $RUNS runs:"
for k in raw none lz4 zstd mkv; do
  m=$(echo ${R[$k]} | tr ' ' '\n' | median)
  printf '  %-28s %7.1f fps %6s MB/s  %.2fx raw\n' "$k" "$m" "$(mb "$m")" "$(python3 -c "print($m/$RAWFPS)")"
done
RIN=$(echo ${R[replay-rawin]} | tr ' ' '\n' | median)
RM=$(echo ${R[replay-mcap]} | tr ' ' '\n' | median)
printf 'replay: raw on stdin %.1f fps, --input rec.mcap %.1f fps (%.2fx)\n' "$RIN" "$RM" "$(python3 -c "print($RM/$RIN)")"
echo "recorder peak private memory (KiB), median: $(echo ${R[mem]} | tr ' ' '\n' | median); one frame is $((FRAME / 1024)) KiB"
rm -rf "$OUT"
