#!/usr/bin/env bash
# bench/dhcp.sh: DHCP DORA rate, flint against ISC Kea and dnsmasq, in one run.
#
# Creates two network namespaces joined by a veth pair (198.18.0.0/15 only):
# the server side (198.18.0.1) runs one server at a time, the client side
# (198.18.0.2) runs bench/dhcpload, which performs N full DORAs
# (DISCOVER/OFFER/REQUEST/ACK, a fresh MAC for each) with C concurrent
# clients. Each server starts from an empty lease database for every
# measurement, gets the same load and hands out a /16 pool
# (198.19.0.1-198.19.255.254):
#   - flint serve (built from this tree): dhcp.mode full, dhcp_port 67 on the
#     server veth, --log-level warn; leases fsynced before each ACK;
#   - kea-dhcp4 (Debian's kea-dhcp4-server): memfile lease file in the temp
#     dir, raw sockets (Kea's default), logging at WARN;
#   - dnsmasq (Debian's dnsmasq-base): --no-daemon --port=0, its own lease
#     file, --quiet-dhcp, --no-ping (no ICMP probe before an offer; Kea and
#     flint do not probe either), --dhcp-lease-max above N.
# Reports DORA/s, p50/p99 latency per DORA, server CPU ms per DORA
# (/proc/PID/stat utime+stime), NAKs, lost DORAs and duplicates (one address
# ACKed to two MACs: must be 0), medians of ROUNDS, servers alternated. After
# each flint run it counts flint's leases over /api/v1/leases (admin socket), kills flint with
# SIGKILL, reads the machine records offline with `flint machines` and
# restarts flint on the same data directory to count the leases it reloaded.
# Appends the table to bench/README.md. Run as root:
#
#   bench/dhcp.sh
#
# Knobs: N=20000 (DORAs per measurement), CLIENTS="16 64", ROUNDS=3,
# SERVERS="flint kea dnsmasq", MAX_SECONDS=90 (per measurement; a slower
# server is cut off and its DORA/s is over what it finished), NO_README=1,
# FLINT_BIN=path (use that flint binary instead of building this tree).
set -euo pipefail

N=${N:-20000}
CLIENTS=${CLIENTS:-"16 64"}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"flint kea dnsmasq"}
MAX_SECONDS=${MAX_SECONDS:-90}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [ "$(id -u)" != 0 ]; then
	echo "bench/dhcp.sh: run as root (network namespaces, port 67, packages)" >&2
	exit 1
fi

NS_SRV="fbd-srv-$$"
NS_CLI="fbd-cli-$$"
IF_SRV="fbds$$"
IF_CLI="fbdc$$"
SRV_IP=198.18.0.1
CLI_IP=198.18.0.2
POOL_START=198.19.0.1
POOL_END=198.19.255.254
HTTP_PORT=8080

WORK=""
SERVER_PID=""
POLICY_CREATED=""
NS_MADE=""
cleanup() {
	stop_pid "$SERVER_PID" 5
	if [ -n "$NS_MADE" ]; then
		ip netns del "$NS_SRV" 2>/dev/null || true
		ip netns del "$NS_CLI" 2>/dev/null || true
	fi
	if [ -n "$POLICY_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_missing() {
	local pkgs=()
	[ -x /usr/sbin/dnsmasq ] || pkgs+=(dnsmasq-base)
	[ -x /usr/sbin/kea-dhcp4 ] || pkgs+=(kea-dhcp4-server)
	command -v ip >/dev/null || pkgs+=(iproute2)
	command -v curl >/dev/null || pkgs+=(curl)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	log "installing ${pkgs[*]}"
	# Keep Debian's kea-dhcp4-server service from starting its own server.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	fi
	if [ -n "$POLICY_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=""; fi
}
install_missing
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d /tmp/flint-bench-dhcp.XXXXXX)
chmod 755 "$WORK"
log "building flint and dhcpload"
if [ -n "${FLINT_BIN:-}" ]; then
	cp "$FLINT_BIN" "$WORK/flint" # e.g. a build with a profiling hook
else
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
fi
CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/dhcpload" ./bench/dhcpload
FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)

# --- network ---------------------------------------------------------------
ip netns add "$NS_SRV"
NS_MADE=1
ip netns add "$NS_CLI"
ip link add "$IF_SRV" type veth peer name "$IF_CLI"
ip link set "$IF_SRV" netns "$NS_SRV"
ip link set "$IF_CLI" netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$SRV_IP/15" dev "$IF_SRV"
ip -n "$NS_CLI" addr add "$CLI_IP/15" dev "$IF_CLI"
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up
ip -n "$NS_SRV" link set "$IF_SRV" up
ip -n "$NS_CLI" link set "$IF_CLI" up

wait_udp67() { # PID
	for _ in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 1
		if ip netns exec "$NS_SRV" ss -Hulnp 'sport = :67' | grep -q "pid=$1,"; then return 0; fi
		sleep 0.1
	done
	return 1
}

wait_http() { # URL (inside the server namespace)
	for _ in $(seq 1 100); do
		if ip netns exec "$NS_SRV" curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

# --- servers ---------------------------------------------------------------
# Each start_* leaves the server's PID in SERVER_PID and its state under $WORK/$1.
start_flint() { # DIR
	local d=$1
	mkdir -p "$d/data" "$d/ipxe" "$d/www"
	cat >"$d/flint.yaml" <<EOF
server: {interface: $IF_SRV, address: $SRV_IP, listen: $SRV_IP, http_port: $HTTP_PORT, tftp_port: 69, dhcp_port: 67}
dhcp:
  mode: full
  subnet: 198.18.0.0/15
  router: $SRV_IP
  dns: [$SRV_IP]
  pool: {start: $POOL_START, end: $POOL_END}
  lease_time: 1h
ipxe: {directory: $d/ipxe}
boot: {assets_dir: $d/www}
cluster: {install_mode: live}
machines:
  - {mac: "02:00:00:00:00:01", hostname: bench1, ip: 198.18.0.10, role: server}
EOF
	ip netns exec "$NS_SRV" "$WORK/flint" serve --log-level warn --config "$d/flint.yaml" --data "$d/data" >>"$d/flint.out" 2>&1 &
	SERVER_PID=$!
	wait_udp67 "$SERVER_PID" && wait_http "http://$SRV_IP:$HTTP_PORT/healthz" || { cat "$d/flint.out" >&2; return 1; }
	FLINT_SOCK="$d/data/flint.sock"
}

start_kea() { # DIR
	local d=$1
	mkdir -p "$d"
	cat >"$d/kea.json" <<EOF
{
  "Dhcp4": {
    "interfaces-config": {"interfaces": ["$IF_SRV"]},
    "lease-database": {"type": "memfile", "persist": true, "name": "$d/kea-leases4.csv", "lfc-interval": 0},
    "valid-lifetime": 3600,
    "subnet4": [{
      "id": 1,
      "subnet": "198.18.0.0/15",
      "pools": [{"pool": "$POOL_START - $POOL_END"}],
      "option-data": [
        {"name": "routers", "data": "$SRV_IP"},
        {"name": "domain-name-servers", "data": "$SRV_IP"}
      ]
    }],
    "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "$d/kea.log"}], "severity": "WARN"}]
  }
}
EOF
	KEA_PIDFILE_DIR=$d KEA_LOCKFILE_DIR=none ip netns exec "$NS_SRV" /usr/sbin/kea-dhcp4 -c "$d/kea.json" >>"$d/kea.out" 2>&1 &
	SERVER_PID=$!
	wait_udp67 "$SERVER_PID" || { cat "$d/kea.out" "$d/kea.log" >&2 2>/dev/null; return 1; }
}

start_dnsmasq() { # DIR
	local d=$1
	mkdir -p "$d"
	: >"$d/dnsmasq.leases"
	ip netns exec "$NS_SRV" /usr/sbin/dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
		--user=root --group=root --pid-file="$d/dnsmasq.pid" \
		--interface="$IF_SRV" --bind-interfaces \
		--dhcp-range="$POOL_START,$POOL_END,255.254.0.0,1h" --dhcp-authoritative \
		--dhcp-option=option:router,$SRV_IP --dhcp-option=option:dns-server,$SRV_IP \
		--dhcp-leasefile="$d/dnsmasq.leases" --dhcp-lease-max=$((N * 2 + 1000)) \
		--no-ping --quiet-dhcp --log-facility="$d/dnsmasq.log" >>"$d/dnsmasq.out" 2>&1 &
	SERVER_PID=$!
	wait_udp67 "$SERVER_PID" || { cat "$d/dnsmasq.out" "$d/dnsmasq.log" >&2 2>/dev/null; return 1; }
}

# Leases each server has on disk after a run.
count_leases() { # SERVER DIR
	case $1 in
	dnsmasq) grep -c . "$2/dnsmasq.leases" || true ;;
	kea) tail -n +2 "$2/kea-leases4.csv" | cut -d, -f1 | sort -u | grep -c . || true ;;
	esac
}

api_bound() { # count bound leases flint reports (admin API over its socket)
	curl -fsS --unix-socket "$FLINT_SOCK" http://flint/api/v1/leases | grep -o '"state":"bound"' | wc -l
}

declare -A RES DISK
FLINT_CHECK=""
run_one() { # SERVER CLIENTS ROUND
	local srv=$1 c=$2 r=$3 d="$WORK/$1-$2-$3" out
	"start_$srv" "$d"
	sleep 0.3
	out=$(ip netns exec "$NS_CLI" "$WORK/dhcpload" -iface "$IF_CLI" -n "$N" -c "$c" -max "${MAX_SECONDS}s" \
		-pid "$SERVER_PID" -run "$r" -label "$srv")
	log "round $r, $c clients: $out"
	RES[$srv,$c]+="$out
"
	if [ "$srv" = flint ]; then
		local ok api offline reload
		ok=$(field "$out" ok)
		api=$(api_bound)
		kill -9 "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
		offline=$("$WORK/flint" machines --data "$d/data" --json | grep -c '"ip": "198\.19\.' || true)
		start_flint "$d"
		reload=$(api_bound)
		FLINT_CHECK+="
| $c | $r | $ok | $api | $offline | $reload |"
		log "flint leases: $ok ACKed, $api bound over the API, SIGKILL, $offline machine records with a pool address offline, $reload bound after restart"
		DISK[$srv,$c]+="$reload "
	else
		DISK[$srv,$c]+="$(count_leases "$srv" "$d") "
	fi
	stop_pid "$SERVER_PID" 5
	SERVER_PID=""
	rm -rf "$d"
}

for r in $(seq 1 "$ROUNDS"); do
	for c in $CLIENTS; do
		order=$SERVERS
		# Rotate which server goes first, so drift favours none.
		for _ in $(seq 2 "$r"); do order="$(cut -d' ' -f2- <<<"$order") $(cut -d' ' -f1 <<<"$order")"; done
		for srv in $order; do
			run_one "$srv" "$c" "$r"
		done
	done
done

# --- report ----------------------------------------------------------------
TABLE="| clients | server | DORA/s | vs Kea | p50 ms | p99 ms | CPU ms/DORA | NAKs | lost | dups | leases on disk |
|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for c in $CLIENTS; do
	kea_rate=""
	if grep -qw kea <<<"$SERVERS"; then
		kea_rate=$(grep . <<<"${RES[kea,$c]}" | while read -r l; do field "$l" dora_s; done | median)
	fi
	for srv in $SERVERS; do
		col() { grep . <<<"${RES[$srv,$c]}" | while read -r l; do field "$l" "$1"; done | median; }
		sum() { grep . <<<"${RES[$srv,$c]}" | while read -r l; do field "$l" "$1"; done | awk '{s += $1} END {print s + 0}'; }
		rate=$(col dora_s)
		ratio=$(awk -v a="$rate" -v b="$kea_rate" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
		disk=$(tr ' ' '\n' <<<"${DISK[$srv,$c]}" | grep . | median)
		TABLE+="
| $c | $srv | $rate | $ratio | $(col p50_ms) | $(col p99_ms) | $(col cpu_ms_per_dora) | $(sum naks) | $(sum lost) | $(sum dups) | $disk |"
	done
done

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
KEA_V=$(/usr/sbin/kea-dhcp4 -v 2>/dev/null | head -1)
DNSMASQ_V=$(/usr/sbin/dnsmasq --version | head -1 | awk '{print $3}')
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT="### dhcp.sh: $DATE, $(hostname)

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). Servers and load generator share the cores; veth between two namespaces.
Load average before the run: $LOAD_BEFORE (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), Kea $KEA_V, dnsmasq $DNSMASQ_V.
Load: $N DORAs per measurement (a new MAC each), at most ${MAX_SECONDS}s; medians of $ROUNDS rounds (fresh lease database each, servers rotated); NAKs, lost and dups summed over the rounds. Leases on disk: flint's bound leases after SIGKILL and restart; Kea's and dnsmasq's lease files.

$TABLE

flint lease durability (per run: ACKs the clients got, bound leases over /api/v1/leases, machine records with a pool address read offline after SIGKILL, bound leases after restart):

| clients | round | ACKed | API | offline records | after restart |
|--:|--:|--:|--:|--:|--:|$FLINT_CHECK
"
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
