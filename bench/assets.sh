#!/usr/bin/env bash
# bench/assets.sh: HTTP asset throughput, flint against nginx, in one run.
#
# Serves the same 256 MiB file from nginx (sendfile on, access_log off) and
# from `flint serve` (/assets/, dhcp off), both on 127.0.0.1, and measures
# throughput with wrk at 1, 10 and 50 concurrent clients, alternating the two
# servers, medians of ROUNDS runs. Also records flint's peak RSS (VmHWM, reset
# before each measurement) and both servers' CPU time per GB, checks that
# flint's copy really uses sendfile(2), prints a table and appends it to
# bench/README.md. Run as root (it installs nginx and wrk when missing):
#
#   bench/assets.sh
#
# Server CPU per GB includes the kernel's loopback receive work, which runs
# in the sender's context: compare the columns with each other, not with a
# real NIC.
#
# Knobs: DURATION=8 (seconds per measurement), ROUNDS=3, CLIENTS="1 10 50",
# SIZE_MIB=256, NO_README=1 (print only).
set -euo pipefail

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 10 50"}
SIZE_MIB=${SIZE_MIB:-256}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

if [ "$(id -u)" != 0 ]; then
	echo "bench/assets.sh: run as root (it installs nginx and wrk, and reads /proc of its servers)" >&2
	exit 1
fi

WORK=""
NGINX_PID=""
FLINT_PID=""
POLICY_CREATED=""
cleanup() {
	# Only the processes this script started, by PID.
	for pid in $FLINT_PID $NGINX_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
	if [ -n "$POLICY_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

install_missing() {
	local pkgs=()
	[ -x /usr/sbin/nginx ] || pkgs+=(nginx)
	command -v wrk >/dev/null || pkgs+=(wrk)
	command -v strace >/dev/null || pkgs+=(strace)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	log "installing ${pkgs[*]}"
	# Keep Debian's nginx package from starting its own server on port 80.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
	fi
	if [ -n "$POLICY_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=""; fi
}
install_missing
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# A TCP port nothing on 127.0.0.1 listens on (bounded tries).

wait_http() { # URL
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null -r 0-0 "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench: $1 did not answer within 10s" >&2
	return 1
}

# utime+stime of a process and its live children, in clock ticks.

WORK=$(mktemp -d /tmp/flint-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/ipxe" "$WORK/data" "$WORK/nginx-tmp"
FILE="$WORK/www/asset.bin"
log "creating a $SIZE_MIB MiB file"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$FILE"
chmod 644 "$FILE"
SUM=$(sha256sum "$FILE" | cut -d' ' -f1)

log "building flint"
CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)

NPORT=$(free_port)
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $WORK/www;
    }
}
EOF
/usr/sbin/nginx -e "$WORK/nginx-error.log" -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
NGINX_URL="http://127.0.0.1:$NPORT/asset.bin"

FPORT=$(free_port)
TPORT=$(free_port)
cat >"$WORK/flint.yaml" <<EOF
server: {address: 127.0.0.1, listen: 127.0.0.1, http_port: $FPORT, tftp_port: $TPORT}
dhcp: {mode: "off", subnet: 198.18.1.0/24, router: 198.18.1.1, dns: [198.18.1.1]}
ipxe: {directory: $WORK/ipxe}
boot: {assets_dir: $WORK/www}
cluster: {install_mode: live}
machines:
  - {mac: "02:00:00:00:00:01", hostname: bench1, ip: 198.18.1.10, role: server}
EOF
# warn: no per-request log lines, like nginx's access_log off.
"$WORK/flint" serve --log-level warn --config "$WORK/flint.yaml" --data "$WORK/data" >"$WORK/flint.out" 2>&1 &
FLINT_PID=$!
FLINT_URL="http://127.0.0.1:$FPORT/assets/asset.bin"

wait_http "$NGINX_URL" || { cat "$WORK/nginx-error.log" >&2; exit 1; }
wait_http "$FLINT_URL" || { cat "$WORK/flint.out" >&2; exit 1; }
FLINT_IDLE_KIB=$(awk '/^VmRSS:/ {print $2}' "/proc/$FLINT_PID/status")

# Both must send the whole file, byte for byte.
for url in "$NGINX_URL" "$FLINT_URL"; do
	got=$(curl -fsS "$url" | sha256sum | cut -d' ' -f1)
	if [ "$got" != "$SUM" ]; then
		echo "bench: $url sent other bytes (sha256 $got, want $SUM)" >&2
		exit 1
	fi
done
log "both servers send the file intact (sha256 ${SUM:0:16}...)"

# Does flint's copy go through sendfile(2)? Count the syscalls of one download.
SENDFILE_NOTE="not checked (strace unavailable)"
if command -v strace >/dev/null; then
	strace -f -qq -e trace=sendfile,write,writev,splice -o "$WORK/strace.txt" -p "$FLINT_PID" &
	STRACE_PID=$!
	sleep 0.5
	curl -fsS -o /dev/null "$FLINT_URL"
	sleep 0.2
	kill "$STRACE_PID" 2>/dev/null || true
	wait "$STRACE_PID" 2>/dev/null || true
	# Lines look like "PID sendfile(11, 12, NULL, 268434944) = 4207616".
	SENDFILE_NOTE=$(awk '
		$2 ~ /^sendfile\(/ { n++; if ($NF ~ /^[0-9]+$/) bytes += $NF; if (/EAGAIN/) again++ }
		$2 ~ /^(write|writev)\(/ { w++ }
		END { printf "one download: %d sendfile calls (%d EAGAIN) moving %.0f MiB, %d write/writev calls (headers, poller wake-ups)", n, again, bytes / 1048576, w }
	' "$WORK/strace.txt")
	log "flint: $SENDFILE_NOTE"
fi

# --- measurements ----------------------------------------------------------
# wrk prints "  123 requests in 8.01s, 30.75GB read" (1024-based units);
# bytes of unfinished responses count too, so this is bytes moved per second.
wrk_mbps() { # URL CLIENTS -> MB/s (10^6 bytes per second)
	local threads=2 out line
	[ "$2" -lt 2 ] && threads=1
	out=$(wrk -t"$threads" -c"$2" -d"${DURATION}s" --timeout 120s "$1")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "bench: $1 answered with errors:" >&2
		echo "$out" >&2
		return 1
	fi
	line=$(grep -E 'requests in [0-9.]+s, [0-9.]+[KMGT]?B read' <<<"$out") || {
		echo "bench: cannot read wrk's output:" >&2
		echo "$out" >&2
		return 1
	}
	awk '{
		secs = $4; sub(/s,$/, "", secs)
		v = $5; unit = v; sub(/[0-9.]+/, "", unit); sub(/[KMGT]?B$/, "", v)
		m = 1
		if (unit == "KB") m = 1024; else if (unit == "MB") m = 1024^2
		else if (unit == "GB") m = 1024^3; else if (unit == "TB") m = 1024^4
		printf "%.0f\n", v * m / secs / 1e6
	}' <<<"$line"
}

declare -A NG FL RSS NGCPU FLCPU
TICK=$(getconf CLK_TCK)
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
for r in $(seq 1 "$ROUNDS"); do
	for c in $CLIENTS; do
		# Alternate which server goes first, so drift favours neither.
		order="nginx flint"
		[ $((r % 2)) -eq 0 ] && order="flint nginx"
		for srv in $order; do
			if [ "$srv" = nginx ]; then
				t0=$(cpu_ticks "$NGINX_PID")
				v=$(wrk_mbps "$NGINX_URL" "$c")
				t1=$(cpu_ticks "$NGINX_PID")
				NG[$c]+="$v "
				NGCPU[$c]+="$(awk -v t=$((t1 - t0)) -v hz="$TICK" -v mb="$v" -v d="$DURATION" 'BEGIN {printf "%.0f", (t / hz * 1000) / (mb * d / 1000)}') "
			else
				echo 5 >"/proc/$FLINT_PID/clear_refs" # reset VmHWM to the current RSS
				t0=$(cpu_ticks "$FLINT_PID")
				v=$(wrk_mbps "$FLINT_URL" "$c")
				t1=$(cpu_ticks "$FLINT_PID")
				FL[$c]+="$v "
				RSS[$c]+="$(vmhwm_kib "$FLINT_PID") "
				FLCPU[$c]+="$(awk -v t=$((t1 - t0)) -v hz="$TICK" -v mb="$v" -v d="$DURATION" 'BEGIN {printf "%.0f", (t / hz * 1000) / (mb * d / 1000)}') "
			fi
			log "round $r, $c clients, $srv: $v MB/s"
		done
	done
done
FLINT_HWM_MAX=$(tr ' ' '\n' <<<"${RSS[*]}" | grep . | sort -n | tail -1)
NGINX_RSS=""
for w in $NGINX_WORKERS; do NGINX_RSS+="$(($(vmhwm_kib "$w") / 1024)) "; done

# --- report ----------------------------------------------------------------
TABLE="| clients | nginx MB/s | flint MB/s | flint/nginx | flint peak RSS | nginx CPU ms/GB | flint CPU ms/GB |
|--:|--:|--:|--:|--:|--:|--:|"
for c in $CLIENTS; do
	n=$(tr ' ' '\n' <<<"${NG[$c]}" | grep . | median)
	f=$(tr ' ' '\n' <<<"${FL[$c]}" | grep . | median)
	rss=$(tr ' ' '\n' <<<"${RSS[$c]}" | grep . | sort -n | tail -1)
	nc=$(tr ' ' '\n' <<<"${NGCPU[$c]}" | grep . | median)
	fc=$(tr ' ' '\n' <<<"${FLCPU[$c]}" | grep . | median)
	ratio=$(awk -v f="$f" -v n="$n" 'BEGIN {printf "%.2f", (n > 0 ? f / n : 0)}')
	TABLE+="
| $c | $n | $f | $ratio | $(awk -v k="$rss" 'BEGIN {printf "%.1f MiB", k / 1024}') | $nc | $fc |"
done

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
NGINX_V=$(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //')
WRK_V=$( (wrk -v 2>&1 || true) | head -1 | awk '{print $1, $2}')
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT="### $DATE, $(hostname)

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). Server and wrk share the cores; loopback.
Load average before the run: $LOAD_BEFORE (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), $NGINX_V, $WRK_V.
File: $SIZE_MIB MiB; ${DURATION}s per measurement, median of $ROUNDS rounds (servers alternated).
flint sendfile check: $SENDFILE_NOTE. flint RSS idle $((FLINT_IDLE_KIB / 1024)) MiB, highest peak during a measurement $((FLINT_HWM_MAX / 1024)) MiB; nginx workers: ${NGINX_RSS}MiB each.

$TABLE
"
echo
echo "$REPORT"
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
