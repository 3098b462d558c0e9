#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for FUZZTIME each, one after the
# other (2 cores: never two at once). FUZZTIME is a count of inputs (default
# 30000x: 15 s for the slowest target on a 2-core box, a second for the fastest),
# not a duration: with a duration Go 1.26's fuzz coordinator can report its own
# deadline as a failure ("context deadline exceeded", no input written), a race
# fixed only in Go 1.27 (golang/go#75804). A duration (10s) still works by hand.
# The committed seed corpora (PKG/testdata/fuzz/FuzzX/) also run in plain
# `go test`; this looks further.
# A failure leaves the crashing input in PKG/testdata/fuzz/FuzzX/ to commit.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30000x}
mapfile -t targets < <(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./.work/' | sort | while read -r f; do
  pkg=$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fn; do echo "$pkg $fn"; done
done)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
for t in "${targets[@]}"; do
  read -r pkg fn <<<"$t"
  echo "fuzz: $pkg $fn for $FUZZTIME"
  out=$(mktemp)
  if ! "$GO" test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$pkg" >"$out" 2>&1; then
    cat "$out"
    rm -f "$out"
    echo "fuzz: $pkg $fn failed; the input is in $pkg/testdata/fuzz/$fn/" >&2
    exit 1
  fi
  grep -E '^fuzz: elapsed' "$out" | tail -1
  rm -f "$out"
done
echo "fuzz: ${#targets[@]} targets ran for $FUZZTIME each"
