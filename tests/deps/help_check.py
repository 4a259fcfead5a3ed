#!/usr/bin/python3
"""--help answers at once, without side effects: scripts/demo --help and
scripts/webrtc-demo --help print their usage without installing or building (they run
from a copy of scripts/ whose install-deps and build only leave a mark and fail), and
ccm-demo --help (and ccm-webrtc-demo --help) exit 0 with their options, GStreamer's
--gst-* ones included. Every run is bounded by a timeout.

    help_check.py SOURCE_ROOT CCM_DEMO [CCM_WEBRTC_DEMO]
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

LIMIT_S = 10  # --help must come back well within this


def run(argv, failures, label, **kw):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT_S, **kw)
    except subprocess.TimeoutExpired:
        failures.append(f"{label}: no answer within {LIMIT_S} s")
        return None
    print(f"{label}: rc {r.returncode}, {len(r.stdout.splitlines())} lines")
    if r.returncode != 0:
        failures.append(f"{label}: exit status {r.returncode}, not 0: {(r.stdout + r.stderr)[-600:]}")
    return r


def expect(r, needles, failures, label):
    if r is None:
        return
    for n in needles:
        if n not in r.stdout:
            failures.append(f"{label}: the usage does not say {n!r}: {r.stdout[:600]!r}")


def main():
    root, ccm_demo = sys.argv[1], sys.argv[2]
    webrtc_demo = sys.argv[3] if len(sys.argv) > 3 else None
    failures = []

    tmp = tempfile.mkdtemp(prefix="ccm-help-")
    try:
        scripts = os.path.join(tmp, "scripts")
        os.makedirs(scripts)
        marks = os.path.join(tmp, "marks")
        os.makedirs(marks)
        for name in ("demo", "webrtc-demo"):
            shutil.copy(os.path.join(root, "scripts", name), scripts)
        for name in ("install-deps", "build"):
            path = os.path.join(scripts, name)
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\ntouch '{marks}/{name}'\necho '{name} ran' >&2\nexit 1\n")
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        cases = [
            ("demo", ["--help"], ["Usage: scripts/demo", "--codec", "--bitrate", "ccm-demo --help"]),
            ("demo", ["--codec", "h265", "-h"], ["Usage: scripts/demo"]),
            ("webrtc-demo", ["--help"], ["Usage: scripts/webrtc-demo", "--codec", "--port", "--source"]),
        ]
        for name, args, needles in cases:
            label = f"scripts/{name} {' '.join(args)}"
            r = run([os.path.join(scripts, name)] + args, failures, label)
            expect(r, needles, failures, label)
            for mark in sorted(os.listdir(marks)):
                failures.append(f"{label}: ran scripts/{mark} (help must not install or build)")
                os.remove(os.path.join(marks, mark))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    r = run([ccm_demo, "--help"], failures, "ccm-demo --help")
    expect(r, ["Usage:", "--codec", "--bitrate", "--seconds", "--width", "--height", "--fps", "--output",
               "--help-gst"], failures, "ccm-demo --help")
    r = run([ccm_demo, "--help-gst"], failures, "ccm-demo --help-gst")
    expect(r, ["--gst-debug-level", "--gst-plugin-path"], failures, "ccm-demo --help-gst")
    r = run([ccm_demo, "--gst-debug-level=1", "--codec", "h265", "--help"], failures, "ccm-demo --gst-debug-level=1 --help")
    expect(r, ["Usage:"], failures, "ccm-demo --gst-debug-level=1 --help")
    try:
        bad = subprocess.run([ccm_demo, "--no-such-option"], capture_output=True, text=True, timeout=LIMIT_S)
        if bad.returncode != 2 or "--no-such-option" not in bad.stderr:
            failures.append(f"ccm-demo --no-such-option: exit {bad.returncode} (want 2 and the option named): "
                            f"{bad.stderr[-300:]!r}")
    except subprocess.TimeoutExpired:
        failures.append(f"ccm-demo --no-such-option: no answer within {LIMIT_S} s")
    if webrtc_demo:
        r = run([webrtc_demo, "--help"], failures, "ccm-webrtc-demo --help")
        expect(r, ["Usage:", "--codec", "--source", "--help-gst"], failures, "ccm-webrtc-demo --help")

    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
