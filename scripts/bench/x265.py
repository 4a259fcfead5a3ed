#!/usr/bin/python3
"""ccmx265enc against stock x265enc and ffmpeg's libx265, side by side.

Same 1080p camera clip for all (tests/media/street_1920x1080_54f.h264, decoded
once to raw and its frames repeated to --frames), same x265 settings: ultrafast,
zerolatency, ABR at --bitrate with VBV max = bitrate and a half-second buffer,
which is what `ccmx265enc bitrate=N` (rate-control=cbr, low-latency=true) opens
x265 with; x265enc and ffmpeg get those as x265 options.

1. Throughput: each run is its own process, runs alternate between the three,
   medians over --trials: wall-clock fps, frames per CPU-second (user + system
   time of the process: robust against other load on the machine), peak RSS.
2. Cost of a bitrate change: --changes changes (alternating --bitrate and
   --low-bitrate, one per second) in one pipeline, per element: key frames (IDR
   NAL units) in the output, how long the frame at each change took inside the
   encoder against the median frame, and the output rate per second of stream.
   Stock x265enc gets its own defaults here (bitrate only): a change there closes
   and reopens the encoder.

Usage: scripts/bench/x265.py [--frames 300] [--trials 3] [--build build]
Needs a built tree with ccmx265enc, gst-launch-1.0, ffmpeg (libx265) and
/usr/bin/python3 with python3-gst-1.0.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W, H, FPS = 1920, 1080, 30


def x265_options(bitrate):
    """What ccmx265enc sets on top of ultrafast + zerolatency (see ccmx265enc.cpp)."""
    return (f"bitrate={bitrate}:vbv-maxrate={bitrate}:vbv-bufsize={bitrate // 2}:"
            f"open-gop=0:repeat-headers=1:info=0:level-idc=41")


def prepare_raw(frames):
    media = os.path.normpath(os.path.join(TOP, "tests", "media", "street_1920x1080_54f.h264"))
    raw = f"/tmp/ccm-bench-street-1080p-{frames}.i420"
    frame_bytes = W * H * 3 // 2
    if not os.path.exists(raw) or os.path.getsize(raw) != frames * frame_bytes:
        clip = subprocess.run(["ffmpeg", "-v", "error", "-i", media, "-pix_fmt", "yuv420p", "-f", "rawvideo", "-"],
                              check=True, capture_output=True).stdout
        n = len(clip) // frame_bytes
        if n == 0:
            sys.exit(f"could not decode {media}")
        with open(raw, "wb") as f:
            for i in range(frames):
                f.write(clip[(i % n) * frame_bytes:(i % n + 1) * frame_bytes])
    return raw


def run_process(argv, env):
    """Runs argv to the end; wall seconds, CPU seconds and peak RSS (MB) of that process."""
    # Peak RSS through /usr/bin/time: the ru_maxrss that wait4 reports for a child
    # starts from this (large) Python process's RSS at fork.
    rss_file = f"/tmp/ccm-bench-rss-{os.getpid()}"
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err[-2000:]}")
    with open(rss_file) as f:
        rss_kb = float(f.read().split()[-1])
    os.unlink(rss_file)
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": rss_kb / 1024}


def throughput(args, raw, env):
    src = (f"filesrc location={raw} ! rawvideoparse width={W} height={H} format=i420 framerate={FPS}/1 ! "
           f"identity eos-after={args.frames}")
    opts = x265_options(args.bitrate)
    runs = {
        "ccmx265enc": ["gst-launch-1.0", "-q"] + f"{src} ! ccmx265enc bitrate={args.bitrate} ! fakesink".split(),
        "x265enc": ["gst-launch-1.0", "-q"] + (
            f"{src} ! x265enc speed-preset=ultrafast tune=zerolatency bitrate={args.bitrate} "
            f"option-string={opts} ! fakesink").split(),
        "ffmpeg libx265": ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}", "-r",
                           str(FPS), "-i", raw, "-frames:v", str(args.frames), "-c:v", "libx265", "-preset", "ultrafast", "-tune", "zerolatency",
                           "-x265-params", opts + ":log-level=error", "-f", "null", "-"],
    }
    results = {name: [] for name in runs}
    for _ in range(args.trials):
        for name, argv in runs.items():
            results[name].append(run_process(argv, env))

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print(f"\n## throughput: {args.frames} frames {W}x{H} I420 at {args.bitrate} kbit/s, ultrafast + zerolatency, "
          f"{args.trials} alternating trials (medians), {os.cpu_count()} cores")
    print("| encoder | fps (wall) | frames per CPU-second | peak RSS |")
    print("| --- | --- | --- | --- |")
    fps = {}
    for name in runs:
        fps[name] = (args.frames / med(name, "wall"), args.frames / med(name, "cpu"))
        print(f"| {name} | {fps[name][0]:.1f} | {fps[name][1]:.1f} | {med(name, 'rss_mb'):.0f} MB |")
    for peer in ("x265enc", "ffmpeg libx265"):
        print(f"ratio ccmx265enc / {peer}: {fps['ccmx265enc'][0] / fps[peer][0]:.3f} wall-clock, "
              f"{fps['ccmx265enc'][1] / fps[peer][1]:.3f} per CPU-second")
    return results


# ---- cost of a bitrate change, in a child process with python3-gst ----------------------

def nal_types(data):
    types, i = [], 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            return types
        types.append((data[i + 3] >> 1) & 0x3F)
        i += 3


def change_trial(spec):
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    Gst.init(None)
    pipeline = Gst.parse_launch(spec["pipeline"])
    enc = pipeline.get_by_name("enc")
    t_in, frames = {}, {}
    second = Gst.SECOND
    rates = [spec["bitrate"], spec["low"]]
    done = set()

    def on_in(pad, info):
        buf = info.get_buffer()
        k = buf.pts // second
        if 0 < k <= spec["changes"] and k not in done and buf.pts % second < second // FPS:
            done.add(k)
            enc.set_property("bitrate", rates[k % 2])
        t_in[buf.pts] = time.monotonic()
        return Gst.PadProbeReturn.OK

    def on_out(pad, info):
        buf = info.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        data = bytes(m.data) if ok else b""
        if ok:
            buf.unmap(m)
        frames[buf.pts] = {"t_out": time.monotonic(), "bytes": len(data),
                           "idr": any(t in (19, 20) for t in nal_types(data))}
        return Gst.PadProbeReturn.OK

    enc.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_in)
    enc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_out)
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    msg = bus.timed_pop_filtered(600 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        print(json.dumps({"error": msg.parse_error()[0].message if msg else "timeout"}))
        return 1
    # x265enc shifts its output timestamps by 1000 hours (GstVideoEncoder min-pts,
    # room for negative DTS); bring them back to the input's.
    shift = min(frames) - min(t_in) if frames and t_in else 0
    frames = {p - shift: f for p, f in frames.items()}
    for p, f in frames.items():
        f["ms"] = (f["t_out"] - t_in[p]) * 1000 if p in t_in else float("nan")
    pts = sorted(frames)
    change_frames = [p for p in pts if 0 < p // second <= spec["changes"] and p % second < second // FPS]
    others = [frames[p]["ms"] for p in pts if p not in change_frames and p >= second]
    windows = {}
    for p in pts:
        windows[p // second] = windows.get(p // second, 0) + frames[p]["bytes"] * 8 / 1000
    print(json.dumps({
        "frames_in": len(t_in),
        "frames": len(pts),
        "idr": [round(p / second * FPS) for p in pts if frames[p]["idr"]],
        "change_ms": [frames[p]["ms"] for p in change_frames],
        "median_ms": statistics.median(others),
        "kbps": [round(windows[k]) for k in sorted(windows)],
    }))
    return 0


def change_cost(args, raw, env):
    frames = (args.changes + 2) * FPS
    src = (f"filesrc location={raw} ! rawvideoparse width={W} height={H} format=i420 framerate={FPS}/1 ! "
           f"identity eos-after={frames}")
    pipelines = {
        "ccmx265enc": f"{src} ! ccmx265enc name=enc bitrate={args.bitrate} ! fakesink",
        "x265enc": f"{src} ! x265enc name=enc speed-preset=ultrafast tune=zerolatency bitrate={args.bitrate} "
                   f"! fakesink",
    }
    print(f"\n## cost of a bitrate change: {args.changes} changes {args.bitrate} <-> {args.low_bitrate} kbit/s, "
          f"one per second, {frames} frames")
    print("| encoder | frames in / out | key frames (IDR) at frame | frame time at a change (mean / max) | "
          "median frame time | kbit/s per second of stream |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, pipeline in pipelines.items():
        spec = json.dumps({"pipeline": pipeline, "bitrate": args.bitrate, "low": args.low_bitrate,
                           "changes": args.changes})
        out = subprocess.run(["/usr/bin/python3", __file__, "--change-trial", spec], env=env, capture_output=True,
                             text=True)
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode or not line:
            sys.exit(f"change trial failed: {name}\n{out.stdout}\n{out.stderr[-2000:]}")
        r = json.loads(line[-1])
        ch = r["change_ms"]
        print(f"| {name} | {r['frames_in']} / {r['frames']} | {len(r['idr'])}: {r['idr']} | "
              f"{statistics.mean(ch):.1f} / {max(ch):.1f} ms | "
              f"{r['median_ms']:.1f} ms | {' '.join(str(k) for k in r['kbps'])} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--bitrate", type=int, default=4000)
    ap.add_argument("--low-bitrate", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=6)
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--change-trial")
    args = ap.parse_args()
    if args.change_trial:
        return change_trial(json.loads(args.change_trial))

    env = dict(os.environ, GST_PLUGIN_PATH=os.path.join(os.path.abspath(args.build), "gst"),
               GST_REGISTRY=os.path.join(os.path.abspath(args.build), "bench-registry.bin"))
    check = subprocess.run(["gst-inspect-1.0", "ccmx265enc"], env=env, capture_output=True)
    if check.returncode:
        sys.exit(f"ccmx265enc not in {args.build}/gst: build the tree first (scripts/build)")
    raw = prepare_raw(max(args.frames, (args.changes + 2) * FPS))
    print(f"# ccmx265enc vs x265enc vs ffmpeg libx265 ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {os.getloadavg()[0]:.1f})")
    throughput(args, raw, env)
    change_cost(args, raw, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
