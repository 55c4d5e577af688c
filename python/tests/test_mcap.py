"""MCAP recordings checked by readers nobody here wrote (issue 25): the
Python ``mcap`` library with its protobuf and ROS 2 decoders reads what
``framering-consumer --output rec.mcap`` recorded and finds every published
frame's pixels and times; ``framering-producer --input`` replays files the
Python ``mcap`` writers wrote (foxglove.RawImage with Foxglove's own schema
package, sensor_msgs/msg/Image)."""

import subprocess

import numpy as np
import pytest
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory as ProtobufDecoders
from mcap_protobuf.writer import Writer as ProtobufWriter
from mcap_ros2.decoder import DecoderFactory as Ros2Decoders
from mcap_ros2.writer import Writer as Ros2Writer

import framering
from conftest import binary, finish

BASE_NS = 1_700_000_000_000_000_000
N = 12

ROS_IMAGE = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


def frames(shape, dtype):
    rng = np.random.default_rng(25)
    if dtype == "float32":
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(N)]
    top = np.iinfo(dtype).max + 1
    return [rng.integers(0, top, shape, dtype=dtype) for _ in range(N)]


def record(ring, tmp_path, shape, dtype, *flags):
    """Publishes N known frames (metadata and times given) while a Rust
    consumer records them; returns the file and the frames."""
    path = tmp_path / f"{ring}.mcap"
    consumer = subprocess.Popen(
        [binary("framering-consumer"), "--config", "/dev/null", "--ring", ring, "-q",
         "--group", "rec", "--output", str(path), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pixels = frames(shape, dtype)
    p = framering.Producer(ring, shape=shape, dtype=dtype, slots=8, groups=["rec"])
    for i, f in enumerate(pixels):
        p.publish(f, meta=f"frame {i}".encode(), source="cam7",
                  capture_ns=BASE_NS + i * 33_000_000, pts_ns=i * 40_000_000)
    assert p.close(timeout=60)
    finish(consumer, timeout=60)
    return path, pixels


@pytest.mark.parametrize("shape,dtype,encoding", [
    ((24, 32, 3), "uint8", "rgb8"),
    ((20, 18, 1), "uint16", "mono16"),
    ((10, 12, 3), "float32", "32FC3"),
])
@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_the_protobuf_decoder_reads_every_frame_of_a_recording(
        ring, tmp_path, shape, dtype, encoding, compression):
    path, pixels = record(ring, tmp_path, shape, dtype, "--mcap-compression", compression)
    images, metas = [], []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[ProtobufDecoders()])
        summary = reader.get_summary()
        assert summary is not None and summary.chunk_indexes, "indexed, with a summary"
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            if schema.name == "foxglove.RawImage":
                assert channel.topic == f"/{ring}/image"
                images.append((message, decoded))
            else:
                assert schema.name == "framering.FrameMeta"
                metas.append((message, decoded))
    assert len(images) == len(metas) == N
    for i, ((message, img), (meta_message, meta)) in enumerate(zip(images, metas)):
        capture = BASE_NS + i * 33_000_000
        assert message.log_time == capture
        assert img.timestamp.seconds * 10**9 + img.timestamp.nanos == capture
        assert (img.width, img.height, img.encoding) == (shape[1], shape[0], encoding)
        assert img.frame_id == "cam7"
        assert img.step == shape[1] * shape[2] * np.dtype(dtype).itemsize
        got = np.frombuffer(img.data, dtype=dtype).reshape(shape)
        assert np.array_equal(got, pixels[i]), f"frame {i}"
        assert meta_message.sequence == message.sequence == i
        assert (meta.seq, meta.capture_ns, meta.pts_ns) == (i, capture, i * 40_000_000)
        assert meta.user_meta == f"frame {i}".encode()
        assert meta.source == b"cam7"
        assert message.publish_time == meta.publish_ns > 0


def test_the_ros2_decoder_reads_a_ros2_recording(ring, tmp_path):
    shape = (16, 20, 3)
    path, pixels = record(ring, tmp_path, shape, "uint8", "--mcap-schema", "ros2")
    got = []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[Ros2Decoders(), ProtobufDecoders()])
        assert reader.get_header().profile == "ros2"
        for schema, channel, message, msg in reader.iter_decoded_messages(
                topics=[f"/{ring}/image"]):
            assert schema.name == "sensor_msgs/msg/Image" and schema.encoding == "ros2msg"
            assert channel.message_encoding == "cdr"
            got.append((message, msg))
    assert len(got) == N
    for i, (message, msg) in enumerate(got):
        capture = BASE_NS + i * 33_000_000
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == capture
        assert message.log_time == capture
        assert (msg.height, msg.width, msg.encoding, msg.step) == (16, 20, "rgb8", 60)
        assert msg.header.frame_id == "cam7"
        assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(shape), pixels[i])


def replay(ring, path, *flags):
    """Replays `path` into `ring` (group "check"); the frames taken."""
    producer = subprocess.Popen(
        [binary("framering-producer"), "--config", "/dev/null", "--ring", ring, "-q",
         "--groups", "check", "--input", str(path), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    c = framering.Consumer(ring, group="check", timeout=60)
    for f in c:
        out.append((f.array().copy(), f.capture_ns, f.source, f.meta))
    finish(producer, timeout=60)
    return out


def test_framering_replays_what_the_python_writers_wrote(ring, tmp_path):
    rng = np.random.default_rng(7)
    rgb = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(4)]
    mono = [rng.integers(0, 65536, (3, 4), dtype=np.uint16) for _ in range(4)]
    fox, ros = tmp_path / "fox.mcap", tmp_path / "ros.mcap"
    with open(fox, "wb") as f, ProtobufWriter(f) as w:
        for i, px in enumerate(rgb):
            msg = RawImage(frame_id="left", width=5, height=6, encoding="rgb8", step=15,
                           data=px.tobytes())
            msg.timestamp.FromNanoseconds(BASE_NS + i * 10**8)
            w.write_message("/left/image", msg, log_time=BASE_NS + i * 10**8,
                            publish_time=BASE_NS + i * 10**8)
    with open(ros, "wb") as f:
        w = Ros2Writer(f)
        schema = w.register_msgdef("sensor_msgs/msg/Image", ROS_IMAGE)
        for i, px in enumerate(mono):
            t = BASE_NS + i * 10**8
            # Rows padded to 10 bytes (step > width * 2).
            padded = np.zeros((3, 5), np.uint16)
            padded[:, :4] = px
            w.write_message("/depth", schema, {
                "header": {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9},
                           "frame_id": "depth"},
                "height": 3, "width": 4, "encoding": "16UC1", "is_bigendian": 0,
                "step": 10, "data": padded.tobytes()}, log_time=t, publish_time=t)
        w.finish()
    for path, want, source in ((fox, rgb, "left"), (ros, mono, "depth")):
        got = replay(f"{ring}-{path.stem}", path)
        assert len(got) == len(want), path
        for i, (px, capture, src, _) in enumerate(got):
            assert np.array_equal(px.reshape(want[i].shape), want[i]), (path, i)
            assert capture == BASE_NS + i * 10**8
            assert src == source


def test_an_encoding_a_ring_cannot_hold_is_refused_naming_it(ring, tmp_path):
    path = tmp_path / "bayer.mcap"
    with open(path, "wb") as f, ProtobufWriter(f) as w:
        msg = RawImage(width=2, height=2, encoding="bayer_rggb8", step=2, data=bytes(4))
        w.write_message("/cam", msg, log_time=1, publish_time=1)
    p = subprocess.run(
        [binary("framering-producer"), "--config", "/dev/null", "--ring", ring,
         "--input", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert '"bayer_rggb8"' in p.stderr
