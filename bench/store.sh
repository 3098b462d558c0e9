#!/usr/bin/env bash
# bench/store.sh: the etcd state store against bbolt, in one run (issue 13).
#
# Two Go benchmarks, each side by side on both backends, alternated for
# ROUNDS rounds (no sockets; etcd is one real TLS member on loopback that
# internal/etcdtest starts and stops by PID):
#   - dhcp BenchmarkDORA: full DORAs through flint's DHCP handler, 16 clients
#     per CPU, every lease durable before its ACK; on etcd every offered
#     address is claimed (claims/<ip>, create-if-absent) and every ACK bound
#     (lease record + end of claim in one transaction);
#   - store BenchmarkRecord: one UpdateMachine plus one Record, the writes a
#     config delivery makes (state + timeline event).
# Reports ns/op, ops/s, medians of ROUNDS and the ratio bolt/etcd (how many
# times faster bbolt is). Appends the table to bench/README.md. Needs Debian's
# etcd-server (make deps). Run alone: never with another benchmark.
#
#   bench/store.sh
#
# Knobs: ROUNDS=3, DORAS=1000 (per DORA measurement), RECORDS=300 (per
# Record measurement), NO_README=1.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DORAS=${DORAS:-1000}
RECORDS=${RECORDS:-300}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
README="$ROOT/bench/README.md"
source "$ROOT/bench/lib.sh"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
command -v etcd >/dev/null || { echo "bench/store.sh: etcd not found: apt-get install etcd-server (make deps)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/flint-bench-store.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
log "building the benchmarks"
"$GO" test -c -o "$WORK/dhcp.test" ./dhcp
"$GO" test -c -o "$WORK/store.test" ./store

# nsop BIN BENCH N: ns/op of one benchmark run (its own etcd).
nsop() {
	local out
	out=$(cd "$WORK" && "./$1" -test.run '^$' -test.bench "^$2\$" -test.benchtime "$3x" 2>&1) || { echo "$out" >&2; return 1; }
	awk '$1 ~ /^Benchmark/ && $3 ~ /^[0-9.]+$/ && $4 == "ns/op" {print $3; exit}' <<<"$out"
}

declare -A R
for r in $(seq 1 "$ROUNDS"); do
	for b in bolt etcd; do
		R[dora_$b]+=" $(nsop dhcp.test "BenchmarkDORA/$b" "$DORAS")"
		R[record_$b]+=" $(nsop store.test "BenchmarkRecord/$b" "$RECORDS")"
		log "round $r $b: DORA ${R[dora_$b]##* } ns/op, Record ${R[record_$b]##* } ns/op"
	done
done

row() { # name key unit-label
	local bolt etcd
	bolt=$(median <<<"${R[${2}_bolt]}")
	etcd=$(median <<<"${R[${2}_etcd]}")
	printf '| %s | %.3f ms (%s/s) | %.3f ms (%s/s) | %s |\n' "$1" \
		"$(awk -v n="$bolt" 'BEGIN {print n / 1e6}')" "$(awk -v n="$bolt" 'BEGIN {printf "%.0f", 1e9 / n}')" \
		"$(awk -v n="$etcd" 'BEGIN {print n / 1e6}')" "$(awk -v n="$etcd" 'BEGIN {printf "%.0f", 1e9 / n}')" \
		"$(ratio "$etcd" "$bolt")"
}
REPORT=$(
	printf '### %s, store.sh: etcd store against bbolt\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'Medians of %s rounds, alternated; one etcd member on loopback (TLS, client certificates), this 2-core machine. ' "$ROUNDS"
	printf 'DORA: %s per measurement, 16 clients per CPU; Record: %s UpdateMachine+Record pairs.\n\n' "$DORAS" "$RECORDS"
	printf '| operation | bbolt (fsync per commit) | etcd (raft commit per write) | etcd / bbolt time |\n|---|---|---|---|\n'
	row "DHCP DORA (etcd: claim + bind)" dora
	row "config delivery writes (UpdateMachine + Record)" record
	printf '\nAll rounds (ns/op): DORA bolt%s, etcd%s; Record bolt%s, etcd%s.\n' "${R[dora_bolt]}" "${R[dora_etcd]}" "${R[record_bolt]}" "${R[record_etcd]}"
)
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s\n' "$REPORT" >>"$README"
fi
