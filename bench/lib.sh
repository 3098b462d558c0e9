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

# --- a real etcd for flint-etcd (bench/etcdrun) ---------------------------------
# etcd_start ETCDRUN DIR MEMBERS [NETNS]: start bench/etcdrun (binary ETCDRUN):
# a TLS etcd of MEMBERS members on 127.0.0.1, inside network namespace NETNS
# when given (its lo must be up; then only that namespace reaches it). The
# members' data go under DIR/etcd, flint's store: section for the cluster to
# DIR/store.yaml, its log to DIR/etcdrun.out. Waits until it is ready, then
# sets ETCD_PID (etcdrun: stop_pid it, it stops its members by PID), ETCD_NS,
# and the STORE_* variables of DIR/etcd.env (endpoints, CA, client pair).
etcd_start() {
	local bin=$1 dir=$2 n=$3
	ETCD_NS=${4:-}
	mkdir -p "$dir/etcd"
	# Not through etcd_in: a function in the background would be a subshell,
	# and ETCD_PID must be etcdrun's own PID.
	local in=()
	[ -z "$ETCD_NS" ] || in=(ip netns exec "$ETCD_NS")
	"${in[@]}" "$bin" -dir "$dir/etcd" -members "$n" -store "$dir/store.yaml" -env "$dir/etcd.env" >"$dir/etcdrun.out" 2>&1 &
	ETCD_PID=$!
	for _ in $(seq 1 600); do
		grep -q '^ready$' "$dir/etcdrun.out" && break
		kill -0 "$ETCD_PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^ready$' "$dir/etcdrun.out" || { cat "$dir/etcdrun.out" >&2; log "etcd did not start"; return 1; }
	. "$dir/etcd.env"
}

# etcd_in CMD...: run CMD where the etcd of etcd_start is reachable (its
# namespace, if any). `ip netns exec` execs CMD in place: same PID.
etcd_in() {
	if [ -n "${ETCD_NS:-}" ]; then ip netns exec "$ETCD_NS" "$@"; else "$@"; fi
}

# etcd_counts: the members' request counters summed, one "name value" a line:
# gRPC calls answered by method, raft proposals committed (the leader's
# count: every member's is the same), WAL fsyncs (all members).
etcd_counts() {
	local e
	for e in $STORE_ENDPOINTS; do
		etcd_in curl -fsS --max-time 5 --cacert "$STORE_CA" --cert "$STORE_CERT" --key "$STORE_KEY" "$e/metrics"
	done | awk '
		/^grpc_server_handled_total\{/ && /grpc_type="unary"/ {
			m = $0; sub(/.*grpc_method="/, "", m); sub(/".*/, "", m); n[m] += $NF
		}
		/^etcd_server_proposals_committed_total / { if ($NF > p) p = $NF }
		/^etcd_disk_wal_fsync_duration_seconds_count / { f += $NF }
		END { for (m in n) print m, n[m]; print "proposals", p + 0; print "fsyncs", f + 0 }'
}

# etcd_delta BEFORE AFTER: "name after-before" for each counter of two etcd_counts outputs.
etcd_delta() {
	join -a2 -e0 -o 2.1,1.2,2.2 <(sort <<<"$1") <(sort <<<"$2") | awk '{print $1, $3 - $2}'
}

# etcd_per D: "name n/D, ..." (two decimals) for the "name n" lines on stdin
# with n > 0, sorted by name; nothing when D is 0.
etcd_per() {
	sort | awk -v d="$1" '$2 > 0 && d > 0 {printf "%s%s %.2f", sep, $1, $2 / d; sep = ", "}'
}
