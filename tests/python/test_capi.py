#!/usr/bin/python3
"""End-to-end test of libccm's C API through ctypes, as any FFI user would call it.

Encodes synthetic frames with every codec, checks the packets, and has ffmpeg
decode them; checks RAW round trips, the tuning callback, reconfiguration and
every error path that a foreign caller can hit.

Run by meson (tests/python/meson.build) with CCM_LIB set to the built
libccm.so; by hand:
  CCM_LIB=build/capi/libccm.so /usr/bin/python3 tests/python/test_capi.py
"""

import ctypes as C
import math
import random
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

# ---- the C API, declared by hand as a ctypes user would --------------------------

OK = 0
INVALID_ARGUMENT = -1
MALFORMED_PARAMS = -2
UNSUPPORTED = -3
NO_ENCODER = -4
NOT_CONFIGURED = -5
AGAIN = -6
EOS = -7
ENCODER = -8
NEEDS_RESTART = -11

CODEC_AV1, CODEC_HEVC, CODEC_VP9, CODEC_RAW, CODEC_H264 = 0, 1, 2, 3, 4


class EncodingProfile(C.Structure):
    _fields_ = [("width", C.c_uint32), ("height", C.c_uint32), ("fps", C.c_uint32),
                ("target_bitrate", C.c_uint32), ("max_psnr", C.c_float)]


class HardwareContext(C.Structure):
    _fields_ = [("gpu_handle", C.c_void_p), ("nvenc_ctx", C.c_void_p), ("vaapi_ctx", C.c_void_p)]


class CodecConfig(C.Structure):
    _fields_ = [("codec", C.c_int), ("profile", EncodingProfile), ("hw", HardwareContext),
                ("low_latency", C.c_bool), ("hdr", C.c_bool)]


class FrameMetrics(C.Structure):
    _fields_ = [("frame_number", C.c_uint64), ("pts_ns", C.c_int64), ("size_bytes", C.c_uint32),
                ("key_frame", C.c_bool), ("encode_latency_ms", C.c_double),
                ("bitrate_kbps", C.c_double), ("fps", C.c_double),
                ("rate_controlled", C.c_bool), ("qp", C.c_int32), ("lambda_", C.c_double),
                ("target_bits", C.c_double), ("buffer_bits", C.c_double), ("complexity", C.c_double),
                ("skip_blocks", C.c_uint32), ("fast_blocks", C.c_uint32), ("full_blocks", C.c_uint32),
                ("scene_cut", C.c_bool)]


class Packet(C.Structure):
    _fields_ = [("data", C.POINTER(C.c_uint8)), ("size", C.c_size_t), ("pts_ns", C.c_int64),
                ("dts_ns", C.c_int64), ("key_frame", C.c_bool)]


Handle = C.POINTER(CodecConfig)
TUNING_CALLBACK = C.CFUNCTYPE(None, Handle, C.POINTER(FrameMetrics))

LIB_PATH = os.environ.get("CCM_LIB", "libccm.so.1")
lib = C.CDLL(LIB_PATH)


def declare(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


ccm_init = declare("ccm_init", Handle, C.c_bool)
ccm_configure_codec = declare("ccm_configure_codec", C.c_int, Handle, C.POINTER(EncodingProfile),
                              C.c_char_p, C.c_size_t)
ccm_get_current_profile = declare("ccm_get_current_profile", EncodingProfile, Handle)
ccm_get_encoder_name = declare("ccm_get_encoder_name", C.c_int, Handle, C.c_char_p, C.c_size_t)
ccm_set_tuning_callback = declare("ccm_set_tuning_callback", C.c_int, Handle, TUNING_CALLBACK,
                                  C.c_void_p)
ccm_get_user_data = declare("ccm_get_user_data", C.c_void_p, Handle)
ccm_push_frame = declare("ccm_push_frame", C.c_int, Handle, C.c_char_p, C.c_size_t, C.c_int64)
ccm_finish = declare("ccm_finish", C.c_int, Handle)
ccm_pull_packet = declare("ccm_pull_packet", C.c_int, Handle, C.POINTER(Packet), C.c_int)
ccm_destroy = declare("ccm_destroy", None, Handle)
ccm_last_error = declare("ccm_last_error", C.c_char_p, Handle)
ccm_status_name = declare("ccm_status_name", C.c_char_p, C.c_int)
ccm_api_version = declare("ccm_api_version", C.c_uint32)


def status_name(code):
    return ccm_status_name(code).decode()


def last_error(handle=None):
    return ccm_last_error(handle).decode()


# ---- helpers ----------------------------------------------------------------------

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 30, 30
FRAME_NS = round(1e9 / FPS)
_RAMP = bytes(k & 0xFF for k in range(1024))


def frame_size(w, h):
    return w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)


def gradient_frame(index, w=WIDTH, h=HEIGHT):
    """A diagonal luma ramp moving 3 px per frame plus a bright moving block, so
    inter prediction has real motion to find."""
    shift = 3 * index
    rows = []
    for y in range(h):
        start = (y + shift) % 256
        rows.append(_RAMP[start:start + w])
    luma = bytearray(b"".join(rows))
    bx, by = (8 * index) % max(1, w - 32), (5 * index) % max(1, h - 32)
    for y in range(by, min(h, by + 32)):
        luma[y * w + bx:y * w + min(w, bx + 32)] = b"\xeb" * (min(w, bx + 32) - bx)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    u = b"".join(_RAMP[(x + index) % 256:(x + index) % 256 + 1] * 1 for x in range(cw)) * ch
    v = bytes([128 + (index % 32)]) * (cw * ch)
    return bytes(luma) + u + v


def blob(*entries, version=1, flags=0, count=None):
    """A dynamic_params blob: entries are (key, value bytes)."""
    body = b"".join(struct.pack("<BB", key, len(value)) + value for key, value in entries)
    n = len(entries) if count is None else count
    return b"CCMP" + struct.pack("<BBH", version, flags, n) + body


def profile(w=WIDTH, h=HEIGHT, fps=FPS, kbps=600, max_psnr=0.0):
    """target_bitrate is in bit/s; kbps is the convenient unit here."""
    return EncodingProfile(w, h, fps, kbps * 1000, max_psnr)


class Encoder:
    """A CodecConfig handle with its codec fields set; closes itself."""

    def __init__(self, testcase, codec, hw=False, low_latency=True, hdr=False):
        self.handle = ccm_init(hw)
        testcase.assertTrue(self.handle, last_error())
        testcase.addCleanup(self.close)
        cfg = self.handle.contents
        cfg.codec, cfg.low_latency, cfg.hdr = codec, low_latency, hdr
        self.t = testcase

    def close(self):
        if self.handle is not None:
            ccm_destroy(self.handle)
            self.handle = None

    def error(self):
        return last_error(self.handle)

    def configure(self, prof, params=b""):
        return ccm_configure_codec(self.handle, C.byref(prof), params or None, len(params))

    def current_profile(self):
        p = ccm_get_current_profile(self.handle)
        self.t.assertEqual(bytes(p), bytes(self.handle.contents.profile), "config->profile differs")
        return p

    def push(self, data, pts):
        return ccm_push_frame(self.handle, data, len(data), pts)

    def pull(self, timeout_ms=10000):
        pkt = Packet()
        st = ccm_pull_packet(self.handle, C.byref(pkt), timeout_ms)
        if st != OK:
            return st, None
        return st, (C.string_at(pkt.data, pkt.size), pkt.pts_ns, pkt.dts_ns, pkt.key_frame)

    def pull_all(self):
        packets = []
        while True:
            st, pkt = self.pull()
            if st == EOS:
                return packets
            if st == NO_ENCODER:
                self.t.skipTest(f"no encoder on this machine: {self.error()}")
            self.t.assertEqual(st, OK, f"{status_name(st)}: {self.error()}")
            packets.append(pkt)

    def encoder_name(self):
        buf = C.create_string_buffer(64)
        self.t.assertEqual(ccm_get_encoder_name(self.handle, buf, len(buf)), OK, self.error())
        return buf.value.decode()


def ivf(packets, w, h, fps_num, fps_den, fourcc=b"VP90"):
    """An IVF file around VP9 frames (the container vpxenc writes)."""
    out = [struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, fourcc, w, h, fps_num, fps_den,
                       len(packets), 0)]
    for i, data in enumerate(packets):
        out.append(struct.pack("<IQ", len(data), i))
        out.append(data)
    return b"".join(out)


def ffmpeg_decode(path, fmt=None):
    """Decodes with ffmpeg, failing on any error; returns the number of frames."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-xerror"]
    if fmt:
        cmd += ["-f", fmt]
    # passthrough: count every decoded frame, whatever the stream's timing says
    # (a frame-rate change mid-stream would otherwise make ffmpeg drop or duplicate).
    cmd += ["-i", path, "-fps_mode", "passthrough", "-f", "framecrc", "-"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    frames = [l for l in run.stdout.splitlines() if l and not l.startswith("#")]
    return run.returncode, run.stderr.strip(), len(frames)


# ---- tests ------------------------------------------------------------------------

CODECS = {
    # name: (enum, file suffix, ffmpeg input format or None)
    "h264": (CODEC_H264, ".h264", "h264"),
    "hevc": (CODEC_HEVC, ".h265", "hevc"),
    "vp9": (CODEC_VP9, ".ivf", "ivf"),
    "av1": (CODEC_AV1, ".obu", "obu"),
}


class EncodeEveryCodec(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ccm-capi-")
        cls.frames = [gradient_frame(i) for i in range(FRAMES)]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def encode(self, name):
        codec, suffix, fmt = CODECS[name]
        enc = Encoder(self, codec)
        st = enc.configure(profile(kbps=600))
        if st == NO_ENCODER:
            self.skipTest(f"no {name} encoder on this machine: {enc.error()}")
        self.assertEqual(st, OK, f"{status_name(st)}: {enc.error()}")
        for i, frame in enumerate(self.frames):
            st = enc.push(frame, i * FRAME_NS)
            if st == NO_ENCODER:
                self.skipTest(f"no {name} encoder on this machine: {enc.error()}")
            self.assertEqual(st, OK, f"frame {i}: {status_name(st)}: {enc.error()}")
        self.assertEqual(ccm_finish(enc.handle), OK, enc.error())
        packets = enc.pull_all()
        name_used = enc.encoder_name()
        print(f"  {name}: {len(packets)} packets, {sum(len(p[0]) for p in packets)} bytes, "
              f"encoder {name_used}", file=sys.stderr)
        self.assertTrue(name_used, "ccm_get_encoder_name returned an empty name after encoding")

        self.assertEqual(len(packets), FRAMES)
        self.assertTrue(packets[0][3], "first packet is not a key frame")
        pts = [p[1] for p in packets]
        self.assertEqual(pts, sorted(pts), "low-latency output must be in presentation order")
        self.assertEqual(len(set(pts)), FRAMES, "duplicate pts")
        self.assertEqual(pts[0], 0)
        self.assertTrue(all(len(p[0]) > 0 for p in packets))

        path = os.path.join(self.tmp, "out" + suffix)
        with open(path, "wb") as f:
            if name == "vp9":
                f.write(ivf([p[0] for p in packets], WIDTH, HEIGHT, 30, 1))
            else:  # Annex B access units / OBU temporal units concatenate as they are
                f.write(b"".join(p[0] for p in packets))
        rc, err, decoded = ffmpeg_decode(path, fmt)
        self.assertEqual(rc, 0, f"ffmpeg failed on {name}: {err}")
        self.assertEqual(err, "", f"ffmpeg reported errors on {name}: {err}")
        self.assertEqual(decoded, FRAMES, f"ffmpeg decoded {decoded} frames of {name}")

    def test_h264(self):
        self.encode("h264")

    def test_hevc(self):
        self.encode("hevc")

    def test_vp9(self):
        self.encode("vp9")

    def test_av1(self):
        self.encode("av1")


class Raw(unittest.TestCase):
    def roundtrip(self, w, h, n=5):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(w, h)), OK, enc.error())
        self.assertEqual(enc.encoder_name(), "raw")
        frames = [gradient_frame(i, w, h) for i in range(n)]
        self.assertEqual(len(frames[0]), frame_size(w, h))
        for i, f in enumerate(frames):
            self.assertEqual(enc.push(f, i * FRAME_NS), OK, enc.error())
        self.assertEqual(ccm_finish(enc.handle), OK)
        packets = enc.pull_all()
        self.assertEqual([p[0] for p in packets], frames, "RAW packets differ from the frames")
        self.assertEqual([p[1] for p in packets], [i * FRAME_NS for i in range(n)])
        self.assertTrue(all(p[3] for p in packets))
        # Drained: EOS again, not a hang.
        self.assertEqual(enc.pull(100)[0], EOS)

    def test_roundtrip(self):
        self.roundtrip(WIDTH, HEIGHT)

    def test_roundtrip_odd_size(self):
        # Odd sizes: chroma planes round up, rows are not 4-byte multiples.
        self.roundtrip(33, 17)

    def test_automatic_pts(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16, fps=25)), OK, enc.error())
        for i in range(3):
            self.assertEqual(enc.push(gradient_frame(i, 16, 16), -1), OK, enc.error())
        ccm_finish(enc.handle)
        self.assertEqual([p[1] for p in enc.pull_all()], [0, 40_000_000, 80_000_000])

    def test_pull_times_out_with_again(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        st, _ = enc.pull(50)
        self.assertEqual(st, AGAIN, status_name(st))
        st, _ = enc.pull(0)
        self.assertEqual(st, AGAIN, status_name(st))

    def test_push_after_finish_fails(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        self.assertEqual(ccm_finish(enc.handle), OK)
        self.assertEqual(enc.push(gradient_frame(0, 16, 16), 0), INVALID_ARGUMENT)
        self.assertIn("ccm_finish", enc.error())
        self.assertEqual(enc.pull(1000)[0], EOS)

    def test_resize_mid_stream_keeps_every_frame_in_order(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(64, 48)), OK, enc.error())
        sent = []
        for i in range(3):
            f = gradient_frame(i, 64, 48)
            self.assertEqual(enc.push(f, i * FRAME_NS), OK, enc.error())
            sent.append(f)
        self.assertEqual(enc.configure(profile(32, 24)), OK, enc.error())
        self.assertEqual(enc.current_profile().width, 32)
        # The old size is refused now.
        self.assertEqual(enc.push(gradient_frame(9, 64, 48), 3 * FRAME_NS), INVALID_ARGUMENT)
        for i in range(3, 6):
            f = gradient_frame(i, 32, 24)
            self.assertEqual(enc.push(f, i * FRAME_NS), OK, enc.error())
            sent.append(f)
        ccm_finish(enc.handle)
        self.assertEqual([p[0] for p in enc.pull_all()], sent)

    def test_concurrent_push_and_pull(self):
        # One thread pushes more than the input queue holds while another pulls.
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(64, 48)), OK)
        n = 60
        frames = [gradient_frame(i, 64, 48) for i in range(n)]
        results = []

        def pusher():
            for i, f in enumerate(frames):
                results.append(enc.push(f, i * FRAME_NS))
            results.append(ccm_finish(enc.handle))

        t = threading.Thread(target=pusher)
        t.start()
        got = enc.pull_all()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(results, [OK] * (n + 1))
        self.assertEqual([p[0] for p in got], frames)


def frame_10bit(index, w, h):
    """A 10-bit I420 frame: 16-bit little-endian samples, a moving luma ramp."""
    luma = b"".join(struct.pack(f"<{w}H", *[((x + y + 4 * index) * 3) % 1024 for x in range(w)])
                    for y in range(h))
    chroma = struct.pack("<H", 512) * (((w + 1) // 2) * ((h + 1) // 2))
    return luma + chroma + chroma


class Hdr(unittest.TestCase):
    W, H, N = 64, 48, 10

    def test_raw_roundtrip_is_16_bit(self):
        enc = Encoder(self, CODEC_RAW, hdr=True)
        self.assertEqual(enc.configure(profile(self.W, self.H)), OK, enc.error())
        # An 8-bit frame is half the size a 10-bit one needs.
        self.assertEqual(enc.push(gradient_frame(0, self.W, self.H), 0), INVALID_ARGUMENT)
        self.assertIn("I420_10LE", enc.error())
        frames = [frame_10bit(i, self.W, self.H) for i in range(3)]
        self.assertEqual(len(frames[0]), 2 * frame_size(self.W, self.H))
        for i, f in enumerate(frames):
            self.assertEqual(enc.push(f, i * FRAME_NS), OK, enc.error())
        ccm_finish(enc.handle)
        self.assertEqual([p[0] for p in enc.pull_all()], frames)

    def test_hevc_main10_with_pq(self):
        enc = Encoder(self, CODEC_HEVC, hdr=True)
        st = enc.configure(profile(self.W, self.H, kbps=300))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(st, OK, enc.error())
        for i in range(self.N):
            self.assertEqual(enc.push(frame_10bit(i, self.W, self.H), i * FRAME_NS), OK, enc.error())
        ccm_finish(enc.handle)
        packets = enc.pull_all()
        self.assertEqual(len(packets), self.N)
        tmp = tempfile.mkdtemp(prefix="ccm-capi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "hdr.h265")
        with open(path, "wb") as f:
            f.write(b"".join(p[0] for p in packets))
        self.assertEqual(ffmpeg_decode(path, "hevc"), (0, "", self.N))
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                                "stream=pix_fmt,color_transfer", "-of", "default=nw=1", path],
                               capture_output=True, text=True, timeout=60).stdout
        self.assertIn("pix_fmt=yuv420p10le", probe)
        self.assertIn("color_transfer=smpte2084", probe)


class TuningCallback(unittest.TestCase):
    def run_with_callback(self, codec, start_kbps=2000, new_kbps=150):
        enc = Encoder(self, codec)
        st = enc.configure(profile(kbps=start_kbps))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(st, OK, enc.error())
        seen, problems = [], []

        def on_metrics(handle, metrics_ptr):
            try:
                m = metrics_ptr.contents
                seen.append((m.frame_number, m.pts_ns, m.size_bytes, m.key_frame,
                             m.encode_latency_ms, m.bitrate_kbps, m.fps))
                user_data = ccm_get_user_data(handle)
                if user_data != 0x1234:
                    problems.append(f"user_data {user_data}")
                if m.frame_number == 10:
                    # Steer the rate from inside the callback (encoding thread).
                    st = ccm_configure_codec(handle, C.byref(profile(kbps=new_kbps)), None, 0)
                    if st != OK:
                        problems.append(f"configure from callback: {status_name(st)} "
                                        f"{last_error(handle)}")
            except Exception as e:  # exceptions cannot cross into C
                problems.append(repr(e))

        cb = TUNING_CALLBACK(on_metrics)
        self.assertEqual(ccm_set_tuning_callback(enc.handle, cb, C.c_void_p(0x1234)), OK)
        for i in range(FRAMES):
            self.assertEqual(enc.push(gradient_frame(i), i * FRAME_NS), OK, enc.error())
        ccm_finish(enc.handle)
        packets = enc.pull_all()
        self.assertEqual(problems, [])
        self.assertEqual(len(seen), FRAMES)
        self.assertEqual([s[0] for s in seen], list(range(FRAMES)))
        self.assertEqual([s[1] for s in seen], [p[1] for p in packets])
        self.assertEqual([s[2] for s in seen], [len(p[0]) for p in packets])
        self.assertTrue(seen[0][3], "first frame not reported as key")
        for number, pts, size, key, latency, kbps, fps in seen:
            self.assertGreater(size, 0)
            self.assertGreaterEqual(latency, 0, f"frame {number}: latency unknown")
            self.assertLess(latency, 30000, f"frame {number}: latency {latency} ms")
            self.assertTrue(math.isfinite(kbps) and kbps > 0, f"frame {number}: {kbps} kbit/s")
            self.assertTrue(math.isfinite(fps) and fps >= 0, f"frame {number}: fps {fps}")
        self.assertGreater(seen[-1][6], 0, "output fps never measured")
        self.assertEqual(enc.current_profile().target_bitrate, new_kbps * 1000)
        return seen, packets

    def test_raw(self):
        seen, _ = self.run_with_callback(CODEC_RAW)
        # RAW packets are whole frames: the bitrate follows from the frame size.
        expected = frame_size(WIDTH, HEIGHT) * 8 * FPS / 1000
        self.assertAlmostEqual(seen[-1][5], expected, delta=expected * 0.01)

    def test_h264(self):
        _, packets = self.run_with_callback(CODEC_H264, 2000, 150)
        # The change made at frame 10 reached the encoder: later frames are far smaller.
        before = sum(len(p[0]) for p in packets[1:10]) / 9
        after = sum(len(p[0]) for p in packets[20:30]) / 10
        self.assertLess(after, 0.6 * before, f"{before:.0f} B/frame before, {after:.0f} after")

    def encode_with_callback(self, codec, kbps, on_metrics):
        """Every frame through `codec` with `on_metrics` as the tuning callback; False
        when this machine has no encoder for it. Asserts no frame is lost."""
        enc = Encoder(self, codec)
        st = enc.configure(profile(kbps=kbps))
        if st == NO_ENCODER:
            return False
        self.assertEqual(st, OK, enc.error())
        cb = TUNING_CALLBACK(on_metrics)
        self.assertEqual(ccm_set_tuning_callback(enc.handle, cb, None), OK)
        for i in range(FRAMES):
            self.assertEqual(enc.push(gradient_frame(i), i * FRAME_NS), OK, enc.error())
        self.assertEqual(ccm_finish(enc.handle), OK, enc.error())
        self.assertEqual(len(enc.pull_all()), FRAMES)
        self.last_profile = enc.current_profile()
        enc.close()
        return True

    def test_rate_control_decisions_reach_the_callback(self):
        # ccmencbin's ccmratecontrol steers the own rate control of ccmsvtav1enc (AV1),
        # ccmx265enc (HEVC) and vp9enc (mode auto: encoder-rate), which picks the QP of
        # frames other than x265's key frames (qp -1, lambda 0) while budgets and
        # analysis still come; RAW has no rate control. 320x240 = 5x4 blocks of 64x64.
        for codec, controlled, own_qp in ((CODEC_AV1, True, False), (CODEC_HEVC, True, False),
                                          (CODEC_VP9, True, False), (CODEC_RAW, False, False)):
            with self.subTest(codec=codec):
                seen = []

                def on_metrics(handle, metrics_ptr):
                    m = metrics_ptr.contents
                    seen.append((m.rate_controlled, m.qp, m.lambda_, m.target_bits,
                                 m.skip_blocks + m.fast_blocks + m.full_blocks, m.key_frame))

                if not self.encode_with_callback(codec, 500, on_metrics):
                    continue
                self.assertEqual(len(seen), FRAMES)
                for n, (rc, qp, lam, target, blocks, key) in enumerate(seen):
                    if controlled:
                        self.assertTrue(rc, f"frame {n}: no rate-control decision")
                        # Key frames get our QP through the QP meta under encoder-rate
                        # (ccmx265enc; ccmsvtav1enc's own controller keeps its key frames).
                        if own_qp or (key and codec == CODEC_HEVC):
                            self.assertTrue(0 <= qp <= 63, f"frame {n}: qp {qp}")
                            self.assertGreater(lam, 0, f"frame {n}")
                        else:
                            self.assertEqual((qp, lam), (-1, 0), f"frame {n}: the encoder's own QP")
                        self.assertGreater(target, 0, f"frame {n}")
                        self.assertEqual(blocks, 20, f"frame {n}: 64x64 blocks")
                    else:
                        self.assertFalse(rc)
                        self.assertEqual(qp, -1)

    def test_bitrate_from_callback_on_every_frame_every_codec(self):
        # Every encoder, a change per frame: must neither deadlock nor lose a frame.
        for name, (codec, _, _) in CODECS.items():
            with self.subTest(codec=name):
                statuses = []

                def on_metrics(handle, metrics_ptr):
                    kbps = 200 + 50 * (metrics_ptr.contents.frame_number % 5)
                    statuses.append(ccm_configure_codec(handle, C.byref(profile(kbps=kbps)), None, 0))

                if not self.encode_with_callback(codec, 400, on_metrics):
                    continue
                self.assertEqual(statuses, [OK] * FRAMES)
                self.assertEqual(self.last_profile.target_bitrate, 1000 * (200 + 50 * ((FRAMES - 1) % 5)))

    def test_new_encoder_from_inside_the_callback(self):
        # A change that needs a new encoder (frame rate), made on the encoding
        # thread: no deadlock, no frame lost, the stream still decodes.
        enc = Encoder(self, CODEC_H264)
        st = enc.configure(profile(kbps=500))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        results = []

        def on_metrics(handle, metrics_ptr):
            if metrics_ptr.contents.frame_number == 5:
                results.append(ccm_configure_codec(handle, C.byref(profile(fps=25, kbps=500)), None, 0))

        cb = TUNING_CALLBACK(on_metrics)
        self.assertEqual(ccm_set_tuning_callback(enc.handle, cb, None), OK)
        for i in range(FRAMES):
            self.assertEqual(enc.push(gradient_frame(i), i * FRAME_NS), OK, enc.error())
        ccm_finish(enc.handle)
        packets = enc.pull_all()
        self.assertEqual(results, [OK], enc.error())
        self.assertEqual(enc.current_profile().fps, 25)
        self.assertEqual(len(packets), FRAMES)
        self.assertEqual([p[1] for p in packets], [i * FRAME_NS for i in range(FRAMES)])
        self.assertGreaterEqual(sum(p[3] for p in packets), 2, "the new encoder did not start with a key frame")
        tmp = tempfile.mkdtemp(prefix="ccm-capi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "switched.h264")
        with open(path, "wb") as f:
            f.write(b"".join(p[0] for p in packets))
        self.assertEqual(ffmpeg_decode(path, "h264"), (0, "", FRAMES))

    def test_unregister(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        calls = []
        cb = TUNING_CALLBACK(lambda h, m: calls.append(1))
        self.assertEqual(ccm_set_tuning_callback(enc.handle, cb, None), OK)
        self.assertEqual(ccm_set_tuning_callback(enc.handle, TUNING_CALLBACK(), None), OK)
        enc.push(gradient_frame(0, 16, 16), 0)
        ccm_finish(enc.handle)
        self.assertEqual(len(enc.pull_all()), 1)
        self.assertEqual(calls, [])


class DynamicParams(unittest.TestCase):
    GOOD = blob((1, b"\x01"), (2, b"\x00"), (4, struct.pack("<I", 60)), (5, b"\x00"))

    def test_documented_example_bytes(self):
        # docs/dynamic-params.md shows this blob in hex.
        self.assertEqual(self.GOOD.hex(" "),
                         "43 43 4d 50 01 00 04 00 01 01 01 02 01 00 04 04 3c 00 00 00 05 01 00")

    def test_valid_blob_is_accepted(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(), self.GOOD), OK, enc.error())

    def test_malformed_blobs_change_nothing(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(kbps=700), self.GOOD), OK, enc.error())
        before = bytes(enc.current_profile())
        bad_blobs = {
            "truncated": self.GOOD[:-1],
            "truncated header": self.GOOD[:5],
            "bad magic": b"XCMP" + self.GOOD[4:],
            "newer version": blob((2, b"\x00"), version=2),
            "count overruns": blob((2, b"\x00"), count=2),
            "trailing garbage": self.GOOD + b"\x00",
            "duplicate key": blob((2, b"\x00"), (2, b"\x01")),
            "wrong length": blob((2, b"\x00\x00")),
            "out of range": blob((3, b"\x40")),
        }
        for what, data in bad_blobs.items():
            st = enc.configure(profile(w=64, h=64, kbps=123), data)
            self.assertEqual(st, MALFORMED_PARAMS, f"{what}: {status_name(st)}")
            self.assertIn("byte ", enc.error(), what)
            self.assertEqual(bytes(enc.current_profile()), before, f"{what} changed the profile")
        # The unchanged session still takes frames of the old size.
        self.assertEqual(enc.push(gradient_frame(0), 0), OK, enc.error())

    def test_design_three_byte_form(self):
        # The design's conference parameters: ultra-low latency, no B-frames, max quantizer 50.
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(), bytes([0x01, 0x00, 0x32])), OK, enc.error())
        before = bytes(enc.current_profile())
        for data, needle in ((bytes([0x02, 0x00, 0x32]), "byte 0: ultra_low_latency"),
                             (bytes([0x01, 0x11, 0x32]), "byte 1: b_frames"),
                             (bytes([0x01, 0x00, 0x40]), "byte 2: max_quantizer"),
                             (bytes([0x01, 0x00, 0x32, 0x00]), "CCMP"),
                             (bytes([0x01, 0x00]), "CCMP")):
            st = enc.configure(profile(kbps=123), data)
            self.assertEqual(st, MALFORMED_PARAMS, f"{data.hex()}: {status_name(st)}")
            self.assertIn(needle, enc.error())
            self.assertEqual(bytes(enc.current_profile()), before, f"{data.hex()} changed the profile")

    def test_unknown_keys_are_skipped(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(), blob((250, b"abc"), (2, b"\x01"))), OK, enc.error())

    def test_params_without_data_pointer(self):
        enc = Encoder(self, CODEC_RAW)
        p = profile()
        self.assertEqual(ccm_configure_codec(enc.handle, C.byref(p), None, 8), INVALID_ARGUMENT)

    def test_hardware_only_needs_hw_enabled(self):
        enc = Encoder(self, CODEC_RAW, hw=False)
        st = enc.configure(profile(), blob((8, b"\x01")))
        self.assertEqual(st, INVALID_ARGUMENT, status_name(st))
        self.assertIn("enable_hw_accel", enc.error())


class EncoderErrors(unittest.TestCase):
    def test_no_hardware_encoder_is_no_encoder(self):
        # hardware-only on a machine without a hardware encoder: the pipeline's
        # missing-plugin error comes back as CCM_ERROR_NO_ENCODER with a message.
        enc = Encoder(self, CODEC_HEVC, hw=True)
        st = enc.configure(profile(), blob((8, b"\x01")))
        statuses = [st]
        if st == OK:
            for i in range(5):
                statuses.append(enc.push(gradient_frame(i), i * FRAME_NS))
                if statuses[-1] != OK:
                    break
            if statuses[-1] == OK:
                ccm_finish(enc.handle)
                statuses.append(enc.pull(10000)[0])
        if statuses[-1] == OK:
            self.skipTest("this machine has a hardware H.265 encoder")
        self.assertEqual(statuses[-1], NO_ENCODER, f"{[status_name(s) for s in statuses]}: {enc.error()}")
        self.assertIn("no usable encoder", enc.error())
        if st == OK:
            # Found once data flowed: the error is sticky, later calls report
            # it too, without hanging.
            self.assertEqual(enc.pull(-1)[0], NO_ENCODER)
        else:
            # Found while building: nothing was configured.
            self.assertEqual(enc.pull(0)[0], NOT_CONFIGURED)


class InvalidArguments(unittest.TestCase):
    def test_profile_values(self):
        enc = Encoder(self, CODEC_RAW)
        cases = {
            "width": profile(w=0), "height": profile(h=0),
            "width ": profile(w=16385),
            "fps": profile(fps=0), "fps ": profile(fps=1001),
            "target_bitrate": EncodingProfile(WIDTH, HEIGHT, FPS, 0, 0),
            "target_bitrate ": EncodingProfile(WIDTH, HEIGHT, FPS, 999, 0),
            "max_psnr": profile(max_psnr=-1), "max_psnr ": profile(max_psnr=float("nan")),
            "max_psnr  ": profile(max_psnr=100.5),
        }
        for field, p in cases.items():
            self.assertEqual(enc.configure(p), INVALID_ARGUMENT, field)
            self.assertIn(field.strip(), enc.error())
            self.assertIn(field.strip(), last_error(None), "thread's last error not set")
        self.assertEqual(bytes(ccm_get_current_profile(enc.handle)), bytes(EncodingProfile()))
        # The unit is bit/s: a caller who means kbit/s hears so.
        self.assertEqual(enc.configure(EncodingProfile(64, 48, 30, 500, 0)), INVALID_ARGUMENT)
        self.assertIn("bit/s", enc.error())

    def test_codec_fields(self):
        enc = Encoder(self, CODEC_RAW)
        enc.handle.contents.codec = 42
        self.assertEqual(enc.configure(profile()), INVALID_ARGUMENT)
        self.assertIn("codec", enc.error())
        enc.handle.contents.codec = CODEC_RAW
        self.assertEqual(enc.configure(profile()), OK, enc.error())

    def test_default_fields(self):
        handle = ccm_init(False)
        self.assertTrue(handle, last_error())
        self.addCleanup(ccm_destroy, handle)
        cfg = handle.contents
        self.assertEqual((cfg.codec, cfg.low_latency, cfg.hdr), (CODEC_AV1, True, False))
        self.assertEqual((cfg.hw.gpu_handle, cfg.hw.nvenc_ctx, cfg.hw.vaapi_ctx), (None, None, None))
        self.assertEqual(bytes(cfg.profile), bytes(EncodingProfile()))

    def test_caller_hardware_handle_is_refused(self):
        enc = Encoder(self, CODEC_RAW)
        enc.handle.contents.hw.vaapi_ctx = 0x1000
        self.assertEqual(enc.configure(profile()), UNSUPPORTED)
        self.assertIn("config->hw", enc.error())

    def test_null_handle(self):
        p, pkt, buf = profile(), Packet(), C.create_string_buffer(8)
        frame = gradient_frame(0, 16, 16)
        calls = {
            "configure_codec": lambda: ccm_configure_codec(None, C.byref(p), None, 0),
            "get_encoder_name": lambda: ccm_get_encoder_name(None, buf, 8),
            "set_tuning_callback": lambda: ccm_set_tuning_callback(None, TUNING_CALLBACK(), None),
            "push_frame": lambda: ccm_push_frame(None, frame, len(frame), 0),
            "finish": lambda: ccm_finish(None),
            "pull_packet": lambda: ccm_pull_packet(None, C.byref(pkt), 0),
        }
        for name, call in calls.items():
            self.assertEqual(call(), INVALID_ARGUMENT, name)
            self.assertIn("NULL", last_error(None), name)
        self.assertEqual(bytes(ccm_get_current_profile(None)), bytes(EncodingProfile()))
        self.assertIsNone(ccm_get_user_data(None))
        ccm_destroy(None)

    def test_null_out_pointers(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        self.assertEqual(ccm_pull_packet(enc.handle, None, 0), INVALID_ARGUMENT)
        self.assertEqual(ccm_get_encoder_name(enc.handle, None, 10), INVALID_ARGUMENT)
        self.assertEqual(ccm_configure_codec(enc.handle, None, None, 0), INVALID_ARGUMENT)
        self.assertEqual(ccm_push_frame(enc.handle, None, 0, 0), INVALID_ARGUMENT)

    def test_before_configure(self):
        enc = Encoder(self, CODEC_RAW)
        frame = gradient_frame(0, 16, 16)
        self.assertEqual(enc.push(frame, 0), NOT_CONFIGURED)
        self.assertIn("ccm_configure_codec", enc.error())
        self.assertEqual(enc.pull(0)[0], NOT_CONFIGURED)
        self.assertEqual(ccm_finish(enc.handle), NOT_CONFIGURED)
        self.assertEqual(ccm_get_encoder_name(enc.handle, C.create_string_buffer(8), 8), NOT_CONFIGURED)

    def test_wrong_frame_size(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        good = gradient_frame(0, 16, 16)
        for data in (good[:-1], good + b"\x00", b"\x00"):
            self.assertEqual(enc.push(data, 0), INVALID_ARGUMENT)
            self.assertIn(str(len(good)), enc.error())

    def test_encoder_name_buffer_too_small(self):
        enc = Encoder(self, CODEC_RAW)
        self.assertEqual(enc.configure(profile(16, 16)), OK)
        buf = C.create_string_buffer(3)
        self.assertEqual(ccm_get_encoder_name(enc.handle, buf, 3), INVALID_ARGUMENT)
        self.assertEqual(buf.value, b"ra")

    def test_errors_are_per_handle_and_per_thread(self):
        a, b = Encoder(self, CODEC_RAW), Encoder(self, CODEC_RAW)
        self.assertEqual(a.configure(profile(w=0)), INVALID_ARGUMENT)
        self.assertEqual(b.push(b"x", 0), NOT_CONFIGURED)
        self.assertIn("width", a.error())
        self.assertIn("ccm_configure_codec", b.error())
        other = []
        t = threading.Thread(target=lambda: other.append(last_error(None)))
        t.start()
        t.join()
        self.assertEqual(other, [""], "another thread saw this thread's error")

    def test_status_names_and_version(self):
        self.assertEqual(status_name(OK), "CCM_OK")
        self.assertEqual(status_name(MALFORMED_PARAMS), "CCM_ERROR_MALFORMED_PARAMS")
        self.assertEqual(status_name(EOS), "CCM_ERROR_EOS")
        self.assertEqual(status_name(NEEDS_RESTART), "CCM_ERROR_NEEDS_RESTART")
        self.assertEqual(status_name(5), "CCM_ERROR_UNKNOWN")
        self.assertGreaterEqual(ccm_api_version(), 2)


class LiveReconfigure(unittest.TestCase):
    CQP = (5, b"\x02")  # rate_control = cqp

    def quantizer_change(self, codec, first=20, then=45):
        """Constant QP `first` for 10 frames, `then` for 10: the frame sizes must follow."""
        enc = Encoder(self, codec)
        st = enc.configure(profile(kbps=2000), blob(self.CQP, (6, bytes([first]))))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(st, OK, enc.error())
        for n in range(10):
            self.assertEqual(enc.push(gradient_frame(n), n * FRAME_NS), OK, enc.error())
        self.assertEqual(enc.configure(profile(kbps=2000), blob((6, bytes([then])))), OK, enc.error())
        for n in range(10, 20):
            self.assertEqual(enc.push(gradient_frame(n), n * FRAME_NS), OK, enc.error())
        self.assertEqual(ccm_finish(enc.handle), OK, enc.error())
        packets = enc.pull_all()
        self.assertEqual([p[1] for p in packets], [i * FRAME_NS for i in range(20)], "a frame was lost")
        before = sum(len(p[0]) for p in packets[1:10]) / 9   # inter frames at the first QP
        after = sum(len(p[0]) for p in packets[11:20]) / 9   # inter frames at the second
        print(f"  codec {codec} ({enc.encoder_name()}): QP {first} -> {then}: "
              f"{before:.0f} -> {after:.0f} B/frame", file=sys.stderr)
        self.assertLess(after, 0.5 * before, f"QP {first} -> {then}: {before:.0f} -> {after:.0f} B/frame")
        return enc

    def test_quantizer_change_applies_to_the_next_frames_h264(self):
        self.quantizer_change(CODEC_H264)

    def test_quantizer_change_applies_to_the_next_frames_hevc(self):
        self.quantizer_change(CODEC_HEVC)

    def test_max_psnr_applies_to_the_next_frames(self):
        # HEVC through ccmx265enc is steered per frame by ccmratecontrol, whose
        # max-psnr cap changes live: a low cap must shrink the next frames. Grain
        # over the ramp, so that the rate, not the content, bounds the frames.
        rng = random.Random(17)

        def grainy(n):
            f = bytearray(gradient_frame(n))
            for k in range(0, WIDTH * HEIGHT, 1):
                f[k] = (f[k] + rng.randrange(48)) & 0xFF
            return bytes(f)

        enc = Encoder(self, CODEC_HEVC)
        st = enc.configure(profile(kbps=3000))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(st, OK, enc.error())
        packets = []
        for n in range(10):
            self.assertEqual(enc.push(grainy(n), n * FRAME_NS), OK, enc.error())
        # A live change reaches the frames the encoder has not taken yet: wait
        # until the first ten are out, so that "before" is before.
        for n in range(10):
            st, pkt = enc.pull(20000)
            self.assertEqual(st, OK, f"packet {n}: {status_name(st)}: {enc.error()}")
            packets.append(pkt)
        encoder = enc.encoder_name()
        self.assertEqual(enc.configure(profile(kbps=3000, max_psnr=26.0)), OK, enc.error())
        for n in range(10, 20):
            self.assertEqual(enc.push(grainy(n), n * FRAME_NS), OK, enc.error())
        self.assertEqual(ccm_finish(enc.handle), OK, enc.error())
        packets += enc.pull_all()
        self.assertEqual(len(packets), 20)
        self.assertFalse(packets[10][3], "max_psnr started a new encoder (a key frame) instead of applying live")
        before = sum(len(p[0]) for p in packets[5:10]) / 5
        after = sum(len(p[0]) for p in packets[15:20]) / 5
        print(f"  {encoder}: max_psnr 0 -> 26 dB: {before:.0f} -> {after:.0f} B/frame", file=sys.stderr)
        self.assertLess(after, 0.7 * before, f"max_psnr 26 dB: {before:.0f} -> {after:.0f} B/frame")
        self.assertAlmostEqual(enc.current_profile().max_psnr, 26.0, places=5)

    def test_change_needing_a_new_encoder_after_finish_is_refused(self):
        enc = Encoder(self, CODEC_H264)
        st = enc.configure(profile(kbps=800), blob(self.CQP, (6, b"\x14")))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(enc.push(gradient_frame(0), 0), OK, enc.error())
        self.assertEqual(ccm_finish(enc.handle), OK)
        before = bytes(enc.current_profile())
        for what, prof, params in (("quantizer", profile(kbps=800), blob((6, b"\x2d"))),
                                   ("size", profile(w=160, h=120, kbps=800), b""),
                                   ("3-byte form", profile(kbps=800), bytes([0, 2, 40]))):
            st = enc.configure(prof, params)
            self.assertEqual(st, NEEDS_RESTART, f"{what}: {status_name(st)}")
            self.assertIn("restart", enc.error())
            self.assertEqual(bytes(enc.current_profile()), before, f"{what} changed the profile")
        self.assertEqual(len(enc.pull_all()), 1)

    def test_h264_bitrate_change_and_resize(self):
        enc = Encoder(self, CODEC_H264)
        st = enc.configure(profile(kbps=1500))
        if st == NO_ENCODER:
            self.skipTest(enc.error())
        self.assertEqual(st, OK, enc.error())
        n = 0
        for i in range(10):
            self.assertEqual(enc.push(gradient_frame(n), n * FRAME_NS), OK, enc.error())
            n += 1
        self.assertEqual(enc.configure(profile(kbps=200)), OK, enc.error())  # live
        for i in range(10):
            self.assertEqual(enc.push(gradient_frame(n), n * FRAME_NS), OK, enc.error())
            n += 1
        self.assertEqual(enc.configure(profile(w=160, h=120, kbps=200)), OK, enc.error())  # new encoder
        for i in range(10):
            self.assertEqual(enc.push(gradient_frame(n, 160, 120), n * FRAME_NS), OK, enc.error())
            n += 1
        ccm_finish(enc.handle)
        packets = enc.pull_all()
        self.assertEqual(len(packets), 30)
        self.assertEqual([p[1] for p in packets], [i * FRAME_NS for i in range(30)])
        self.assertTrue(packets[20][3], "the first packet of the new encoder is not a key frame")
        tmp = tempfile.mkdtemp(prefix="ccm-capi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "resized.h264")
        with open(path, "wb") as f:
            f.write(b"".join(p[0] for p in packets))
        rc, err, decoded = ffmpeg_decode(path, "h264")
        self.assertEqual((rc, err, decoded), (0, "", 30))


if __name__ == "__main__":
    print(f"libccm: {LIB_PATH}, API version {ccm_api_version()}", file=sys.stderr)
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
