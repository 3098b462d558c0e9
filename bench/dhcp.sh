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
# SERVERS="flint flint-etcd" (issue 13) adds flint-etcd: the same flint binary
# and config with store.backend etcd, on a real TLS etcd of ETCD_MEMBERS
# members (Debian's etcd-server; bench/etcdrun starts it through
# internal/etcdtest and stops it by PID). etcd runs inside the server
# namespace, on its loopback, so flint reaches it at 127.0.0.1 there; the
# cluster lives for the whole run and every flint-etcd measurement gets a
# store prefix of its own (an empty store, like the other servers' empty
# lease files). flint-etcd gets the durability check flint gets (flint
# machines reads the records from etcd). The report then adds a table of
# bbolt against etcd (DORA/s and their ratio, p50/p99, flint's CPU and the
# etcd members' CPU per DORA) and the etcd requests per DORA (gRPC calls by
# method, raft proposals, WAL fsyncs, from the members' /metrics). Needs
# etcd-server (installed when missing). A run of about 5 minutes:
#
#   SERVERS="flint flint-etcd" N=3000 CLIENTS="16 64" ROUNDS=3 bench/dhcp.sh
#
# Knobs: N=20000 (DORAs per measurement), CLIENTS="16 64", ROUNDS=3,
# SERVERS="flint kea dnsmasq" (any of flint, flint-etcd, kea, dnsmasq),
# MAX_SECONDS=90 (per measurement; a slower server is cut off and its DORA/s
# is over what it finished), ETCD_MEMBERS=3, ETCD_N=N (DORAs per flint-etcd
# measurement), NO_README=1, FLINT_BIN=path (use that flint binary instead of
# building this tree).
set -euo pipefail

N=${N:-20000}
CLIENTS=${CLIENTS:-"16 64"}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"flint kea dnsmasq"}
MAX_SECONDS=${MAX_SECONDS:-90}
ETCD_MEMBERS=${ETCD_MEMBERS:-3}
ETCD_N=${ETCD_N:-$N}

for srv in $SERVERS; do
	case $srv in
	flint | flint-etcd | kea | dnsmasq) ;;
	*) echo "bench/dhcp.sh: unknown server $srv in SERVERS (flint, flint-etcd, kea, dnsmasq)" >&2; exit 2 ;;
	esac
done
has() { [[ " $(echo $SERVERS) " == *" $1 "* ]]; } # SERVER: whether SERVERS names it
WITH_ETCD=""
if has flint-etcd; then WITH_ETCD=1; fi

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
ETCD_PID=""
POLICY_CREATED=""
NS_MADE=""
cleanup() {
	# Only the processes this script started, by PID.
	stop_pid "$SERVER_PID" 5
	stop_pid "$ETCD_PID" # etcdrun: it stops its members by PID
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
	if [ -n "$WITH_ETCD" ]; then command -v etcd >/dev/null || pkgs+=(etcd-server); fi
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
if [ -n "$WITH_ETCD" ]; then "$GO" build -trimpath -o "$WORK/etcdrun" ./bench/etcdrun; fi
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

if [ -n "$WITH_ETCD" ]; then
	# In the server namespace: its 127.0.0.1 is where flint-etcd runs.
	log "starting a $ETCD_MEMBERS-member TLS etcd on 127.0.0.1 in $NS_SRV (bench/etcdrun)"
	etcd_start "$WORK/etcdrun" "$WORK" "$ETCD_MEMBERS" "$NS_SRV" || exit 1
fi

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
# start_flint: on bbolt, or on the store section in DIR/store.yaml if there is one.
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
	if [ -f "$d/store.yaml" ]; then cat "$d/store.yaml" >>"$d/flint.yaml"; fi
	ip netns exec "$NS_SRV" "$WORK/flint" serve --log-level warn --config "$d/flint.yaml" --data "$d/data" >>"$d/flint.out" 2>&1 &
	SERVER_PID=$!
	wait_udp67 "$SERVER_PID" && wait_http "http://$SRV_IP:$HTTP_PORT/healthz" || { cat "$d/flint.out" >&2; return 1; }
	FLINT_SOCK="$d/data/flint.sock"
}

# flint-etcd: flint on the run's etcd, under a store prefix of its own (an
# empty store); a restart on DIR keeps the prefix.
start_flint_etcd() { # DIR
	local d=$1
	mkdir -p "$d"
	sed "s|^  prefix: .*|  prefix: /flint/bench/$(basename "$d")/|" "$WORK/store.yaml" >"$d/store.yaml"
	start_flint "$d"
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

declare -A RES DISK CHECK ECOUNT
EOK=0 # flint-etcd's DORAs measured, for ECOUNT (etcd requests in them)
run_one() { # SERVER CLIENTS ROUND
	local srv=$1 c=$2 r=$3 d="$WORK/$1-$2-$3" out n=$N counts0="" eticks0=0 ok
	if [ "$srv" = flint-etcd ]; then n=$ETCD_N; fi
	"start_${srv//-/_}" "$d"
	sleep 0.3
	if [ "$srv" = flint-etcd ]; then
		counts0=$(etcd_counts)
		eticks0=$(cpu_ticks "$ETCD_PID") # etcdrun and its members
	fi
	out=$(ip netns exec "$NS_CLI" "$WORK/dhcpload" -iface "$IF_CLI" -n "$n" -c "$c" -max "${MAX_SECONDS}s" \
		-pid "$SERVER_PID" -run "$r" -label "$srv")
	ok=$(field "$out" ok)
	if [ "$srv" = flint-etcd ]; then
		local eticks
		eticks=$(($(cpu_ticks "$ETCD_PID") - eticks0))
		out+=" etcd_cpu_ms=$(awk -v t="$eticks" -v n="$ok" 'BEGIN {if (n > 0) printf "%.3f", t * 10 / n; else print "na"}')"
		while read -r name k; do
			ECOUNT[$name]=$((${ECOUNT[$name]:-0} + k))
		done < <(etcd_delta "$counts0" "$(etcd_counts)")
		EOK=$((EOK + ok))
	fi
	log "round $r, $c clients: $out"
	RES[$srv,$c]+="$out
"
	if [ "$srv" = flint ] || [ "$srv" = flint-etcd ]; then
		local api offline reload
		api=$(api_bound)
		kill -9 "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
		if [ "$srv" = flint ]; then
			offline=$("$WORK/flint" machines --data "$d/data" --json | grep -c '"ip": "198\.19\.' || true)
		else # the records are in etcd, reachable in the server namespace only
			offline=$(ip netns exec "$NS_SRV" "$WORK/flint" machines --config "$d/flint.yaml" --data "$d/data" --json | grep -c '"ip": "198\.19\.' || true)
		fi
		start_flint "$d"
		reload=$(api_bound)
		CHECK[$srv]+="
| $c | $r | $ok | $api | $offline | $reload |"
		log "$srv leases: $ok ACKed, $api bound over the API, SIGKILL, $offline machine records with a pool address offline, $reload bound after restart"
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

# bbolt against etcd: flint against flint-etcd, clients by clients.
rcol() { grep . <<<"${RES[$1,$2]}" | while read -r l; do field "$l" "$3"; done | median; }                    # SERVER CLIENTS FIELD: median
rsum() { grep . <<<"${RES[$1,$2]}" | while read -r l; do field "$l" "$3"; done | awk '{s += $1} END {print s + 0}'; } # SERVER CLIENTS FIELD: sum
ETCD_REPORT=""
HEADING="dhcp.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
VERSIONS="Kea $(/usr/sbin/kea-dhcp4 -v 2>/dev/null | head -1), dnsmasq $(/usr/sbin/dnsmasq --version | head -1 | awk '{print $3}')"
LOAD="$N DORAs per measurement"
if [ -n "$WITH_ETCD" ]; then
	ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/^etcd Version:/ {print $3}')
	HEADING+=", flint on bbolt and on etcd"
	VERSIONS+=", etcd $ETCD_VERSION"
	[ "$ETCD_N" = "$N" ] || LOAD+=" ($ETCD_N for flint-etcd)"
	if has flint; then
		ETABLE="| clients | bbolt DORA/s | etcd DORA/s | bbolt / etcd | p50 ms bbolt / etcd | p99 ms bbolt / etcd | flint CPU ms/DORA bbolt / etcd | etcd CPU ms/DORA | NAKs, lost, dups bbolt / etcd |
|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
		for c in $CLIENTS; do
			ETABLE+="
| $c | $(rcol flint "$c" dora_s) | $(rcol flint-etcd "$c" dora_s) | $(ratio "$(rcol flint "$c" dora_s)" "$(rcol flint-etcd "$c" dora_s)") | $(rcol flint "$c" p50_ms) / $(rcol flint-etcd "$c" p50_ms) | $(rcol flint "$c" p99_ms) / $(rcol flint-etcd "$c" p99_ms) | $(rcol flint "$c" cpu_ms_per_dora) / $(rcol flint-etcd "$c" cpu_ms_per_dora) | $(rcol flint-etcd "$c" etcd_cpu_ms) | $(rsum flint "$c" naks), $(rsum flint "$c" lost), $(rsum flint "$c" dups) / $(rsum flint-etcd "$c" naks), $(rsum flint-etcd "$c" lost), $(rsum flint-etcd "$c" dups) |"
		done
	else
		ETABLE="(no flint on bbolt in SERVERS: nothing to compare)"
	fi
	PER=$(for name in "${!ECOUNT[@]}"; do echo "$name ${ECOUNT[$name]}"; done | etcd_per "$EOK")
	ETCD_REPORT="
flint on bbolt (flint) against flint on etcd (flint-etcd): the same binary and config, a $ETCD_MEMBERS-member etcd $ETCD_VERSION on 127.0.0.1 inside the server namespace (TLS, client certificates; on the same $(nproc) cores), one cluster for the run and a fresh store prefix per measurement. bbolt / etcd is how many times more DORAs per second flint completes on bbolt; flint CPU is flint's process only, etcd CPU all members together (10 ms ticks). Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg).

$ETABLE

etcd per DORA (the members' /metrics over all $EOK measured flint-etcd DORAs, flint's background work included; gRPC calls by method, raft proposals committed, WAL fsyncs summed over the members): ${PER:-none}.

flint-etcd lease durability (as flint's; the offline records are read from etcd):

| clients | round | ACKed | API | offline records | after restart |
|--:|--:|--:|--:|--:|--:|${CHECK[flint-etcd]:-}
"
fi

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
REPORT="### $HEADING

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). Servers and load generator share the cores; veth between two namespaces.
Load average before the run: $LOAD_BEFORE (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), $VERSIONS.
Load: $LOAD (a new MAC each), at most ${MAX_SECONDS}s; medians of $ROUNDS rounds (fresh lease database each, servers rotated); NAKs, lost and dups summed over the rounds. Leases on disk: flint's bound leases after SIGKILL and restart; Kea's and dnsmasq's lease files.

$TABLE

flint lease durability (per run: ACKs the clients got, bound leases over /api/v1/leases, machine records with a pool address read offline after SIGKILL, bound leases after restart):

| clients | round | ACKed | API | offline records | after restart |
|--:|--:|--:|--:|--:|--:|${CHECK[flint]:-}
$ETCD_REPORT"
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
