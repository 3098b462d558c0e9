#!/usr/bin/env bash
# bench/tftp.sh: TFTP throughput, flint against dnsmasq, in one run.
#
# Serves Debian's ipxe.efi (~850 KB, copied into a temp dir so both servers
# read the same bytes) from flint's TFTP server and from dnsmasq's, both in a
# server network namespace (198.18.0.0/15 only: flint on 198.18.0.1:69,
# dnsmasq on 198.18.0.3:69, both running the whole time, idle while the other
# is measured), and fetches it with atftp (--option "blksize 1468", what fits
# a 1500-byte MTU) from a client namespace over a veth pair:
#   - 1 client fetching TRANSFERS files one after the other, and 20 clients
#     doing the same at once: MB/s (all bytes received over wall time) and
#     server CPU ms per transfer (utime+stime from /proc/PID/stat);
#   - 100 clients at once, one transfer each: failed transfers (atftp exit
#     status, or a file of the wrong size) must be 0.
# Every downloaded file is checked against the original's size, the first one
# of each server byte for byte. Medians of ROUNDS, servers alternated. Appends
# the table to bench/README.md. Run as root (installs atftp, dnsmasq-base):
#
#   bench/tftp.sh
#
# dnsmasq runs with --tftp-max=300 (its default of 50 concurrent transfers
# would refuse half of the 100-client check) and --port=0 (no DNS); flint
# with the same cap, limits.tftp_transfers and limits.tftp_transfers_per_client
# both 300 (every client here has the same address, so flint's default of 4
# per client would refuse most of the 20- and 100-client runs).
#
# Knobs: TRANSFERS=50 (per client per measurement), CLIENTS="1 20", ROUNDS=3,
# STORM=100 (clients of the failure check), FILE=/usr/lib/ipxe/ipxe.efi,
# NO_README=1, FLINT_BIN=path (run that flint binary, e.g. a throwaway build
# with a pprof listener, instead of building this tree), LOSS=percent (drop
# that share of the UDP packets each namespace sends, both directions, with
# nftables, after the servers are checked: how each copes with a lost DATA
# or ACK; e.g. LOSS=0.1 is about one loss per transfer).
set -euo pipefail

TRANSFERS=${TRANSFERS:-50}
CLIENTS=${CLIENTS:-"1 20"}
ROUNDS=${ROUNDS:-3}
STORM=${STORM:-100}
FILE=${FILE:-/usr/lib/ipxe/ipxe.efi}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [ "$(id -u)" != 0 ]; then
	echo "bench/tftp.sh: run as root (network namespaces, port 69, packages)" >&2
	exit 1
fi

NS_SRV="fbt-srv-$$"
NS_CLI="fbt-cli-$$"
IF_SRV="fbts$$"
IF_CLI="fbtc$$"
FLINT_IP=198.18.0.1
DNSMASQ_IP=198.18.0.3
CLI_IP=198.18.0.2

WORK=""
FLINT_PID=""
DNSMASQ_PID=""
POLICY_CREATED=""
NS_MADE=""
cleanup() {
	stop_pid "$FLINT_PID" 5
	stop_pid "$DNSMASQ_PID" 5
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
	command -v atftp >/dev/null || pkgs+=(atftp)
	[ -e "$FILE" ] || pkgs+=(ipxe)
	command -v ip >/dev/null || pkgs+=(iproute2)
	[ -z "${LOSS:-}" ] || command -v nft >/dev/null || pkgs+=(nftables)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	log "installing ${pkgs[*]}"
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

WORK=$(mktemp -d /tmp/flint-bench-tftp.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/root" "$WORK/data" "$WORK/www" "$WORK/dl"
NAME=$(basename "$FILE")
cp -L "$FILE" "$WORK/root/$NAME"
chmod 644 "$WORK/root/$NAME"
SIZE=$(stat -c %s "$WORK/root/$NAME")
SUM=$(sha256sum "$WORK/root/$NAME" | cut -d' ' -f1)

FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)
if [ -n "${FLINT_BIN:-}" ]; then
	cp "$FLINT_BIN" "$WORK/flint"
	FLINT_VERSION="binary $FLINT_BIN (FLINT_BIN; the tree is at $FLINT_VERSION)"
else
	log "building flint"
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
fi

# --- network ---------------------------------------------------------------
ip netns add "$NS_SRV"
NS_MADE=1
ip netns add "$NS_CLI"
ip link add "$IF_SRV" type veth peer name "$IF_CLI"
ip link set "$IF_SRV" netns "$NS_SRV"
ip link set "$IF_CLI" netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$FLINT_IP/15" dev "$IF_SRV"
ip -n "$NS_SRV" addr add "$DNSMASQ_IP/15" dev "$IF_SRV"
ip -n "$NS_CLI" addr add "$CLI_IP/15" dev "$IF_CLI"
for ns in "$NS_SRV" "$NS_CLI"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SRV" link set "$IF_SRV" up
ip -n "$NS_CLI" link set "$IF_CLI" up

# --- servers ---------------------------------------------------------------
cat >"$WORK/flint.yaml" <<EOF
server: {address: $FLINT_IP, listen: $FLINT_IP, http_port: 8080, tftp_port: 69}
dhcp: {mode: "off", subnet: 198.18.0.0/15, router: $FLINT_IP, dns: [$FLINT_IP]}
ipxe: {directory: $WORK/root}
boot: {assets_dir: $WORK/www}
limits: {tftp_transfers: 300, tftp_transfers_per_client: 300}
cluster: {install_mode: live}
machines:
  - {mac: "02:00:00:00:00:01", hostname: bench1, ip: 198.18.0.10, role: server}
EOF
# warn: no line per transfer, like dnsmasq without --log-dhcp/--log-queries.
ip netns exec "$NS_SRV" "$WORK/flint" serve --log-level warn --config "$WORK/flint.yaml" --data "$WORK/data" >"$WORK/flint.out" 2>&1 &
FLINT_PID=$!
ip netns exec "$NS_SRV" /usr/sbin/dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root --group=root \
	--pid-file="$WORK/dnsmasq.pid" --listen-address="$DNSMASQ_IP" --bind-interfaces \
	--enable-tftp --tftp-root="$WORK/root" --tftp-max=300 --log-facility="$WORK/dnsmasq.log" >"$WORK/dnsmasq.out" 2>&1 &
DNSMASQ_PID=$!

fetch() { # IP OUT -> exit status of atftp
	timeout 60 atftp --option "blksize 1468" -g -r "$NAME" -l "$2" "$1" 69 >/dev/null 2>&1
}
export -f fetch
export NAME

ready() { # IP PID
	for _ in $(seq 1 100); do
		kill -0 "$2" 2>/dev/null || return 1
		if ip netns exec "$NS_CLI" bash -c "fetch $1 $WORK/dl/probe" && [ "$(stat -c %s "$WORK/dl/probe")" = "$SIZE" ]; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}
ready "$FLINT_IP" "$FLINT_PID" || { cat "$WORK/flint.out" >&2; exit 1; }
ready "$DNSMASQ_IP" "$DNSMASQ_PID" || { cat "$WORK/dnsmasq.out" "$WORK/dnsmasq.log" >&2; exit 1; }
for ip in "$FLINT_IP" "$DNSMASQ_IP"; do
	ip netns exec "$NS_CLI" bash -c "fetch $ip $WORK/dl/check"
	got=$(sha256sum "$WORK/dl/check" | cut -d' ' -f1)
	if [ "$got" != "$SUM" ]; then
		echo "bench: $ip sent other bytes (sha256 $got, want $SUM)" >&2
		exit 1
	fi
done
log "both servers send $NAME intact ($SIZE bytes, sha256 ${SUM:0:16}...)"
LOSS_NOTE=""
if [ -n "${LOSS:-}" ]; then
	per10k=$(awk -v l="$LOSS" 'BEGIN {printf "%d", l * 100}')
	for ns in "$NS_SRV" "$NS_CLI"; do
		ip netns exec "$ns" nft -f - <<EOF
table inet fbt_loss {
	chain out {
		type filter hook output priority 0; policy accept;
		meta l4proto udp numgen random mod 10000 < $per10k drop
	}
}
EOF
	done
	LOSS_NOTE=" **$LOSS% of the UDP packets dropped each way** (nftables, both namespaces)."
	log "dropping $LOSS% of UDP packets each way"
fi

TICK=$(getconf CLK_TCK)

# measure IP PID CLIENTS PER_CLIENT -> "MB/s cpu_ms_per_transfer failures"
measure() {
	local ip=$1 pid=$2 c=$3 k=$4 t0 t1 c0 c1 fails
	rm -rf "$WORK/dl/run"
	mkdir -p "$WORK/dl/run"
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	ip netns exec "$NS_CLI" bash -c '
		ip=$1 c=$2 k=$3 dir=$4 size=$5
		for i in $(seq 1 "$c"); do
			(
				for j in $(seq 1 "$k"); do
					out="$dir/c$i-$j"
					if ! fetch "$ip" "$out" || [ "$(stat -c %s "$out" 2>/dev/null)" != "$size" ]; then
						echo fail >"$out.failed"
					fi
					rm -f "$out"
				done
			) &
		done
		wait
	' _ "$ip" "$c" "$k" "$WORK/dl/run" "$SIZE"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	fails=$(find "$WORK/dl/run" -name '*.failed' | wc -l)
	awk -v t0="$t0" -v t1="$t1" -v n=$((c * k)) -v f="$fails" -v size="$SIZE" -v ticks=$((c1 - c0)) -v hz="$TICK" 'BEGIN {
		ok = n - f
		printf "%.1f %.2f %d\n", ok * size / (t1 - t0) / 1e6, ticks / hz * 1000 / n, f
	}'
}

declare -A MB CPU FAIL
for r in $(seq 1 "$ROUNDS"); do
	for c in $CLIENTS "storm"; do
		order="dnsmasq flint"
		[ $((r % 2)) -eq 0 ] && order="flint dnsmasq"
		for srv in $order; do
			ip=$FLINT_IP pid=$FLINT_PID
			[ "$srv" = dnsmasq ] && ip=$DNSMASQ_IP pid=$DNSMASQ_PID
			if [ "$c" = storm ]; then
				res=$(measure "$ip" "$pid" "$STORM" 1)
			else
				res=$(measure "$ip" "$pid" "$c" "$TRANSFERS")
			fi
			read -r mb cpu fails <<<"$res"
			MB[$srv,$c]+="$mb "
			CPU[$srv,$c]+="$cpu "
			FAIL[$srv,$c]=$((${FAIL[$srv,$c]:-0} + fails))
			log "round $r, $c clients, $srv: $mb MB/s, $cpu ms CPU per transfer, $fails failed"
		done
	done
done

# --- report ----------------------------------------------------------------
TABLE="| clients | transfers | dnsmasq MB/s | flint MB/s | flint/dnsmasq | dnsmasq CPU ms/transfer | flint CPU ms/transfer | dnsmasq failed | flint failed |
|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for c in $CLIENTS "storm"; do
	d=$(tr ' ' '\n' <<<"${MB[dnsmasq,$c]}" | grep . | median)
	f=$(tr ' ' '\n' <<<"${MB[flint,$c]}" | grep . | median)
	dc=$(tr ' ' '\n' <<<"${CPU[dnsmasq,$c]}" | grep . | median)
	fc=$(tr ' ' '\n' <<<"${CPU[flint,$c]}" | grep . | median)
	ratio=$(awk -v f="$f" -v d="$d" 'BEGIN {printf "%.2f", (d > 0 ? f / d : 0)}')
	if [ "$c" = storm ]; then label=$STORM n=$STORM; else label=$c n=$((c * TRANSFERS)); fi
	TABLE+="
| $label | $n | $d | $f | $ratio | $dc | $fc | ${FAIL[dnsmasq,$c]} | ${FAIL[flint,$c]} |"
done

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
DNSMASQ_V=$(/usr/sbin/dnsmasq --version | head -1 | awk '{print $3}')
ATFTP_V=$(dpkg-query -W -f '${Version}' atftp 2>/dev/null || echo unknown)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT="### tftp.sh: $DATE, $(hostname)

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). Servers and atftp clients share the cores; veth between two namespaces (MTU 1500).
Load average before the run: $LOAD_BEFORE (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), dnsmasq $DNSMASQ_V, atftp $ATFTP_V.
File: $NAME, $SIZE bytes, blksize 1468; $TRANSFERS transfers per client one after the other (1 and 20 clients), one each for the $STORM-client failure check; medians of $ROUNDS rounds (servers alternated), failures summed over the rounds. MB/s is file bytes delivered over wall time (10^6 bytes).$LOSS_NOTE

$TABLE
"
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
