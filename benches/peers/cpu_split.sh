#!/bin/bash
# Where the CPU goes in the main job: framering-producer decoding the bench
# JPEGs (target/bench-inputs/jpeg, made by loaders.py) into a ring that
# framering-consumer --output null reads, timed with /usr/bin/time around
# each process, and the idle time of all CPUs from /proc/stat over the run.
# Prints each process's user/sys seconds, then the run's wall time, the
# consumer's images/s, the idle share and the producer's decode stage.
#
#   benches/peers/cpu_split.sh          (from the repository root)
#   BIN=DIR SLOTS=N LOOPS=N THREADS=N benches/peers/cpu_split.sh
#
# INPUT the folder (target/bench-inputs/jpeg; loaders.py --kind png makes
# target/bench-inputs/png); LOOPS passes over its 10 files (default 90: 900
# images); SLOTS ring slots
# (8); THREADS decode threads (2); BIN the binaries (target/release).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
R=cpusplit-$$
S="--config /dev/null --height 720 --width 1080 --channels 3 --quiet"
cstats=$(mktemp); pstats=$(mktemp)
idle0=$(awk '/^cpu /{print $5+$6}' /proc/stat); t0=$(date +%s.%N)
/usr/bin/time -f "consumer user %U sys %S" "$BIN/framering-consumer" $S --ring $R --output null --stats-json "$cstats" &
C=$!
/usr/bin/time -f "producer user %U sys %S" "$BIN/framering-producer" $S --ring $R --slots "${SLOTS:-8}" \
  --input "${INPUT:-target/bench-inputs/jpeg}" --loop "${LOOPS:-90}" --decode-threads "${THREADS:-2}" --stats-json "$pstats"
wait $C
t1=$(date +%s.%N); idle1=$(awk '/^cpu /{print $5+$6}' /proc/stat)
python3 - "$cstats" "$pstats" "$t0" "$t1" "$idle0" "$idle1" "$(nproc)" <<'PY'
import json, sys
c, p = (json.load(open(f)) for f in sys.argv[1:3])
t0, t1, i0, i1, n = map(float, sys.argv[3:8])
wall = t1 - t0
idle = (i1 - i0) / 100 / n / wall * 100  # USER_HZ = 100
print(f"wall {wall:.2f}s fps {c['fps']:.1f} idle {idle:.1f}% decode_ms {p['stages']['decode_ms']:.3f} read_ms {p['stages']['read_ms']:.3f}")
PY
rm -f "$cstats" "$pstats"
