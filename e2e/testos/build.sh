#!/usr/bin/env bash
# Builds the small test OS the e2e suite boots from flint:
#   CACHE/testos/KEY/vmlinuz          a Debian 6.1 kernel (apt-get download + dpkg -x)
#   CACHE/testos/KEY/initrd.cpio.gz   busybox-static, the NIC modules, the real
#                                     Ignition client, Debian's curl (+ the shared
#                                     libraries both need) and e2e/testos/init as /init
#   CACHE/testos/KEY/manifest.txt     the inputs KEY was computed from
#
#   e2e/testos/build.sh CACHE      prints the directory on its last line
#
# The Ignition client comes from scripts/build-ignition.sh, built into
# $FLINT_IGNITION_BIN (make test sets it) or CACHE/ignition-bin.
#
# curl is there because the test OS reports to flint the way a Flatcar node's
# flint-report does: over HTTPS, checking flint's CA, with the report token the
# config laid down (busybox wget cannot verify a certificate).
#
# KEY is a hash of every input (kernel package version, busybox version, the
# Ignition and curl binaries and their libraries, the scripts in this folder),
# so a rerun with nothing changed returns at once and a changed input builds a
# new directory.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
CACHE=$(cd "$1" && pwd)
log() { echo "testos: $*" >&2; }

# One build at a time per cache (make lab and make e2e may start together).
exec 9>"$CACHE/.lock"
flock 9

need() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing programs: ${missing[*]} (run scripts/install-deps.sh)"
    exit 1
  fi
}
need apt-get apt-cache dpkg dpkg-deb cpio gzip strip sha256sum flock ldd
CURL=/usr/bin/curl
[ -x "$CURL" ] || { log "$CURL missing (Debian package curl)"; exit 1; }
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || { log "$BUSYBOX missing (Debian package busybox-static)"; exit 1; }
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  log "$BUSYBOX is dynamically linked: install busybox-static (not busybox)"
  exit 1
fi

# 1. The real Ignition client (idempotent; seconds when already built).
# FLINT_IGNITION_BIN is where `make test` builds it for the other tests too.
IGNITION_DIR=${FLINT_IGNITION_BIN:-$CACHE/ignition-bin}
"$REPO/scripts/build-ignition.sh" "$IGNITION_DIR" >&2
IGNITION="$IGNITION_DIR/ignition"

# 2. The newest Debian 6.1 kernel package the mirror has. Debian drops old ABI
# versions from its mirror, so a pinned one would stop working one day.
pick_kernel() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1
}
KPKG=$(pick_kernel)
if [ -z "$KPKG" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "apt-cache knows no linux-image-6.1.0-*-amd64 package; run: sudo apt-get update"
    exit 1
  fi
  log "apt-cache knows no linux-image-6.1.0-*-amd64: apt-get update"
  apt-get update -qq
  KPKG=$(pick_kernel)
  [ -n "$KPKG" ] || { log "no linux-image-6.1.0-*-amd64 package on the mirror"; exit 1; }
fi
KVER=$(apt-cache policy "$KPKG" | awk '/Candidate:/ {print $2}')

manifest() {
  echo "kernel $KPKG $KVER"
  echo "busybox $(dpkg-query -W -f='${Version}' busybox-static)"
  echo "ignition $(sha256sum "$IGNITION" | cut -c1-64)"
  echo "curl $(dpkg-query -W -f='${Version}' curl) $(sha256sum "$CURL" | cut -c1-64)"
  for lib in $(runtime_libs); do echo "lib $lib $(sha256sum "$lib" | cut -c1-64)"; done
  for f in build.sh init udhcpc.script; do echo "script $f $(sha256sum "$HERE/$f" | cut -c1-64)"; done
}

# runtime_libs lists the shared objects (and the loader) Ignition and curl
# need: Ignition links libblkid with cgo, curl links libcurl and OpenSSL, and
# the initramfs has no glibc of its own.
runtime_libs() {
  ldd "$IGNITION" "$CURL" | awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u
}

MANIFEST=$(manifest)
KEY=$(echo "$MANIFEST" | sha256sum | cut -c1-16)
OUT="$CACHE/testos/$KEY"
if [ -s "$OUT/initrd.cpio.gz" ] && [ -s "$OUT/vmlinuz" ]; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi
log "building $OUT"
start=$SECONDS
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 3. The kernel package, kept between builds (70 MB).
DEBS="$CACHE/debs"
mkdir -p "$DEBS"
DEB=$(ls "$DEBS/${KPKG}_"*"_amd64.deb" 2>/dev/null | head -1 || true)
if [ -z "$DEB" ]; then
  log "apt-get download $KPKG ($KVER)"
  # Download into a directory apt's sandbox user (_apt) may write to.
  dl=$(mktemp -d)
  chown _apt "$dl" 2>/dev/null || true
  if ! (cd "$dl" && apt-get download -q "$KPKG" >&2); then
    # Stale package lists name a file the mirror no longer has.
    [ "$(id -u)" -eq 0 ] || { log "apt-get download $KPKG failed; try: sudo apt-get update"; exit 1; }
    log "apt-get download failed: apt-get update and retry"
    apt-get update -qq
    (cd "$dl" && apt-get download -q "$KPKG" >&2)
  fi
  mv "$dl"/*.deb "$DEBS/"
  rm -rf "$dl"
  DEB=$(ls "$DEBS/${KPKG}_"*"_amd64.deb" | head -1)
fi
dpkg-deb -x "$DEB" "$WORK/kernel"
KREL=$(ls "$WORK/kernel/lib/modules")
cp "$WORK/kernel/boot/vmlinuz-$KREL" "$WORK/vmlinuz"

# 4. The initramfs tree.
ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,run,tmp,sysroot,etc,usr/bin,usr/lib/ignition,lib/modules/"$KREL"}
cp "$BUSYBOX" "$ROOT/bin/busybox"
for app in $("$BUSYBOX" --list); do
  [ -e "$ROOT/bin/$app" ] || ln -s busybox "$ROOT/bin/$app"
done
install -m 0755 "$HERE/init" "$ROOT/init"
install -m 0755 "$HERE/udhcpc.script" "$ROOT/etc/udhcpc.script"
strip -o "$ROOT/usr/bin/ignition" "$IGNITION"
cp "$CURL" "$ROOT/usr/bin/curl"
for lib in $(runtime_libs); do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done

# The NIC drivers and what they depend on. The .deb ships no modules.dep
# (depmod runs at install time), so let busybox depmod compute it, copy the
# closure, and compute it again for the initramfs (busybox modprobe reads it).
MODS="$WORK/kernel/lib/modules/$KREL"
"$BUSYBOX" depmod -b "$WORK/kernel" "$KREL"
closure() {
  local m=$1 line
  line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$MODS/modules.dep") || { log "module $m not in $KPKG"; exit 1; }
  echo "${line%%:*}"
  for dep in ${line#*:}; do
    closure "$(basename "$dep" | sed -E 's/\.ko(\.[a-z]+)?$//')"
  done
}
for m in virtio_pci virtio_net e1000 efivarfs; do
  closure "$m"
done | sort -u | while read -r rel; do
  mkdir -p "$ROOT/lib/modules/$KREL/$(dirname "$rel")"
  cp "$MODS/$rel" "$ROOT/lib/modules/$KREL/$rel"
done
"$BUSYBOX" depmod -b "$ROOT" "$KREL"

(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -6 -n > "$WORK/initrd.cpio.gz"
echo "$MANIFEST" > "$WORK/manifest.txt"
mkdir -p "$OUT"
mv "$WORK/vmlinuz" "$WORK/initrd.cpio.gz" "$WORK/manifest.txt" "$OUT/"
# Older builds and kernel packages are of no further use (an hour's grace
# for a concurrent run that is still copying its build).
find "$CACHE/testos" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -mmin +60 -exec rm -rf {} +
find "$DEBS" -name '*.deb' ! -name "${KPKG}_*" -delete
log "built in $((SECONDS - start)) s: kernel $KREL, initrd $(du -h "$OUT/initrd.cpio.gz" | cut -f1)"
echo "$OUT"
