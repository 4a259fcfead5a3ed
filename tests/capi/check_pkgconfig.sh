#!/bin/sh
# Builds tests/capi/contract.c the way docs/c-api.md tells a user to, against
# this build tree: PKG_CONFIG_PATH=<build>/meson-uninstalled, then
# `cc -std=c11` and `c++ -std=c++17`, both with -Wall -Wextra -Werror, and runs both.
# Env: CCM_BUILD_ROOT (the build tree), CCM_EXTRA_CFLAGS (the build's sanitizers).
set -eu
src=$1
: "${CCM_BUILD_ROOT:?set by tests/capi/meson.build}"
export PKG_CONFIG_PATH="$CCM_BUILD_ROOT/meson-uninstalled"
flags=$(pkg-config --cflags --libs ccm) || {
  echo "pkg-config finds no ccm in $PKG_CONFIG_PATH (meson writes ccm-uninstalled.pc there)" >&2
  exit 1
}
# The uninstalled file's libdir variable names the install layout; the library
# itself is where its -L points (build/capi).
libdir=$(pkg-config --libs-only-L ccm | sed 's/^ *-L//; s/ .*//')
[ -e "$libdir/libccm.so" ] || { echo "no libccm.so in $libdir (from pkg-config --libs-only-L ccm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "pkg-config ccm: $flags"
# shellcheck disable=SC2086  # flags are words
cc -std=c11 -Wall -Wextra -Werror ${CCM_EXTRA_CFLAGS:-} "$src" $flags -lm -o "$tmp/contract_c"
# shellcheck disable=SC2086
c++ -std=c++17 -Wall -Wextra -Werror ${CCM_EXTRA_CFLAGS:-} -x c++ "$src" -x none $flags -o "$tmp/contract_cpp"
for exe in contract_c contract_cpp; do
  echo "running $exe"
  # Only the directory pkg-config named: not whatever the test runner put there.
  LD_LIBRARY_PATH="$libdir" timeout 170 "$tmp/$exe"
done
