#!/usr/bin/env bash
# Video figures with the real binaries and real ffmpeg (run on demand):
#   benches/video.sh [RUNS]
# A 1080p H.264 test video (ffmpeg testsrc2, 600 frames) decoded by ffmpeg
# into the ring, consumers reading every byte (--output null). Medians of
# RUNS (default 3) runs of:
#   * ffmpeg alone, decoding to rawvideo into /dev/null (the ceiling);
#   * framering, 1 group (1 consumer), and 2 groups (1 consumer each);
#   * drop_oldest at --fps-limit 120 with a consumer that holds each frame
#     20 ms (~50 fps): the producer's pace, frames taken and dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
cargo build --release --quiet --bins
B=target/release
DATA=${BENCH_DATA:-target/bench-inputs}
mkdir -p "$DATA"
VID=$DATA/testsrc2-1080p.mp4
[ -f "$VID" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
  -frames:v 600 -c:v libx264 -preset veryfast -pix_fmt yuv420p "$VID"
SHAPE=(--config /dev/null --height 1080 --width 1920 --channels 3 --slots 8 --quiet)
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
j() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

ffmpeg_alone() {
  local t0 t1
  t0=$(date +%s.%N)
  ffmpeg -hide_banner -loglevel error -i "$VID" -an -f rawvideo -pix_fmt rgb24 - >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(600/($t1-$t0))"
}

# groups N: N groups, one null consumer each; prints producer fps
groups() {
  local n=$1 ring="framering-vbench-$$" gs="" pids=()
  for g in $(seq "$n"); do
    gs="$gs${gs:+,}g$g"
    $B/framering-consumer "${SHAPE[@]}" --ring "$ring" --group "g$g" --output null 2>/dev/null &
    pids+=($!)
  done
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --input "$VID" --groups "$gs" \
    --stats-json /tmp/fr-vp.json 2>/dev/null
  wait "${pids[@]}"
  j /tmp/fr-vp.json 'd["fps"]'
}

# drop_oldest at 120 fps against a 20 ms/frame consumer
live() {
  local ring="framering-vbench-live-$$"
  $B/framering-consumer "${SHAPE[@]}" --ring "$ring" --output null --hold-ms 20 \
    --stats-json /tmp/fr-vc.json 2>/dev/null &
  local c=$!
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --input "$VID" --backpressure drop_oldest \
    --fps-limit 120 --stats-json /tmp/fr-vp.json 2>/dev/null
  wait $c
  echo "$(j /tmp/fr-vp.json 'd["fps"]') $(j /tmp/fr-vc.json 'd["frames"]') $(j /tmp/fr-vp.json 'd["dropped"]')"
}

printf '%-48s %8.1f fps\n' "ffmpeg alone (1080p H.264 -> rgb24 -> /dev/null)" \
  "$(for _ in $(seq "$RUNS"); do ffmpeg_alone; done | median)"
printf '%-48s %8.1f fps\n' "framering, 1 group" "$(for _ in $(seq "$RUNS"); do groups 1; done | median)"
printf '%-48s %8.1f fps\n' "framering, 2 groups" "$(for _ in $(seq "$RUNS"); do groups 2; done | median)"
out=$(for _ in $(seq "$RUNS"); do live; done)
printf '%-48s %8.1f fps  (consumer took %s, dropped %s of 600)\n' \
  "drop_oldest, limit 120 fps, consumer 20 ms/frame" \
  "$(cut -d' ' -f1 <<<"$out" | median)" "$(cut -d' ' -f2 <<<"$out" | median)" \
  "$(cut -d' ' -f3 <<<"$out" | median)"
