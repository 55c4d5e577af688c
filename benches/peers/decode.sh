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

tjbench_rate() { # libjpeg-turbo's own benchmark, in-process, 1 core: Mpixels/s -> images/s
  local mp
  mp=$(tjbench "$DATA/jpeg/000.jpg" -rgb -benchtime 2 -warmup 1 -quiet 2>/dev/null | awk '/^RGB/ {print $NF}')
  python3 -c "print($mp * 1e6 / (1080 * 720))"
}

cv2_rate() { # KIND: jpeg|png; one core (cv2.setNumThreads(1))
  python3 - "$DATA/$1" <<'PY'
import glob, sys, time
import cv2, numpy as np
cv2.setNumThreads(1)
bufs = [np.fromfile(f, np.uint8) for f in sorted(glob.glob(sys.argv[1] + "/*"))]
for b in bufs: cv2.imdecode(b, cv2.IMREAD_COLOR)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 3:
    for b in bufs:
        cv2.imdecode(b, cv2.IMREAD_COLOR); n += 1
print(n / (time.perf_counter() - t0))
PY
}

row() { printf '%-52s %8.1f images/s\n' "$1" "$(for _ in $(seq "$RUNS"); do "${@:2}"; done | median)"; }
row "framering JPEG (libjpeg-turbo), 1 decode thread" framering "$DATA/jpeg" 1 200 turbojpeg
row "framering JPEG (libjpeg-turbo), 2 decode threads" framering "$DATA/jpeg" 2 200 turbojpeg
row "framering JPEG (image), 1 decode thread" framering "$DATA/jpeg" 1 200 image
row "framering JPEG (image), 2 decode threads" framering "$DATA/jpeg" 2 200 image
row "libjpeg-turbo tjbench (in process, 1 core)" tjbench_rate
row "libjpeg-turbo djpeg (process per image, 1 core)" djpeg_rate
row "OpenCV cv2.imdecode JPEG (1 thread)" cv2_rate jpeg
row "framering PNG, 1 decode thread" framering "$DATA/png" 1 50
row "framering PNG, 2 decode threads" framering "$DATA/png" 2 50
row "OpenCV cv2.imdecode PNG (1 thread)" cv2_rate png
