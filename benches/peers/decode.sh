#!/usr/bin/env bash
# Decode, the producer's real limit: images/s on 1080x720 JPEG (quality 90,
# 4:2:0) and PNG (zlib 6), framering's producer (decoding straight into the
# slot; a consumer process reading every byte, --output null) with 1 and 2
# decode threads and each JPEG decoder (`image`, libjpeg-turbo through
# --features turbojpeg), against libjpeg-turbo's own tjbench / djpeg and
# OpenCV (cv2.imdecode), in the same run. Medians of RUNS runs.
#   benches/peers/decode.sh [RUNS]
# Needs: apt-get install libjpeg-turbo-progs cmake nasm;
#        pip install opencv-python-headless numpy
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
cargo build --release --quiet --features turbojpeg --bins --examples
B=target/release
DATA=${BENCH_DATA:-target/bench-inputs}
[ -d "$DATA/jpeg" ] || $B/examples/bench_inputs "$DATA" 10 >/dev/null
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
SHAPE=(--config /dev/null --height 720 --width 1080 --channels 3 --quiet)

framering() { # DIR THREADS LOOPS [JPEG_DECODER]
  local ring="framering-dbench-$$"
  $B/framering-consumer "${SHAPE[@]}" --ring "$ring" --output null 2>/dev/null &
  local c=$!
  $B/framering-producer "${SHAPE[@]}" --ring "$ring" --slots 8 --input "$1" --decode-threads "$2" \
    --jpeg-decoder "${4:-auto}" --loop "$3" --stats-json /tmp/fr-dp.json 2>/dev/null
  wait $c
  python3 -c 'import json; print(json.load(open("/tmp/fr-dp.json"))["fps"])'
}

djpeg_rate() { # one core
  local n=0 t0 t1
  t0=$(date +%s.%N)
  for _ in 1 2 3 4 5; do for f in "$DATA"/jpeg/*.jpg; do djpeg -outfile /dev/null "$f"; n=$((n+1)); done; done
  t1=$(date +%s.%N)
  python3 -c "print($n/($t1-$t0))"
}

tjbench_rate() { # [TJBENCH] libjpeg-turbo's own benchmark, in process, 1 core, over
  # every input (harmonic mean): Mpixels/s -> images/s. -nowrite: otherwise
  # tjbench leaves NAME_full.ppm beside each input, which the next framering
  # run would then decode as well.
  local tj=${1:-tjbench} f
  for f in "$DATA"/jpeg/*.jpg; do
    "$tj" "$f" -rgb -benchtime 0.5 -warmup 0.2 -quiet -nowrite 2>&1 | awk '/^RGB/ {print $NF}'
  done | awk '{s += 1 / $1; n++} END {printf "%.1f\n", n / s * 1e6 / (1080 * 720)}'
}
# The libjpeg-turbo that framering links (3.x, built by turbojpeg-sys).
TJ3=$(ls target/release/build/turbojpeg-sys-*/out/build/tjbench-static 2>/dev/null | head -1)

cv2_rate() { # KIND: jpeg|png; one core (cv2.setNumThreads(1))
  python3 - "$DATA/$1" <<'PY'
import glob, sys, time
import cv2, numpy as np
cv2.setNumThreads(1)
bufs = [np.fromfile(f, np.uint8) for f in sorted(glob.glob(sys.argv[1] + "/*"))]
for b in bufs: img = cv2.imdecode(b, cv2.IMREAD_COLOR)
# Keep each result until the next one replaces it, as real code does: a
# result dropped at once has glibc unmap and re-fault its 2.3 MB every call
# (OpenCV then measures ~40 % slower).
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 3:
    for b in bufs:
        img = cv2.imdecode(b, cv2.IMREAD_COLOR); n += 1
print(n / (time.perf_counter() - t0))
PY
}

# Interleaved: every run measures each row once (the VM's speed drifts by up
# to 2.5x within minutes, so rows measured minutes apart are not comparable).
ROWS=(
  "framering JPEG (libjpeg-turbo), 1 decode thread|framering $DATA/jpeg 1 200 turbojpeg"
  "framering JPEG (libjpeg-turbo), 2 decode threads|framering $DATA/jpeg 2 200 turbojpeg"
  "framering JPEG (image), 1 decode thread|framering $DATA/jpeg 1 200 image"
  "framering JPEG (image), 2 decode threads|framering $DATA/jpeg 2 200 image"
  "libjpeg-turbo 2.1 tjbench (in process, 1 core)|tjbench_rate"
  ${TJ3:+"libjpeg-turbo 3.1 tjbench (framering's, 1 core)|tjbench_rate $TJ3"}
  "libjpeg-turbo djpeg (process per image, 1 core)|djpeg_rate"
  "OpenCV cv2.imdecode JPEG (1 thread)|cv2_rate jpeg"
  "framering PNG, 1 decode thread|framering $DATA/png 1 50"
  "framering PNG, 2 decode threads|framering $DATA/png 2 50"
  "OpenCV cv2.imdecode PNG (1 thread)|cv2_rate png"
)
OUT=$(mktemp -d)
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS" >&2
  for i in "${!ROWS[@]}"; do
    # shellcheck disable=SC2086
    ${ROWS[$i]#*|} >> "$OUT/$i"
  done
done
for i in "${!ROWS[@]}"; do
  printf '%-52s %8.1f images/s\n' "${ROWS[$i]%%|*}" "$(median < "$OUT/$i")"
done
rm -rf "$OUT"
