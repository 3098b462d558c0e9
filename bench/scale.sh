#!/usr/bin/env bash
# bench/scale.sh: what the number of machines costs flint, in one run.
#
# For each size M in SIZES (3 etcd/K3s servers, the rest K3s agents; MACs
# 02:00:00:xx:xx:xx, addresses 198.18.0.10 onwards) flint's data directory is
# first seeded with DISCOVERED_PER_MACHINE x M discovered machines (MACs the
# config does not list, one DHCP sighting each, as a site that has seen that
# many strangers; limits.discovered_machines is set to hold them all). Then:
#   - `flint validate` of the config: wall time and peak RSS;
#   - `flint serve` on 127.0.0.1 (dhcp.mode off, install_mode live): time
#     from exec to the first answer on /healthz, RSS then; config deliveries
#     by bench/cfgload (iPXE script with a fresh boot token, pointer config,
#     the config over a new TLS connection: what a node does):
#       cold: the first delivery to each of min(M, 1000) machines, 8 at a
#             time, right after ready while flint renders configs ahead
#             (what a boot storm right after a restart costs);
#       warm: once flint is idle again, the same 100 machines for DURATION
#             seconds at 8 clients, after one delivery each (their configs
#             cached): the request path alone, which must not grow with M;
#     and flint's peak RSS over the whole serve;
#   - `flint serve` with dhcp.mode full in two network namespaces joined by a
#     veth (198.18.0.1 server, 198.18.0.2 clients): bench/dhcpload runs
#     DHCP_N DORAs at 16 and 64 clients for the same 100 known machines
#     (reservations; leases fsynced before each ACK), on a fresh copy of the
#     seeded data directory, once flint is idle after start-up (the time
#     until then is the render-ahead column).
# Prints a table with each size's rates as a ratio of the smallest size's
# (the issue's goal: within 10% at 10,000 machines and 100,000 discovered
# records) and appends it to bench/README.md. Run as root:
#
#   bench/scale.sh
#
# Every figure is the median of ROUNDS rounds (sizes interleaved, so drift
# on the machine favours none).
#
# Knobs: SIZES="100 1000 10000", ROUNDS=3, DISCOVERED_PER_MACHINE=10,
# DURATION=10, COLD=1000 (machines in the cold run, at most M), DHCP_N=10000,
# DHCP_CLIENTS="16 64", NO_README=1, FLINT_BIN=path.
set -euo pipefail

SIZES=${SIZES:-"100 1000 10000"}
ROUNDS=${ROUNDS:-3}
DISCOVERED_PER_MACHINE=${DISCOVERED_PER_MACHINE:-10}
DURATION=${DURATION:-10}
COLD=${COLD:-1000}
DHCP_N=${DHCP_N:-10000}
DHCP_CLIENTS=${DHCP_CLIENTS:-"16 64"}
CLIENTS=8
WARM=100
NSERVERS=3

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [ "$(id -u)" != 0 ]; then
	echo "bench/scale.sh: run as root (network namespaces, port 67)" >&2
	exit 1
fi
for m in $SIZES; do
	if ! [[ $m =~ ^[0-9]+$ ]] || [ "$m" -lt "$WARM" ] || [ "$m" -gt 60000 ]; then
		echo "bench/scale.sh: SIZES: $m is not a number of machines from $WARM to 60000" >&2
		exit 2
	fi
done

NS_SRV="fbs-srv-$$"
NS_CLI="fbs-cli-$$"
IF_SRV="fbss$$"
IF_CLI="fbsc$$"
SRV_IP=198.18.0.1

WORK=""
FLINT_PID=""
NS_MADE=""
cleanup() {
	stop_pid "$FLINT_PID"
	if [ -n "$NS_MADE" ]; then
		ip netns del "$NS_SRV" 2>/dev/null || true
		ip netns del "$NS_CLI" 2>/dev/null || true
	fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vmhwm_mib() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
vmrss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# wait_http URL PID [NETNS]: prints the seconds waited, or fails.
wait_http() {
	local t0 ns=() i
	t0=$(date +%s.%N)
	[ -n "${3:-}" ] && ns=(ip netns exec "$3")
	for i in $(seq 1 1200); do
		kill -0 "$2" 2>/dev/null || return 1
		if "${ns[@]}" curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; then
			awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
			return 0
		fi
		[ "$i" -lt 50 ] && sleep 0.02 || sleep 0.1
	done
	return 1
}

# cpu_ticks PID: the process's user+system CPU so far, in clock ticks.
# start-up (rendering every machine's first config ahead, which takes up to
# half of one core): two half-second samples in a row with at most 2 ticks
# (20 ms) of CPU each. Prints the seconds waited; fails after 300 s.
wait_idle() {
	local t0 prev now quiet=0
	t0=$(date +%s.%N)
	prev=$(cpu_ticks "$1")
	for _ in $(seq 1 600); do
		sleep 0.5
		now=$(cpu_ticks "$1") || return 1
		if [ $((now - prev)) -le 2 ]; then quiet=$((quiet + 1)); else quiet=0; fi
		prev=$now
		if [ "$quiet" -ge 2 ]; then
			awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a - 1}'
			return 0
		fi
	done
	return 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/flint-bench-scale.XXXXXX)
chmod 755 "$WORK"

# --- binaries --------------------------------------------------------------
log "building flint, cfgload, dhcpload and scale"
if [ -n "${FLINT_BIN:-}" ]; then
	cp "$FLINT_BIN" "$WORK/flint"
else
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
fi
for t in cfgload dhcpload scale; do CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/$t" "./bench/$t"; done
FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)
[ -n "${FLINT_BIN:-}" ] && FLINT_VERSION="$FLINT_VERSION (FLINT_BIN)"

# --- assets (stand-ins: only their hashes go into the configs) -----------------
mkdir -p "$WORK/www/k3s" "$WORK/www/etcd" "$WORK/www/flatcar" "$WORK/ipxe"
for f in k3s/k3s etcd/etcd etcd/etcdctl flatcar/flatcar_production_pxe.vmlinuz flatcar/flatcar_production_pxe_image.cpio.gz; do
	head -c 65536 /dev/urandom >"$WORK/www/$f"
done
SSH_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlintBenchFlintBenchFlintBenchFlintBenchFlin bench@flint"

# --- network (the DHCP part) ---------------------------------------------------
ip netns add "$NS_SRV"
NS_MADE=1
ip netns add "$NS_CLI"
ip link add "$IF_SRV" type veth peer name "$IF_CLI"
ip link set "$IF_SRV" netns "$NS_SRV"
ip link set "$IF_CLI" netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$SRV_IP/15" dev "$IF_SRV"
ip -n "$NS_CLI" addr add 198.18.0.2/15 dev "$IF_CLI"
for ns in "$NS_SRV" "$NS_CLI"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SRV" link set "$IF_SRV" up
ip -n "$NS_CLI" link set "$IF_CLI" up

mac_of() { printf '02:00:00:%02x:%02x:%02x' $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
ip_of() { local a=$((10 + $1)); printf '198.18.%d.%d' $((a >> 8)) $((a & 255)); }

# machines M: the config's machine list.
machines() {
	local i role
	for i in $(seq 1 "$1"); do
		role=agent
		[ "$i" -le $NSERVERS ] && role=server
		printf '  - {mac: "%s", hostname: nuc%d, ip: %s, role: %s}\n' "$(mac_of "$i")" "$i" "$(ip_of "$i")" "$role"
	done
}

# config M DISCOVERED MODE: the site config (MODE off: loopback; full: the veth).
config() {
	local m=$1 disc=$2 mode=$3
	if [ "$mode" = off ]; then
		echo "server: {address: 127.0.0.1, listen: 127.0.0.1, http_port: $HTTP_PORT, https_port: $HTTPS_PORT, tftp_port: $TFTP_PORT}"
		echo "dhcp: {mode: \"off\", subnet: 198.18.0.0/15, router: $SRV_IP, dns: [$SRV_IP], domain: bench.example}"
	else
		echo "server: {interface: $IF_SRV, address: $SRV_IP, listen: $SRV_IP, http_port: 8080, https_port: 8443, tftp_port: 69, dhcp_port: 67}"
		echo "dhcp: {mode: full, subnet: 198.18.0.0/15, router: $SRV_IP, dns: [$SRV_IP], domain: bench.example, lease_time: 1h}"
	fi
	cat <<EOF
ipxe: {directory: $WORK/ipxe}
boot: {assets_dir: $WORK/www}
limits: {discovered_machines: $disc}
cluster:
  name: bench
  install_mode: live
  ssh_authorized_keys: ["$SSH_KEY"]
machines:
EOF
	machines "$m"
}

declare -A R
# put M KEY VALUE: one round's figure.
put() { R[$1,$2]+="$3 "; }
# get M KEY: the median over the rounds.
get() { median <<<"${R[$1,$2]:-}"; }

# prepare_size M: configs, MAC lists and the seeded data directory, once.
prepare_size() {
	local m=$1 d="$WORK/m$1" disc
	disc=$((m * DISCOVERED_PER_MACHINE))
	mkdir -p "$d"
	HTTP_PORT=$(free_port)
	HTTPS_PORT=$(free_port)
	TFTP_PORT=$(free_port)
	config "$m" "$disc" off >"$d/flint.yaml"
	config "$m" "$disc" full >"$d/flint-dhcp.yaml"
	for i in $(seq 1 "$m"); do mac_of "$i"; echo; done >"$d/macs-all.txt"
	head -n "$WARM" "$d/macs-all.txt" >"$d/macs-warm.txt"
	local cold=$COLD
	[ "$cold" -gt "$m" ] && cold=$m
	head -n "$cold" "$d/macs-all.txt" >"$d/macs-cold.txt"
	log "$m machines: seeding $disc discovered machines"
	"$WORK/scale" seed -data "$d/seed" -n "$disc"
}

# run_size M ROUND: one round of measurements.
run_size() {
	local m=$1 r=$2 d="$WORK/m$1" out secs cold
	cold=$(grep -c . "$d/macs-cold.txt")
	HTTP_PORT=$(awk '/^server:/ {gsub(/[,}]/, ""); for (i = 1; i <= NF; i++) if ($i == "http_port:") print $(i + 1)}' "$d/flint.yaml")
	log "$m machines, round $r: flint validate"
	out=$("$WORK/scale" time "$WORK/flint" validate --config "$d/flint.yaml" --data "$d/seed" 2>&1 | tail -1)
	put "$m" val_s "$(field "$out" secs)"
	put "$m" val_mib "$(awk -v k="$(field "$out" maxrss_kib)" 'BEGIN {printf "%.0f", k / 1024}')"

	log "$m machines, round $r: flint serve (loopback)"
	rm -rf "$d/data"
	cp -a "$d/seed" "$d/data"
	"$WORK/flint" serve --log-level warn --config "$d/flint.yaml" --data "$d/data" >"$d/flint.out" 2>&1 &
	FLINT_PID=$!
	secs=$(wait_http "http://127.0.0.1:$HTTP_PORT/healthz" "$FLINT_PID") || { cat "$d/flint.out" >&2; exit 1; }
	put "$m" ready_s "$secs"
	put "$m" ready_mib "$(vmrss_mib "$FLINT_PID")"
	local url="http://127.0.0.1:$HTTP_PORT"
	out=$("$WORK/cfgload" -mode flint -label "flint-$m-cold" -url "$url" -macs "$d/macs-cold.txt" -c $CLIENTS -n "$cold" -pid "$FLINT_PID")
	log "$m machines, round $r, cold: $out"
	ERRS[$m]=$((${ERRS[$m]:-0} + $(field "$out" errors)))
	put "$m" cold_rate "$(field "$out" rate)"
	put "$m" cold_p99 "$(field "$out" p99_ms)"
	put "$m" cold_cpu "$(field "$out" cpu_ms)"
	put "$m" cold_err "$(field "$out" errors)"
	wait_idle "$FLINT_PID" >/dev/null || { echo "flint did not settle after the cold run" >&2; exit 1; }
	"$WORK/cfgload" -mode flint -label warm-up -url "$url" -macs "$d/macs-warm.txt" -c $CLIENTS -n $WARM >/dev/null
	out=$("$WORK/cfgload" -mode flint -label "flint-$m-warm" -url "$url" -macs "$d/macs-warm.txt" -c $CLIENTS -duration "${DURATION}s" -pid "$FLINT_PID")
	log "$m machines, round $r, warm: $out"
	ERRS[$m]=$((${ERRS[$m]:-0} + $(field "$out" errors)))
	put "$m" warm_rate "$(field "$out" rate)"
	put "$m" warm_p99 "$(field "$out" p99_ms)"
	put "$m" warm_cpu "$(field "$out" cpu_ms)"
	put "$m" warm_err "$(field "$out" errors)"
	put "$m" peak_mib "$(vmhwm_mib "$FLINT_PID")"
	stop_pid "$FLINT_PID"
	FLINT_PID=""

	log "$m machines, round $r: DHCP (full mode, network namespaces)"
	rm -rf "$d/data"
	cp -a "$d/seed" "$d/data"
	ip netns exec "$NS_SRV" "$WORK/flint" serve --log-level warn --config "$d/flint-dhcp.yaml" --data "$d/data" >"$d/flint-dhcp.out" 2>&1 &
	FLINT_PID=$!
	wait_http "http://$SRV_IP:8080/healthz" "$FLINT_PID" "$NS_SRV" >/dev/null || { cat "$d/flint-dhcp.out" >&2; exit 1; }
	secs=$(wait_idle "$FLINT_PID") || { echo "flint did not settle after start-up" >&2; exit 1; }
	put "$m" settle_s "$secs"
	for c in $DHCP_CLIENTS; do
		out=$(ip netns exec "$NS_CLI" "$WORK/dhcpload" -iface "$IF_CLI" -n "$DHCP_N" -c "$c" -max 90s \
			-pid "$FLINT_PID" -macs "$d/macs-warm.txt" -label "flint-$m")
		log "$m machines, round $r, DHCP $c clients: $out"
		put "$m" "dhcp_$c" "$(field "$out" dora_s)"
		put "$m" "dhcp_cpu_$c" "$(field "$out" cpu_ms_per_dora)"
		BAD[$m]=$((${BAD[$m]:-0} + $(field "$out" lost) + $(field "$out" naks) + $(field "$out" dups)))
	done
	stop_pid "$FLINT_PID"
	FLINT_PID=""
	rm -rf "$d/data"
}

declare -A BAD ERRS
for m in $SIZES; do prepare_size "$m"; done
for r in $(seq 1 "$ROUNDS"); do
	for m in $SIZES; do run_size "$m" "$r"; done
done

# --- report ----------------------------------------------------------------
BASE=$(tr ' ' '\n' <<<"$SIZES" | grep . | head -1)
TABLE="| machines | discovered | validate s | validate peak MiB | ready s | RSS ready MiB | render-ahead s | cold deliveries/s | cold p99 ms | warm deliveries/s | vs $BASE | warm p99 ms | warm CPU ms | peak RSS MiB | errors |
|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
DTABLE="| machines | discovered |$(for c in $DHCP_CLIENTS; do printf ' DORA/s, %s clients | vs %s | CPU ms/DORA |' "$c" "$BASE"; done) lost+NAKs+dups |
|--:|--:|$(for _ in $DHCP_CLIENTS; do printf -- '--:|--:|--:|'; done)--:|"
for m in $SIZES; do
	disc=$((m * DISCOVERED_PER_MACHINE))
	TABLE+="
| $m | $disc | $(get "$m" val_s) | $(get "$m" val_mib) | $(get "$m" ready_s) | $(get "$m" ready_mib) | $(get "$m" settle_s) | $(get "$m" cold_rate) | $(get "$m" cold_p99) | $(get "$m" warm_rate) | $(ratio "$(get "$m" warm_rate)" "$(get "$BASE" warm_rate)") | $(get "$m" warm_p99) | $(get "$m" warm_cpu) | $(get "$m" peak_mib) | ${ERRS[$m]:-0} |"
	row="| $m | $disc |"
	for c in $DHCP_CLIENTS; do
		row+=" $(get "$m" "dhcp_$c") | $(ratio "$(get "$m" "dhcp_$c")" "$(get "$BASE" "dhcp_$c")") | $(get "$m" "dhcp_cpu_$c") |"
	done
	DTABLE+="
$row ${BAD[$m]:-0} |"
done

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT="### scale.sh: $DATE, $(hostname)

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). flint and its load generators share the cores.
Load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)).
Each size: 3 servers and M-3 agents in the config, $DISCOVERED_PER_MACHINE x M discovered machines in the state. Medians of $ROUNDS rounds (sizes interleaved); errors, lost, NAKs and dups summed. Cold: the first delivery (script, pointer, TLS config) to each of min(M, $COLD) machines, $CLIENTS at a time. Warm: the same $WARM machines for ${DURATION}s at $CLIENTS clients after one delivery each. Ready: exec to the first /healthz answer. Render-ahead: from ready until flint is idle (it renders every machine's first config in the background at up to half a core; measured on the DHCP serve, before its load). Cold runs right after ready, alongside that; warm and DHCP once flint is idle. Peak RSS: VmHWM over the serve.

$TABLE

DHCP (full mode, veth between two namespaces, $DHCP_N DORAs per measurement for the same $WARM known machines, leases fsynced before each ACK):

$DTABLE
"
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
