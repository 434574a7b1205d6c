#!/usr/bin/env bash
# The deb_package test: builds the Debian package from the build directory
# with cpack -G DEB into a temporary folder, inspects it (dpkg-deb --info,
# --contents), extracts it, runs the packaged zchat-broker --version and
# checks the packaged systemd unit: with systemd-analyze verify when that
# exists, else with a small structural parser. It prints which check ran.
# Usage: deb.sh BUILD_DIR
set -euo pipefail
build=$1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in cpack dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "deb_package: $tool missing" >&2; exit 1; }
done

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 \
  || { cat "$tmp/cpack.log" >&2; echo "deb_package: cpack failed" >&2; exit 1; }
shopt -s nullglob
debs=("$tmp"/out/zchat_*.deb)
[[ ${#debs[@]} -eq 1 ]] || { ls -R "$tmp/out" >&2; echo "deb_package: expected one zchat_*.deb" >&2; exit 1; }
deb=${debs[0]}
echo "deb_package: built $(basename "$deb")"

info=$(dpkg-deb --info "$deb")
echo "$info"
for field in 'Package: zchat' 'Version: ' 'Architecture: ' 'Maintainer: ' \
             'Description: ' 'Depends: '; do
  grep -q "^ $field" <<<"$info" || { echo "deb_package: control lacks '$field'" >&2; exit 1; }
done
grep -q '^ Depends:.*libzmq' <<<"$info" || { echo "deb_package: Depends lacks libzmq" >&2; exit 1; }

contents=$(dpkg-deb --contents "$deb")
unit_path=usr/lib/systemd/system/zchat-broker.service
for f in usr/bin/zchat-broker usr/bin/zchat "$unit_path" usr/share/doc/zchat/copyright; do
  grep -q " \./$f\$" <<<"$contents" || {
    echo "$contents" >&2; echo "deb_package: package lacks $f" >&2; exit 1; }
done

root=$tmp/root
dpkg-deb -x "$deb" "$root"
version=$("$root/usr/bin/zchat-broker" --version)
echo "deb_package: packaged zchat-broker --version: $version"
[[ $version == "zchat-broker "* ]] || { echo "deb_package: unexpected --version output" >&2; exit 1; }
"$root/usr/bin/zchat" --help >/dev/null

unit=$root/$unit_path
grep -qx 'ExecStart=/usr/bin/zchat-broker --bind tcp://127.0.0.1:5555 --db /var/lib/zchat/zchat.db' "$unit" \
  || { echo "deb_package: unexpected ExecStart in the packaged unit" >&2; exit 1; }

if command -v systemd-analyze >/dev/null; then
  echo "deb_package: unit check: systemd-analyze verify"
  # verify also checks that ExecStart's program exists: point it at the
  # extracted binary (a copy of the unit, same name).
  mkdir "$tmp/unit"
  sed "s|^ExecStart=/usr/bin/zchat-broker|ExecStart=$root/usr/bin/zchat-broker|" \
    "$unit" >"$tmp/unit/zchat-broker.service"
  if ! SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
         "$tmp/unit/zchat-broker.service" >"$tmp/verify.log" 2>&1 \
     || grep -q 'zchat-broker.service' "$tmp/verify.log"; then
    cat "$tmp/verify.log" >&2
    echo "deb_package: systemd-analyze verify found problems" >&2
    exit 1
  fi
  cat "$tmp/verify.log"
  # The hardening, scored offline: fails above an exposure of 3 (of 10).
  systemd-analyze security --offline=true --threshold=30 --no-pager \
    "$tmp/unit/zchat-broker.service" | tail -1
else
  echo "deb_package: unit check: structural parser (no systemd-analyze)"
  awk '
    /^[ \t]*([#;].*)?$/ { next }
    /^\[[A-Za-z]+\]$/ { section = $0; seen[section] = 1; next }
    /^[A-Za-z][A-Za-z0-9]*=/ {
      if (section == "") { print "key outside a section: " $0; bad = 1 }
      split($0, kv, "="); keys[section "" kv[1]] = 1; next
    }
    { print "not a unit line: " $0; bad = 1 }
    END {
      split("[Unit] [Service] [Install]", need, " ")
      for (i in need) if (!(need[i] in seen)) { print "missing " need[i]; bad = 1 }
      split("[Service]ExecStart [Service]Restart [Service]StateDirectory [Install]WantedBy", k, " ")
      for (i in k) if (!(k[i] in keys)) { print "missing key " k[i]; bad = 1 }
      exit bad
    }' "$unit" || { echo "deb_package: malformed unit" >&2; exit 1; }
fi
for key in 'Restart=on-failure' 'StateDirectory=zchat' 'NoNewPrivileges=yes' \
           'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
           'PrivateDevices=yes' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6'; do
  grep -qx "$key" "$unit" || { echo "deb_package: unit lacks $key" >&2; exit 1; }
done
grep -Eqx 'DynamicUser=yes|User=.+' "$unit" || { echo "deb_package: unit has no user" >&2; exit 1; }
echo "deb_package: ok"
