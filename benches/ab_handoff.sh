#!/bin/bash
# Two builds of framering, alternating: N pairs of the small-frame spinning
# hand-off (`framering bench`, 16x16x1, no pixel work), S seconds each; prints
# each pair (before, after, after/before) and the median of the per-pair
# ratios. On a VM whose speed swings from minute to minute, only pairs
# measured seconds apart mean anything.
#
#   benches/ab_handoff.sh BEFORE/framering AFTER/framering [N=15] [S=1]
set -euo pipefail
A=$1; B=$2; N=${3:-15}; S=${4:-1}
fps() {
  "$1" bench --json --seconds "$S" --height 16 --width 16 --channels 1 \
    --producer-work none --consumer-work none --wait spin 2>/dev/null |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['roles'][1]['fps']))"
}
ratios=()
for _ in $(seq "$N"); do
  a=$(fps "$A"); b=$(fps "$B")
  r=$(python3 -c "print(round($b / $a, 3))")
  echo "$a $b $r"
  ratios+=("$r")
done
python3 -c "import statistics, sys; print('median ratio', statistics.median(map(float, sys.argv[1:])), 'pairs', len(sys.argv) - 1)" "${ratios[@]}"
