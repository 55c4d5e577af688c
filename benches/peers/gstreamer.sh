#!/usr/bin/env bash
# GStreamer shmsink -> shmsrc with 720x1080 RGB frames: videotestsrc paints
# every byte of each frame (into shmsink's shared memory: shmsink offers its
# allocator upstream), a second gst-launch process receives each buffer with
# shmsrc and drops it in fakesink (which reads none of the bytes).
#
# fps = FRAMES / the receiving pipeline's own "Execution ended after" time
# (PLAYING to its last buffer, so gst-launch start-up is not counted).
# Prints {"peer": "gstreamer-shm", "fps": F} or {"peer": ..., "hang": true}
# when the receiver does not get FRAMES buffers within its time box.
#
# Note: GStreamer 1.22 (Debian 12) shmsink exits with status 1 and
# "Failed waiting on fd activity ... errno: 16" on every clean shutdown
# (its poll thread reads the EBUSY of its own flush as an error; fixed
# upstream in MR !11109), so the sender's exit status is not used: the
# receiver's is. With a smaller shm-size (5 or 10 MB: 2-4 frames) the pair
# deadlocks here every time (the time box reports it as a hang); 100 MB
# (42 frames) runs.
#   benches/peers/gstreamer.sh [FRAMES [WIDTH HEIGHT]]
set -uo pipefail
N=${1:-20000}
W=${2:-1080}
H=${3:-720}
T=${GST_TIMEOUT:-120}  # seconds before a run counts as a hang
SOCK=/tmp/framering-gst-$$.sock
CAPS="video/x-raw,format=RGB,width=$W,height=$H,framerate=0/1"
rm -f "$SOCK"
timeout "$T" gst-launch-1.0 -q videotestsrc num-buffers="$N" pattern=solid-color foreground-color=0xff336699 \
  ! "$CAPS" ! shmsink socket-path="$SOCK" shm-size=100000000 wait-for-connection=true sync=false >/dev/null 2>&1 &
src=$!
for _ in $(seq 250); do [ -S "$SOCK" ] && break; sleep 0.02; done
out=$(timeout "$T" gst-launch-1.0 shmsrc socket-path="$SOCK" is-live=false do-timestamp=false num-buffers="$N" \
  ! "$CAPS" ! fakesink sync=false 2>&1)
rs=$?
kill $src 2>/dev/null; wait $src 2>/dev/null
rm -f "$SOCK"
t=$(printf '%s\n' "$out" | sed -n 's/.*Execution ended after \([0-9:.]*\).*/\1/p')
if [ $rs -ne 0 ] || [ -z "$t" ]; then
  echo '{"peer": "gstreamer-shm", "hang": true}'
else
  python3 -c "
h, m, s = '$t'.split(':')
print('{\"peer\": \"gstreamer-shm\", \"fps\": %.1f}' % ($N / (int(h) * 3600 + int(m) * 60 + float(s))))"
fi
