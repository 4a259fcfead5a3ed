#!/usr/bin/python3
"""Runs one of docs/examples' design use cases small and checks its stream with ffprobe.

  check_examples.py live_8k_hdr|conference_4k PROGRAM

live_8k_hdr: 10-bit AV1 or HEVC with HDR signalling (BT.2020 primaries, PQ
transfer), every frame decodable, at about the asked rate (the program scales
120 Mbit/s by the area of the small size). conference_4k: the 3-byte
dynamic_params accepted, 8-bit, no B-frames, packets in presentation order.
"""
import json
import os
import subprocess
import sys
import tempfile

CASES = {
    # frames, size: small enough for 2 loaded cores, enough frames for a rate.
    # 60 frames: one second at the example's 60 fps; the first half second of a stream on
    # its grain source runs at up to 1.4x while the rate controller finds the QP.
    "live_8k_hdr": {"frames": 60, "size": "640x360"},
    "conference_4k": {"frames": 10, "size": "640x360"},
}
FORMATS = {"av1": "obu", "hevc": "hevc"}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    name, program = sys.argv[1], sys.argv[2]
    case = CASES[name]
    env = dict(os.environ, CCM_EXAMPLE_FRAMES=str(case["frames"]), CCM_EXAMPLE_SIZE=case["size"])
    with tempfile.TemporaryDirectory(prefix="ccm-example-") as tmp:
        out = os.path.join(tmp, "stream")
        try:
            run = subprocess.run([program, out], env=env, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            fail(f"{name} did not finish within 240 s")
        sys.stderr.write(run.stderr)
        print(run.stdout.strip())
        if run.returncode != 0:
            fail(f"{name} exited with {run.returncode}")
        line = next((l for l in run.stdout.splitlines() if l.startswith(name + ":")), None)
        if not line:
            fail(f"{name} printed no summary")
        summary = dict(kv.split("=", 1) for kv in line.split()[1:])
        codec = summary["codec"]
        if codec not in FORMATS:
            fail(f"{name} encoded {codec}; the check reads AV1 or HEVC")
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-f", FORMATS[codec], "-count_frames", "-select_streams", "v:0",
             "-show_entries", "stream=codec_name,pix_fmt,color_transfer,color_primaries,width,height,"
             "has_b_frames,nb_read_frames", "-of", "json", out],
            capture_output=True, text=True, timeout=120)
        if probe.returncode != 0 or probe.stderr.strip():
            fail(f"ffprobe: {probe.stderr.strip()}")
        stream = json.loads(probe.stdout)["streams"][0]
        print(f"ffprobe: {stream}")

    frames = case["frames"]
    w, h = (int(v) for v in case["size"].split("x"))
    expect = {"codec_name": codec, "width": w, "height": h, "nb_read_frames": str(frames)}
    if name == "live_8k_hdr":
        expect.update(pix_fmt="yuv420p10le", color_transfer="smpte2084", color_primaries="bt2020")
    else:
        expect.update(pix_fmt="yuv420p", has_b_frames=0)
    for key, want in expect.items():
        if stream.get(key) != want:
            fail(f"{name}: {key} is {stream.get(key)!r}, expected {want!r}")
    if name == "live_8k_hdr":
        target, actual = float(summary["target_bps"]), float(summary["actual_bps"])
        ratio = actual / target
        print(f"rate: {actual / 1e3:.0f} kbit/s for {target / 1e3:.0f} asked ({ratio:.2f}x)")
        if not 0.5 <= ratio <= 1.5:
            fail(f"{name}: {actual:.0f} bit/s over {frames} frames, asked {target:.0f} ({ratio:.2f}x)")
    else:
        if summary["out_of_order"] != "0":
            fail(f"{name}: {summary['out_of_order']} packets out of presentation order")
    print(f"{name}: OK")


if __name__ == "__main__":
    main()
