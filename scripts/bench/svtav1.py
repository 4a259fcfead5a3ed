#!/usr/bin/env python3
"""ccmsvtav1enc against SvtAv1EncApp (package svt-av1) on the same 1080p clip.

Both encode the same y4m file (the 1080p street clip of tests/media, looped back
and forth to --frames frames at 25 fps) with the same library (SVT-AV1 1.4.1), the
same preset, low-delay prediction, the same key-frame interval (125 frames) and
the same target bitrate. SvtAv1EncApp runs its own CBR (--rc 2); ccmsvtav1enc runs
the library in constant-QP mode with a QP per picture from its rate controller
(its default). A third row runs SvtAv1EncApp in plain CQP (--rc 0 --aq-mode 0), the
library mode ccmsvtav1enc uses, at the QP our controller settled on.

Reported per preset:
  fps      frames / encoding time. SvtAv1EncApp: its "Average Speed". ccmsvtav1enc:
           first frame into the encoder until the last packet out (pad probes).
  latency  per frame, send to packet out. SvtAv1EncApp: its "Average/Max Latency"
           (svt_av1_enc_send_picture -> packet). ccmsvtav1enc: frame into the
           element -> packet out of it (pad probes), mean and max.
  frames/CPU-s  frames per CPU-second (user + system time of the process, all threads):
           independent of what else the cores do. ccmsvtav1enc: a gst-launch-1.0 run.
  RSS      peak resident set of the process (/usr/bin/time): SvtAv1EncApp vs gst-launch-1.0
           filesrc ! y4mdec ! ccmsvtav1enc ! fakesink (includes GStreamer itself).
  kbit/s   the bitrate each produced over the clip.

Run from the repository root after building (meson setup build && ninja -C build):
  scripts/bench/svtav1.py [--build build] [--frames 150] [--bitrate 4000] [--presets 8,10,12] [--trials 3]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP = "street_1920x1080_54f.h264"
W, H, FPS = 1920, 1080, 25
KEYINT = 125  # ccmsvtav1enc's default: 5 s of frames


def media_dir():
    for d in (os.environ.get("CCM_TEST_MEDIA"), os.path.join(ROOT, "tests", "media")):
        if d and os.path.exists(os.path.join(d, CLIP)):
            return d
    sys.exit(f"{CLIP} not found: set CCM_TEST_MEDIA")


def make_y4m(path, frames):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", os.path.join(media_dir(), CLIP), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], check=True, capture_output=True).stdout
    size = W * H * 3 // 2
    n = len(raw) // size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            j = i % (2 * n)
            if j >= n:
                j = 2 * n - 1 - j  # back and forth: no cut at the loop point
            f.write(b"FRAME\n")
            f.write(raw[j * size:(j + 1) * size])


def run_measured(cmd, env=None):
    """Runs cmd; returns (stdout+stderr, CPU seconds (user + system), peak RSS in MiB).

    The peak comes from /usr/bin/time: a child forked straight from this script
    would count this script's own memory (the decoded clip) from before its exec."""
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M CPU %U %S"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out[-3000:]}")
    rss, user, system = re.findall(r"MAXRSS (\d+) CPU ([\d.]+) ([\d.]+)", out)[-1]
    return out, float(user) + float(system), float(rss) / 1024.0


def app_row(y4m, ivf, preset, bitrate, cqp=None):
    cmd = ["SvtAv1EncApp", "-i", y4m, "-b", ivf, "--preset", str(preset), "--pred-struct", "1",
           "--keyint", str(KEYINT), "--pin", "0"]
    cmd += ["--rc", "0", "--aq-mode", "0", "--qp", str(cqp)] if cqp is not None else ["--rc", "2", "--tbr", str(bitrate)]
    out, cpu, rss = run_measured(cmd)
    grab = lambda pat: float(re.search(pat, out).group(1))
    frames = int(re.search(r"^\s*(\d+)\s+[\d.]+ fps", out, re.M).group(1))
    return {
        "fps": grab(r"Average Speed:\s*([\d.]+)"),
        "lat_mean": grab(r"Average Latency:\s*([\d.]+)"),
        "lat_max": grab(r"Max Latency:\s*([\d.]+)"),
        "rss": rss,
        "kbps": grab(r"([\d.]+) kbps"),
        "frames": frames,
        "fpcs": frames / cpu,
    }


# Runs in a child process (--worker): the pipeline with probes, so that the
# figures are the encoder's own and GStreamer's start-up is not in them.
def worker(y4m, preset, bitrate, out_path, live):
    import threading
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
    Gst.init(None)
    if live:
        # A camera-like source: frames pushed at 25 fps of wall-clock time from a
        # live appsrc (the element then holds one picture, not four).
        pipe = Gst.parse_launch(f"appsrc name=src is-live=true format=time min-latency=0 ! "
                                f"ccmsvtav1enc name=enc speed-preset={preset} bitrate={bitrate} ! "
                                f"filesink location={out_path}")
        src = pipe.get_by_name("src")
        src.set_property("caps", Gst.Caps.from_string(f"video/x-raw,format=I420,width={W},height={H},"
                                                      f"framerate={FPS}/1"))
        with open(y4m, "rb") as f:
            f.readline()
            size = W * H * 3 // 2
            frames = []
            while f.readline():
                frames.append(f.read(size))

        def feed():
            t0 = time.monotonic()
            for i, data in enumerate(frames):
                delay = t0 + i / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                b = Gst.Buffer.new_wrapped(data)
                b.pts = i * Gst.SECOND // FPS
                b.duration = Gst.SECOND // FPS
                src.emit("push-buffer", b)
            src.emit("end-of-stream")
        feeder = threading.Thread(target=feed)
    else:
        pipe = Gst.parse_launch(f"filesrc location={y4m} ! y4mdec ! ccmsvtav1enc name=enc speed-preset={preset} "
                                f"bitrate={bitrate} ! filesink location={out_path}")
        feeder = None
    enc = pipe.get_by_name("enc")
    t_in, lat, sizes = {}, [], []
    first = [None]
    last = [None]

    def on_in(pad, info):
        b = info.get_buffer()
        now = time.perf_counter()
        if first[0] is None:
            first[0] = now
        t_in[b.pts] = now
        return Gst.PadProbeReturn.OK

    def on_out(pad, info):
        b = info.get_buffer()
        now = time.perf_counter()
        last[0] = now
        if b.pts in t_in:
            lat.append((now - t_in.pop(b.pts)) * 1000)
        sizes.append(b.get_size())
        return Gst.PadProbeReturn.OK

    enc.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_in)
    enc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_out)
    pipe.set_state(Gst.State.PLAYING)
    if feeder:
        feeder.start()
    msg = pipe.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg.type == Gst.MessageType.ERROR:
        sys.exit(f"pipeline error: {msg.parse_error()}")
    pipe.set_state(Gst.State.NULL)
    if feeder:
        feeder.join()
    n = len(sizes)
    fps = n / (last[0] - first[0])
    kbps = sum(sizes) * 8 / (n / FPS) / 1000
    print(f"RESULT fps={fps:.2f} lat_mean={sum(lat) / len(lat):.1f} lat_max={max(lat):.1f} kbps={kbps:.0f} frames={n}")


def gi_python():
    """An interpreter with PyGObject (Debian's python3-gi lives in /usr/bin/python3)."""
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import gi"], capture_output=True).returncode == 0:
            return py
    sys.exit("PyGObject is missing (apt install python3-gi python3-gst-1.0)")


def ours_row(y4m, preset, bitrate, env, tmp, live=False):
    out, _, _ = run_measured([gi_python(), os.path.abspath(__file__), "--worker", y4m, str(preset), str(bitrate),
                              os.path.join(tmp, f"ours-{preset}.obu"), "live" if live else "file"], env=env)
    m = re.search(r"RESULT (.*)", out)
    if not m:
        sys.exit(out[-3000:])
    row = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    if live:
        row["rss"] = row["fpcs"] = float("nan")  # the Python worker's, not comparable
        return row
    # Peak RSS and CPU time of a plain gst-launch-1.0 process doing the same encode.
    _, cpu, rss = run_measured(["gst-launch-1.0", "-q", "filesrc", f"location={y4m}", "!", "y4mdec", "!",
                              "ccmsvtav1enc", f"speed-preset={preset}", f"bitrate={bitrate}", "!", "fakesink"], env=env)
    row["rss"] = rss
    row["fpcs"] = row["frames"] / cpu
    return row


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "live")
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="meson build directory")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--bitrate", type=int, default=4000, help="kbit/s")
    ap.add_argument("--presets", default="8,10,12")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--live-from", type=int, default=10,
                    help="also run a live source paced at 25 fps for presets from this one (real time on 2 cores)")
    args = ap.parse_args()
    for tool in ("SvtAv1EncApp", "ffmpeg", "gst-launch-1.0", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt install svt-av1 ffmpeg gstreamer1.0-tools)")
    plugin_dir = os.path.join(os.path.abspath(args.build), "gst")
    env = dict(os.environ, GST_PLUGIN_PATH=plugin_dir)
    env.pop("GST_DEBUG", None)
    if subprocess.run(["gst-inspect-1.0", "ccmsvtav1enc"], env=env, capture_output=True).returncode != 0:
        sys.exit(f"ccmsvtav1enc not found in {plugin_dir}: build first (ninja -C {args.build})")

    tmp = tempfile.mkdtemp(prefix="bench-svtav1-")
    try:
        y4m = os.path.join(tmp, "street.y4m")
        make_y4m(y4m, args.frames)
        print(f"# {args.frames} frames {W}x{H} @ {FPS} fps ({CLIP} back and forth), target {args.bitrate} kbit/s, "
              f"low delay, key frame every {KEYINT}, {os.cpu_count()} CPUs")
        print(f"{'preset':>6} {'encoder':<30} {'fps':>6} {'ratio':>6} {'frames/CPU-s':>12} {'ratio':>6} "
              f"{'lat mean':>9} {'lat max':>8} {'RSS MiB':>8} {'kbit/s':>7}")
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        for preset in [int(p) for p in args.presets.split(",")]:
            trials = {"ours": [], "app": [], "app_cqp": [], "live": []}
            for _ in range(args.trials):  # interleaved, so that a busy moment hits all of them
                trials["ours"].append(ours_row(y4m, preset, args.bitrate, env, tmp))
                trials["app"].append(app_row(y4m, os.path.join(tmp, "app.ivf"), preset, args.bitrate))
                # Plain CQP near the QP our controller settles at on this clip at 4000 kbit/s.
                trials["app_cqp"].append(app_row(y4m, os.path.join(tmp, "app-cqp.ivf"), preset, args.bitrate, cqp=45))
            if preset >= args.live_from:
                trials["live"].append(ours_row(y4m, preset, args.bitrate, env, tmp, live=True))
            keys = ("fps", "fpcs", "lat_mean", "lat_max", "rss", "kbps")
            res = {name: {k: med(rows, k) for k in keys} for name, rows in trials.items() if rows}
            ours = res["ours"]
            labels = {"ours": "ccmsvtav1enc (file input)", "app": "SvtAv1EncApp --rc 2 (CBR)",
                      "app_cqp": "SvtAv1EncApp --rc 0 --qp 45", "live": "ccmsvtav1enc live, paced 25 fps"}
            for name, r in res.items():
                live = name == "live"
                ratio = float("nan") if live else ours["fps"] / r["fps"]
                cratio = float("nan") if live else ours["fpcs"] / r["fpcs"]
                print(f"{preset:>6} {labels[name]:<30} {r['fps']:6.1f} {ratio:6.2f} {r['fpcs']:12.1f} {cratio:6.2f} "
                      f"{r['lat_mean']:7.1f}ms {r['lat_max']:6.1f}ms {r['rss']:8.0f} {r['kbps']:7.0f}")
            sys.stdout.flush()
        print(f"# medians of {args.trials} trials; ratio = ccmsvtav1enc (file input) / that row. The live row "
              "paces input at 25 fps (one run): its fps is the input rate, its latency what a viewer waits.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
