#!/usr/bin/env bash
# The install test: installs the build into a temporary prefix, then builds
# tests/install (main.cpp) against it twice, with find_package(zchat) and
# with pkg-config zchat-client, and runs both programs. Any failing step
# fails the test; the temporary folder goes at the end either way.
# Usage: run.sh BUILD_DIR SOURCE_DIR CXX_COMPILER LIBDIR
set -euo pipefail
build=$1 source=$2 cxx=$3 libdir=$4

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/zchat-broker bin/zchat bin/zchat-bench bin/zchat-core-bench \
         include/zchat/client/client.h include/zchat/messages/messages.h \
         "$libdir/libzchat-client.a" "$libdir/libzchat-messages.a" \
         "$libdir/cmake/zchat/zchatConfig.cmake" \
         "$libdir/pkgconfig/zchat-client.pc"; do
  [[ -e $prefix/$f ]] || { echo "not installed: $f" >&2; exit 1; }
done

# find_package(zchat CONFIG REQUIRED) and zchat::client.
cmake -S "$source" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer"
"$tmp/consumer/consumer"

# pkg-config zchat-client.
flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" \
        pkg-config --cflags --libs zchat-client)
# shellcheck disable=SC2086  # the flags are words
"$cxx" -std=c++20 -o "$tmp/consumer-pc" "$source/main.cpp" $flags
"$tmp/consumer-pc"
echo "install test: passed"
