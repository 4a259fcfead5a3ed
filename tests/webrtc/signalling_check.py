#!/usr/bin/env python3
"""Signalling without a browser: starts ccm-webrtc-demo, opens its WebSocket with a
minimal client (RFC 6455 by hand: no packages needed), and checks for every codec
that an offer arrives whose SDP names it, with the RTCP feedback (NACK, PLI, FIR,
transport-cc) and the TWCC extension the sender asks for; then that garbage on one socket closes that socket
only and the server keeps serving (a new viewer still gets an offer). Last, a sender that
cannot build its pipeline tells the page why ({"type":"error"}) and its log names the Debian
package to install: once on a GStreamer without gstreamer1.0-x (timeoverlay, which the
default source uses: the system plugins minus libgstpango.so), once with a source naming
an element nobody ships.

    signalling_check.py DEMO
"""
import base64
import glob
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_sender(proc):
    """SIGTERM, 30 s to exit, then SIGKILL; returns its stderr."""
    proc.terminate()
    try:
        return proc.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


class WebSocket:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("connection closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"no WebSocket upgrade: {head[:80]!r}")

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def recv(self):
        """(opcode, payload) of the next frame (the server does not fragment)."""
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(length)

    def send_text(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        if len(payload) < 126:
            head += bytes([0x80 | len(payload)])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def wait_offer(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            opcode, payload = self.recv()
            if opcode == 8:
                raise RuntimeError("closed before an offer")
            if opcode == 1:
                message = json.loads(payload)
                if message.get("type") == "offer":
                    return message["sdp"]
        raise RuntimeError("no offer")

    def wait_error(self, timeout=30):
        """The text of the sender's {"type":"error"} message (None when it closes or the time is up)."""
        deadline = time.time() + timeout
        self.sock.settimeout(timeout)
        while time.time() < deadline:
            try:
                opcode, payload = self.recv()
            except (EOFError, ConnectionResetError, socket.timeout):
                return None
            if opcode == 8:
                return None
            if opcode == 1:
                message = json.loads(payload)
                if message.get("type") == "error":
                    return message.get("message", "")
        return None

    def wait_close(self, timeout=10):
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = self.recv()
                if opcode == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (EOFError, ConnectionResetError):
            return 1006
        except socket.timeout:
            return None


def wait_serving(port, proc, seconds=15):
    """Until the demo accepts connections on port; raises with a reason otherwise."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sender exited ({proc.returncode}) before serving")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the sender did not serve on port {port} within {seconds} s")


def plugins_without(folder, hidden):
    """A folder of links to the system plugins (the one holding libgstcoreelements.so)
    except the files named in hidden: a GStreamer where those are not installed."""
    found = glob.glob("/usr/lib/*/gstreamer-1.0/libgstcoreelements.so") + \
        glob.glob("/usr/lib/gstreamer-1.0/libgstcoreelements.so")
    if not found:
        return None
    system = os.path.dirname(found[0])
    os.makedirs(folder)
    for name in os.listdir(system):
        if name not in hidden:
            os.symlink(os.path.join(system, name), os.path.join(folder, name))
    return folder


def check_errors(demo, failures):
    tmp = tempfile.mkdtemp(prefix="ccm-signalling-")
    try:
        cases = []
        plugins = plugins_without(os.path.join(tmp, "plugins"), {"libgstpango.so"})
        if plugins is None:
            failures.append("no system GStreamer plugin folder (libgstcoreelements.so) to copy")
        else:
            env = dict(os.environ, GST_PLUGIN_SYSTEM_PATH=plugins, GST_PLUGIN_SYSTEM_PATH_1_0=plugins,
                       GST_REGISTRY=os.path.join(tmp, "registry.bin"))
            cases.append(("no-gstreamer1.0-x", [], env,
                          ["element timeoverlay is missing", "install the Debian package gstreamer1.0-x"]))
        cases.append(("unknown-element", ["--source", "videotestsrc is-live=true ! ccmnosuchelement"], None,
                      ["element ccmnosuchelement is missing", "no Debian package known"]))
        for label, args, env, needles in cases:
            port = free_port()
            proc = subprocess.Popen([demo, "--codec", "vp9", "--port", str(port), "--width", "320", "--height", "240",
                                     "--duration", "60"] + args,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            text = None
            try:
                wait_serving(port, proc, 30 if env else 15)  # a fresh registry is scanned first
                ws = WebSocket(port)
                text = ws.wait_error(timeout=30)
                code = ws.wait_close() if text is not None else None
                print(json.dumps({"case": label, "error": text, "closed": code}))
                if text is None:
                    failures.append(f"{label}: no {{\"type\":\"error\"}} message within 30 s")
                else:
                    failures.extend(f"{label}: the error does not say {n!r}: {text}" for n in needles if n not in text)
                    if code is None:
                        failures.append(f"{label}: the socket stayed open after the error")
                if proc.poll() is not None:
                    failures.append(f"{label}: the sender died after the failed pipeline ({proc.returncode})")
            except Exception as e:  # noqa: BLE001 - any failure is a test failure with its reason
                failures.append(f"{label}: {e}")
            finally:
                err = stop_sender(proc)
            if text is not None and needles[-1] not in err:
                failures.append(f"{label}: the sender's log does not say {needles[-1]!r}")
            if proc.returncode not in (0, -15) or any(f.startswith(label) for f in failures):
                print("\n".join(l for l in err.splitlines() if not l.startswith("Svt["))[-3000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    demo = sys.argv[1]
    failures = []
    expected = {"av1": "AV1/90000", "vp9": "VP9/90000", "h264": "H264/90000", "h265": "H265/90000"}
    for codec, rtpmap in expected.items():
        port = free_port()
        proc = subprocess.Popen([demo, "--codec", codec, "--port", str(port), "--width", "320",
                                 "--height", "240", "--duration", "60"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # The first start may scan a cold registry (slow under the sanitizers).
            wait_serving(port, proc, 30)
            ws = WebSocket(port)
            sdp = ws.wait_offer()
            for needle in (rtpmap, "a=sendonly", "nack pli", "ccm fir", "transport-cc",
                           "transport-wide-cc-extensions-01"):
                if needle not in sdp:
                    failures.append(f"{codec}: offer without {needle!r}")
            print(json.dumps({"codec": codec, "offer": True, "rtpmap": rtpmap in sdp}))
            if codec == "vp9":
                # Garbage on a socket of its own: that socket closes, the other stays served.
                bad = WebSocket(port)
                bad.wait_offer()
                bad.send_text('{"type":"answer","sdp":"not sdp at all"}')
                code = bad.wait_close()
                print(json.dumps({"malformed-closed": code}))
                if code is None:
                    failures.append("malformed answer did not close its socket")
                again = WebSocket(port)
                again.wait_offer()
                ws.send_text(json.dumps({"type": "ice", "candidate": "", "sdpMLineIndex": 0}))
                if proc.poll() is not None:
                    failures.append("the sender died after malformed signalling")
        except Exception as e:  # noqa: BLE001 - any failure is a test failure with its reason
            failures.append(f"{codec}: {e}")
        finally:
            err = stop_sender(proc)
            if proc.returncode not in (0, -15):
                failures.append(f"{codec}: sender exited {proc.returncode}")
                print("\n".join(l for l in err.splitlines() if not l.startswith("Svt["))[-3000:])
    check_errors(demo, failures)
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
