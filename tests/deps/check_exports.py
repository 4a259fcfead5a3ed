#!/usr/bin/env python3
"""The ccm plugin's ABI: its module exports gst_plugin_ccm_get_desc and
gst_plugin_ccm_register (what GStreamer's loader and static registration use)
and nothing else (gst/plugin.map).

    check_exports.py PLUGIN.so      (exit 0: exactly those; 1: what is wrong)
"""
import subprocess
import sys

WANTED = {"gst_plugin_ccm_get_desc", "gst_plugin_ccm_register"}


def main():
    plugin = sys.argv[1]
    out = subprocess.run(["nm", "-D", "--defined-only", "--format=posix", plugin],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    exported = {line.split()[0] for line in out.splitlines() if line.strip()}
    # Version nodes of the linker (none with an anonymous script) are not symbols.
    extra = sorted(exported - WANTED)
    missing = sorted(WANTED - exported)
    if missing:
        print(f"{plugin}: does not export {', '.join(missing)}: GStreamer cannot load it")
    if extra:
        print(f"{plugin}: exports {len(extra)} symbols beyond {', '.join(sorted(WANTED))} "
              f"(gst/plugin.map must keep them local), e.g. {', '.join(extra[:10])}")
    if missing or extra:
        return 1
    print(f"{plugin}: exports exactly {', '.join(sorted(WANTED))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
