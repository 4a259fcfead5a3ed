#!/bin/sh
# The house's one-way arrows: lib/ (libccm's core, no GStreamer) includes
# nothing from gst/ (the plugin) nor capi/ (the C API over the plugin). Both of
# those build on lib/, never the other way. Fails naming each offending line.
set -eu
top=${1:?usage: check_layering.sh SOURCE_ROOT}
cd "$top"
# An include of a file that lives under gst/ or capi/: by path ("gst/…",
# "../gst/…", "capi/…") or by a name only those directories have.
names=$(cd gst && find . -name '*.h' | sed 's|^\./||'; cd ../capi && find . -name '*.h' | sed 's|^\./||')
bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' lib | while IFS= read -r line; do
  inc=$(printf '%s\n' "$line" | sed -E 's/.*#[[:space:]]*include[[:space:]]*[<"]([^>"]*)[>"].*/\1/')
  case "$inc" in
    gst/gst*|gst/video/*|gst/base/*|gst/app/*|gst/pbutils/*) continue ;;  # GStreamer's own headers
  esac
  case "$inc" in
    gst/*|*/gst/*|capi/*|*/capi/*|ccm/ccm.h) printf '%s\n' "$line"; continue ;;
  esac
  for n in $names; do
    if [ "$inc" = "$n" ]; then printf '%s\n' "$line"; break; fi
  done
done)
if [ -n "$bad" ]; then
  echo "lib/ must not include gst/ or capi/ (they build on lib/, not the other way):" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi
echo "layering: lib/ includes nothing from gst/ or capi/ ($(grep -rlE '#[[:space:]]*include' lib | wc -l) files checked)"
