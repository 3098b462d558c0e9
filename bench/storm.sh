#!/usr/bin/env bash
# bench/storm.sh: a boot storm of N simulated NUCs against flint, measured
# against the link's own capacity in the same run.
#
# Creates two network namespaces joined by a veth pair (198.18.0.0/15 only):
#   - server side (198.18.0.1/16): `flint serve` (built from this tree) in
#     dhcp.mode full on the veth, every NUC in its config with a reservation
#     (3 servers + N-3 agents, cluster.install_mode live: no installer step),
#     --log-level warn; next to it `storm floor-serve`, a bare net/http file
#     server (sendfile) on port 9080 of the same address;
#   - client side (198.18.0.2/16, plus every NUC's reserved address as a /32 on
#     the same veth): bench/storm powers on all N NUCs at once. Each does what
#     a real one does: PXE DHCP, TFTP ipxe.efi, iPXE DHCP, /boot.ipxe and its
#     per-MAC script, kernel, initrd, the pointer config (HTTP), the secret
#     config (HTTPS, trusting only the pointer's CA), the config's remote files
#     (k3s, etcd: sha512-checked), and the reports config-applied and k3s-up
#     with the config's report token. Every TFTP/HTTP socket of a NUC is bound
#     to the address flint leased to its MAC (flint's trust rule checks it).
# The same client measures the link's capacity with 8 plain parallel
# downloads from the floor server before and after the storm; the bandwidth
# floor is the bytes the NUCs received up to their configs over the better of
# the two. Reports time to the last NUC's config against that floor, each
# phase's p50/p99, failures by phase, flint's CPU time and peak RSS
# (/proc/PID/stat, VmHWM after clear_refs), and appends it to
# bench/README.md. Run as root, one benchmark at a time:
#
#   flock /tmp/flint-heavy.lock bench/storm.sh
#
# Boot files are scaled down (SCALE): Flatcar's PXE kernel ~60 MB, initrd
# ~450 MB, k3s ~70 MB, etcd ~23 MB, etcdctl ~17 MB, each divided by SCALE
# (random bytes); ipxe.efi is Debian's, unscaled.
#
# Knobs: N=200, SCALE (default 10 up to N=500, else 90), RAMP=0s (spread the
# power-ons over this long), MAX=15m, CAP_STREAMS=8, CAP_TIME=5s, NO_README=1,
# START_TIMEOUT=1800 (seconds flint may take to start with N machines),
# TFTP_CAP / CONN_CAP (limits.tftp_transfers / http_connections; default 2N / 4N,
# at least flint's defaults 512 / 4096),
# FLINT_BIN=path (another flint binary), PPROF=127.0.0.1:6060 (that binary's
# pprof address inside the server namespace: a CPU profile of PPROF_SECONDS=20
# starting PPROF_DELAY=1 s into the storm goes to PPROF_OUT=/tmp/storm-cpu.pprof,
# heap profiles before and after the storm to PPROF_OUT.heap-start and .heap),
# STORM_PROFILE=file (the load generator's own CPU profile of the storm).
set -euo pipefail

N=${N:-200}
if [ -z "${SCALE:-}" ]; then
	if [ "$N" -le 500 ]; then SCALE=10; else SCALE=90; fi
fi
RAMP=${RAMP:-0s}
MAX=${MAX:-15m}
CAP_STREAMS=${CAP_STREAMS:-8}
CAP_TIME=${CAP_TIME:-5s}
START_TIMEOUT=${START_TIMEOUT:-1800}
PPROF=${PPROF:-}
PPROF_SECONDS=${PPROF_SECONDS:-20}
PPROF_DELAY=${PPROF_DELAY:-1}
PPROF_OUT=${PPROF_OUT:-/tmp/storm-cpu.pprof}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [ "$(id -u)" != 0 ]; then
	echo "bench/storm.sh: run as root (network namespaces, ports 67/69)" >&2
	exit 1
fi

NS_SRV="fbs-srv-$$"
NS_CLI="fbs-cli-$$"
IF_SRV="fbss$$"
IF_CLI="fbsc$$"
SRV_IP=198.18.0.1
CLI_IP=198.18.0.2
HTTP_PORT=8080
HTTPS_PORT=8443
FLOOR_PORT=9080

WORK=""
FLINT_PID=""
FLOOR_PID=""
PPROF_PID=""
NS_MADE=""
cleanup() {
	stop_pid "$PPROF_PID" 5
	stop_pid "$FLINT_PID" 5
	stop_pid "$FLOOR_PID" 5
	if [ -n "$NS_MADE" ]; then
		ip netns del "$NS_SRV" 2>/dev/null || true
		ip netns del "$NS_CLI" 2>/dev/null || true
	fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pkgs=()
[ -e /usr/lib/ipxe/ipxe.efi ] || pkgs+=(ipxe)
command -v ip >/dev/null || pkgs+=(iproute2)
command -v curl >/dev/null || pkgs+=(curl)
if [ ${#pkgs[@]} -gt 0 ]; then
	log "installing ${pkgs[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	fi
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d /tmp/flint-bench-storm.XXXXXX)
chmod 755 "$WORK"
log "building flint and storm"
if [ -n "${FLINT_BIN:-}" ]; then
	cp "$FLINT_BIN" "$WORK/flint" # e.g. a build with a profiling hook
else
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
fi
CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/storm" ./bench/storm
FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)
[ -n "${FLINT_BIN:-}" ] && FLINT_VERSION="$FLINT_VERSION (FLINT_BIN=$FLINT_BIN)"

# --- files -----------------------------------------------------------------
# Real sizes in bytes, divided by SCALE: random bytes, so nothing compresses.
mkdir -p "$WORK/ipxe" "$WORK/www/flatcar" "$WORK/www/k3s" "$WORK/www/etcd" "$WORK/floor" "$WORK/data"
cp -L /usr/lib/ipxe/ipxe.efi "$WORK/ipxe/ipxe.efi"
chmod 644 "$WORK/ipxe/ipxe.efi"
KERNEL="$WORK/www/flatcar/flatcar_production_pxe.vmlinuz"
INITRD="$WORK/www/flatcar/flatcar_production_pxe_image.cpio.gz"
mkfile() { head -c "$(($2 / SCALE))" /dev/urandom >"$1"; }
mkfile "$KERNEL" 60000000
mkfile "$INITRD" 450000000
mkfile "$WORK/www/k3s/k3s" 70000000
mkfile "$WORK/www/etcd/etcd" 23000000
mkfile "$WORK/www/etcd/etcdctl" 17000000
head -c $((256 << 20)) /dev/urandom >"$WORK/floor/big.bin"
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1e6}'; }
SIZES="kernel $(mb "$(size "$KERNEL")") MB, initrd $(mb "$(size "$INITRD")") MB, k3s $(mb "$(size "$WORK/www/k3s/k3s")") MB, etcd $(mb "$(size "$WORK/www/etcd/etcd")") MB + etcdctl $(mb "$(size "$WORK/www/etcd/etcdctl")") MB (servers only), ipxe.efi $(size "$WORK/ipxe/ipxe.efi") bytes"
log "files: $SIZES"

# --- network ---------------------------------------------------------------
ip netns add "$NS_SRV"
NS_MADE=1
ip netns add "$NS_CLI"
ip link add "$IF_SRV" type veth peer name "$IF_CLI"
ip link set "$IF_SRV" netns "$NS_SRV"
ip link set "$IF_CLI" netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$SRV_IP/16" dev "$IF_SRV"
ip -n "$NS_CLI" addr add "$CLI_IP/16" dev "$IF_CLI"
for ns in "$NS_SRV" "$NS_CLI"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SRV" link set "$IF_SRV" up
ip -n "$NS_CLI" link set "$IF_CLI" up
CLI_MAC=$(ip -n "$NS_CLI" -o link show "$IF_CLI" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
"$WORK/storm" gen -n "$N" -dev "$IF_CLI" -srv-dev "$IF_SRV" -lladdr "$CLI_MAC" -dir "$WORK"
# Every NUC's reserved address on the client veth. In the server namespace a
# permanent neighbour entry per NUC: the kernel's ARP table limit
# (net.ipv4.neigh.default.gc_thresh3, 1024 by default) is global to all
# namespaces, and permanent entries do not count against it.
ip -n "$NS_CLI" -batch "$WORK/addrs.batch"
ip -n "$NS_SRV" -batch "$WORK/neigh.batch"

# --- flint -----------------------------------------------------------------
# Caps: every NUC has its own address, so the per-client defaults hold; the
# totals' defaults (512 TFTP transfers, 4096 connections per listener) take a
# storm of ~250 NUCs, a larger one gets 2N and 4N (README "Sizing").
TFTP_CAP=${TFTP_CAP:-$((N * 2 > 512 ? N * 2 : 512))}
CONN_CAP=${CONN_CAP:-$((N * 4 > 4096 ? N * 4 : 4096))}
{
	cat <<EOF
server: {interface: $IF_SRV, address: $SRV_IP, listen: $SRV_IP, http_port: $HTTP_PORT, https_port: $HTTPS_PORT, tftp_port: 69, dhcp_port: 67}
dhcp:
  mode: full
  subnet: 198.18.0.0/16
  router: $SRV_IP
  dns: [$SRV_IP]
  domain: storm.test
  lease_time: 1h
ipxe: {directory: $WORK/ipxe}
boot:
  assets_dir: $WORK/www
  kernel: flatcar/flatcar_production_pxe.vmlinuz
  initrd: flatcar/flatcar_production_pxe_image.cpio.gz
limits: {tftp_transfers: $TFTP_CAP, http_connections: $CONN_CAP}
cluster: {name: storm, install_mode: live}
EOF
	cat "$WORK/machines.yaml"
} >"$WORK/flint.yaml"

log "starting flint with $N machines"
T_START=$(date +%s.%N)
ip netns exec "$NS_SRV" "$WORK/flint" serve --log-level warn --config "$WORK/flint.yaml" --data "$WORK/data" >"$WORK/flint.out" 2>&1 &
FLINT_PID=$!
ready=""
# flint checks one machine of each kind before it serves (START_TIMEOUT bounds it).
for _ in $(seq 1 $((START_TIMEOUT * 10))); do
	kill -0 "$FLINT_PID" 2>/dev/null || break
	if ip netns exec "$NS_SRV" ss -Hulnp 'sport = :67' | grep -q "pid=$FLINT_PID," &&
		ip netns exec "$NS_SRV" curl -fsS -o /dev/null "http://$SRV_IP:$HTTP_PORT/healthz" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ -z "$ready" ]; then
	cat "$WORK/flint.out" >&2
	echo "bench: flint did not start" >&2
	exit 1
fi
STARTUP=$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
STARTUP_CPU=$(sed 's/.*) //' "/proc/$FLINT_PID/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($12 + $13) / hz}')
log "flint ready after ${STARTUP}s (${STARTUP_CPU}s CPU)"

ip netns exec "$NS_SRV" "$WORK/storm" floor-serve -listen "$SRV_IP:$FLOOR_PORT" -dir "$WORK/floor" >"$WORK/floor.out" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 1 100); do
	ip netns exec "$NS_CLI" curl -fsS -o /dev/null -r 0-0 "http://$SRV_IP:$FLOOR_PORT/big.bin" 2>/dev/null && break
	sleep 0.1
done
sleep 1 # let the start-up settle

# --- the storm ---------------------------------------------------------------
if [ -n "$PPROF" ]; then
	(
		# the capacity measurement runs first; storm says when the NUCs power on
		while [ ! -e "$WORK/storm.started" ]; do sleep 0.05; done
		sleep "$PPROF_DELAY"
		ip netns exec "$NS_SRV" curl -fsS -o "$PPROF_OUT" "http://$PPROF/debug/pprof/profile?seconds=$PPROF_SECONDS" &&
			echo "bench: CPU profile in $PPROF_OUT" >&2
	) &
	PPROF_PID=$!
fi
if [ -n "$PPROF" ]; then
	ip netns exec "$NS_SRV" curl -fsS -o "$PPROF_OUT.heap-start" "http://$PPROF/debug/pprof/heap" || true
fi
log "storm: $N NUCs, ramp $RAMP"
OUT=$(ip netns exec "$NS_CLI" "$WORK/storm" run -n "$N" -iface "$IF_CLI" -pid "$FLINT_PID" -ramp "$RAMP" -max "$MAX" \
	-ipxe-file "$WORK/ipxe/ipxe.efi" -kernel-file "$KERNEL" -initrd-file "$INITRD" \
	-floor-url "http://$SRV_IP:$FLOOR_PORT/big.bin" -cap-streams "$CAP_STREAMS" -cap-time "$CAP_TIME" -started "$WORK/storm.started" ${STORM_PROFILE:+-cpuprofile "$STORM_PROFILE"})
if [ -n "$PPROF_PID" ]; then wait "$PPROF_PID" || true; PPROF_PID=""; fi
SUMMARY=$(grep '^storm ' <<<"$OUT")
PHASES=$(sed -n '/^| phase/,/^$/p' <<<"$OUT")
FAILURES=$(sed -n '/^Failures:/,$p' <<<"$OUT")
log "$SUMMARY"
summary() { field "$SUMMARY" "$1"; }

# Kernel counters of both namespaces (since they were created): datagrams
# dropped at a full socket receive buffer (flint's DHCP and TFTP sockets on the
# server side, the NUCs' on the client side), listen queue overflows.
counter() { # NS FILE PREFIX FIELD
	ip netns exec "$1" cat "$2" | awk -v p="$3:" -v f="$4" '$1 == p {
		if (!h) { for (i = 2; i <= NF; i++) name[i] = $i; h = 1; next }
		for (i = 2; i <= NF; i++) if (name[i] == f) print $i
		exit }'
}
SRV_UDP_DROPS=$(counter "$NS_SRV" /proc/net/snmp Udp RcvbufErrors)
CLI_UDP_DROPS=$(counter "$NS_CLI" /proc/net/snmp Udp RcvbufErrors)
SRV_LISTEN_OVF=$(counter "$NS_SRV" /proc/net/netstat TcpExt ListenOverflows)
SRV_RETRANS=$(counter "$NS_SRV" /proc/net/snmp Tcp RetransSegs)
if [ -n "$PPROF" ]; then
	ip netns exec "$NS_SRV" curl -fsS -o "$PPROF_OUT.heap" "http://$PPROF/debug/pprof/heap" && log "heap profile in $PPROF_OUT.heap"
fi

# flint's own view: machines that reported config-applied are installed
# (live mode); WARN/ERROR lines in its log.
INSTALLED=$(ip netns exec "$NS_SRV" "$WORK/flint" machines --data "$WORK/data" --json | grep -c '"state": *"installed"' || true)
# The live-servers warning is expected from this config; everything else counts.
LOGLINES=$(grep -E 'level=(WARN|ERROR)' "$WORK/flint.out" | grep -vc 'run live (from RAM)' || true)
FLINT_LOG=$(grep -E 'level=(WARN|ERROR)' "$WORK/flint.out" | grep -v 'run live (from RAM)' | cut -c1-400 | sed 's/^/    /' | head -8 || true)

# --- report ----------------------------------------------------------------
gb() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1e9}'; }
TABLE="| NUCs | got config | failed | time to last config s | bytes to config GB | link MB/s (before / after) | floor s | ratio | flint CPU s | flint peak RSS MiB (start-up / storm) | client CPU s |
|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| $N | $(summary configs) | $(summary failed) | $(summary last_config_s) | $(gb "$(summary bytes_to_config)") | $(summary cap_before_MBps) / $(summary cap_after_MBps) | $(summary floor_config_s) | **$(summary ratio_config)** | $(summary flint_cpu_s) | $(summary flint_hwm_startup_MiB) / $(summary flint_hwm_storm_MiB) | $(summary client_cpu_s) |"

IPXE_V=$(dpkg-query -W -f '${Version}' ipxe 2>/dev/null || echo unknown)
CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT="### storm.sh: $DATE, $(hostname), N=$N

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). flint, the floor server and the simulated NUCs share the cores; veth between two namespaces (MTU 1500).
Load average before the run: $LOAD_BEFORE (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), iPXE $IPXE_V.
Storm: $N NUCs (3 servers, $((N - 3)) agents, install_mode live), power-on ramp $RAMP; SCALE=$SCALE: $SIZES. flint ready ${STARTUP}s after start (${STARTUP_CPU}s CPU; config with $N machines, fresh data dir), limits tftp_transfers $TFTP_CAP, http_connections $CONN_CAP.
Floor: bytes the NUCs received up to their configs (TFTP + HTTP bodies) over the link's capacity (the better of $CAP_STREAMS parallel plain downloads for $CAP_TIME before and after the storm); ratio = time to the last config / floor. Through the reports (all bytes incl. Ignition's files): last report at $(summary last_report_s) s, floor $(summary floor_all_s) s, ratio $(summary ratio_all). flint's own count afterwards: $INSTALLED machines installed (reported config-applied); $LOGLINES WARN/ERROR lines in its log besides the expected one about live etcd members. Kernel counters: $SRV_UDP_DROPS datagrams dropped at full UDP receive buffers on flint's side (DHCP, TFTP), $CLI_UDP_DROPS on the NUCs' side; $SRV_LISTEN_OVF listen queue overflows, $SRV_RETRANS TCP segments retransmitted by the server side (floor transfers included).

$TABLE

$PHASES"
if [ -n "$FAILURES" ]; then
	REPORT+="

$FAILURES"
fi
if [ -n "$FLINT_LOG" ]; then
	REPORT+="

flint's WARN/ERROR lines (first 8):

$FLINT_LOG"
fi
REPORT+=$'\n'
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
