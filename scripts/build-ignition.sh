#!/usr/bin/env bash
# Builds the real Ignition clients that flint's configs are tested against:
#   DIR/ignition         github.com/coreos/ignition/v2 (spec 3.x, what current Flatcar runs)
#   DIR/ignition-legacy  github.com/flatcar/ignition   (spec 2.x, what old Flatcar runs)
#
#   scripts/build-ignition.sh DIR
#
# Idempotent: a binary that exists and reports the pinned version is kept.
# Both need cgo and libblkid (Ignition links it to inspect disks); libblkid-dev
# is installed with apt-get when it is missing and we are root.
# Cold build ~90 s for both on 2 cores; with a warm Go build cache a few seconds.
set -euo pipefail

IGNITION_VERSION=v2.27.0
LEGACY_VERSION=v0.36.2

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

# up_to_date BIN VERSION: the binary exists and was built at VERSION.
up_to_date() {
  [ -x "$1" ] && "$1" -version 2>&1 | grep -qF -- "$2"
}

ensure_blkid() {
  if pkg-config --exists blkid 2>/dev/null; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-ignition: libblkid-dev is missing; run: sudo apt-get install -y libblkid-dev pkg-config" >&2
    exit 1
  fi
  echo "build-ignition: installing libblkid-dev"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libblkid-dev pkg-config gcc libc6-dev >/dev/null
}

if up_to_date "$DIR/ignition" "$IGNITION_VERSION" && up_to_date "$DIR/ignition-legacy" "$LEGACY_VERSION"; then
  echo "build-ignition: $DIR/ignition ($IGNITION_VERSION) and $DIR/ignition-legacy ($LEGACY_VERSION) already built"
  exit 0
fi

ensure_blkid
export CGO_ENABLED=1

if ! up_to_date "$DIR/ignition" "$IGNITION_VERSION"; then
  echo "build-ignition: building github.com/coreos/ignition/v2 $IGNITION_VERSION"
  start=$SECONDS
  # go install of a module@version needs no module of ours; the package is
  # called internal, so the binary is named internal: install into a temp
  # GOBIN and rename.
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  GOBIN=$gobin GOFLAGS=-mod=mod "$GO" install -ldflags "\
-X github.com/coreos/ignition/v2/internal/version.Raw=$IGNITION_VERSION \
-X github.com/coreos/ignition/v2/internal/distro.selinuxRelabel=false" \
    "github.com/coreos/ignition/v2/internal@$IGNITION_VERSION"
  mv "$gobin/internal" "$DIR/ignition"
  echo "build-ignition: $DIR/ignition built in $((SECONDS - start)) s"
fi

if ! up_to_date "$DIR/ignition-legacy" "$LEGACY_VERSION"; then
  echo "build-ignition: building github.com/flatcar/ignition $LEGACY_VERSION"
  start=$SECONDS
  # The legacy module has no go install-able main at a path outside
  # internal/, and `go install pkg@version` refuses modules with replace
  # directives: build it from a throwaway module that requires it.
  mod=$(mktemp -d)
  trap 'rm -rf "$gobin" "$mod"' EXIT
  (
    cd "$mod"
    "$GO" mod init flint.local/ignition-legacy >/dev/null 2>&1
    GOFLAGS=-mod=mod "$GO" get "github.com/flatcar/ignition/internal@$LEGACY_VERSION" >/dev/null
    "$GO" build -ldflags "\
-X github.com/flatcar/ignition/internal/version.Raw=$LEGACY_VERSION \
-X github.com/flatcar/ignition/internal/distro.selinuxRelabel=false" \
      -o "$DIR/ignition-legacy" github.com/flatcar/ignition/internal
  )
  echo "build-ignition: $DIR/ignition-legacy built in $((SECONDS - start)) s"
fi
