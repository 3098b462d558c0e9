# bench/lib.sh: what the benchmark scripts share. Sourced, never run:
#   . "$ROOT/bench/lib.sh"   (ROOT: the repository)
# Nothing here runs on its own; each function says its arguments.

log() { echo "bench: $*" >&2; }

# stop_pid PID [SECONDS]: TERM, wait up to SECONDS (default 10), then KILL.
stop_pid() {
	local pid=$1 tries=$((${2:-10} * 10))
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 "$tries"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# median: the median of the numbers on stdin, one per line or space-separated.
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# field "k1=v1 k2=v2 ..." KEY: the value of KEY in a load generator's summary line.
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# ratio A B: A/B with two decimals, "-" without B.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0 && a != "") printf "%.2f", a / b; else print "-"}'; }

# free_port: a TCP port nothing listens on at 127.0.0.1 now.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "no free port found" >&2
	return 1
}

# cpu_ticks PID...: user+system CPU of the processes and their children, in
# clock ticks (fields after the ")" that ends the command name: utime is the
# 12th, stime the 13th).
cpu_ticks() {
	local total=0 pid
	for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
		[ -r "/proc/$pid/stat" ] || continue
		total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
	done
	echo "$total"
}

# vmhwm_kib / vmrss_kib PID: peak and current resident memory, KiB.
vmhwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
