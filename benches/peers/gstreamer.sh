#!/usr/bin/env bash
# GStreamer shmsink -> shmsrc with 720x1080 RGB frames: videotestsrc writes
# every byte of each frame, shmsink copies it into its shared memory, a second
# gst-launch process reads it with shmsrc into fakesink. Prints
# {"peer": "gstreamer-shm", "fps": F} or {"peer": ..., "hang": true} when a
# run does not finish within its time box (shm transport can deadlock).
#   benches/peers/gstreamer.sh [FRAMES]
set -uo pipefail
N=${1:-3000}
SOCK=/tmp/framering-gst-$$.sock
CAPS="video/x-raw,format=RGB,width=1080,height=720,framerate=0/1"
rm -f "$SOCK"
start=$(date +%s.%N)
timeout 60 gst-launch-1.0 -q videotestsrc num-buffers="$N" pattern=solid-color foreground-color=0xff336699 \
  ! "$CAPS" ! shmsink socket-path="$SOCK" shm-size=100000000 wait-for-connection=true sync=false >/dev/null 2>&1 &
src=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.02; done
timeout 60 gst-launch-1.0 -q shmsrc socket-path="$SOCK" is-live=false do-timestamp=false \
  ! "$CAPS" ! fakesink sync=false >/dev/null 2>&1 &
sink=$!
wait $src; rs=$?
end=$(date +%s.%N)
kill $sink 2>/dev/null; wait $sink 2>/dev/null
rm -f "$SOCK"
if [ $rs -ne 0 ]; then
  echo '{"peer": "gstreamer-shm", "hang": true}'
else
  python3 -c "print('{\"peer\": \"gstreamer-shm\", \"fps\": %.1f}' % ($N/($end-$start)))"
fi
