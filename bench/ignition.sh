#!/usr/bin/env bash
# bench/ignition.sh: Ignition config delivery per node, flint against matchbox
# v0.11.0, in one run; with flint-etcd in SERVERS also flint on its etcd
# store against flint on bbolt (issue 13).
#
# Both servers run on 127.0.0.1 (high ports) with the same 100 machines:
# MACs 02:00:00:00:00:01-64 (hex), nuc1-nuc3 etcd+K3s servers, nuc4-nuc100
# K3s agents.
#   - flint serve (built from this tree, or FLINT_BIN): dhcp.mode off,
#     server.address and server.listen 127.0.0.1, cluster.install_mode live
#     (every boot gets a config), --log-level warn, its own data dir and PKI
#     (created on start), small fake k3s/etcd/etcdctl files as assets;
#   - matchbox v0.11.0 (built from the Go module proxy in a scratch module,
#     cached in .work/): a data dir of 100 groups (one MAC selector each) and
#     two profiles (server, agent) whose Butane templates (variant flatcar
#     1.1.0, what flint renders too) lay down what flint's profiles do: etcd
#     TLS files (flint's PEMs, inline), env files, /etc/hosts of the servers
#     and itself, the same units; -log-level warning.
# cfgload (bench/cfgload) delivers configs in a closed loop with C workers:
#   - flint, per delivery: the machine's iPXE script (a fresh single-use boot
#     token), the pointer config over plain HTTP, then the config over a new
#     TLS connection trusting only the pointer's CA;
#   - matchbox, per delivery: GET /ignition?mac=MAC, once.
# No node report is sent, so no machine becomes installed: the three live
# servers stay "installing" and get their config on every delivery (an
# installed live server would have its etcd member rebuilt instead); the run
# checks that at the end.
# After one warm-up delivery per machine on each server, for C in CLIENTS,
# ROUNDS times (servers alternated), each for DURATION: deliveries/s,
# p50/p99 of the whole delivery, server CPU ms per delivery (utime+stime from
# /proc/PID/stat), peak RSS (VmHWM, reset before each measurement). Prints a
# table with flint/matchbox ratios and the targets (issue "Performance":
# >= 50x matchbox's rate at 8 and 32 clients, p99 <= 10 ms at 8) and appends
# it to bench/README.md. No root needed (loopback, high ports):
#
#   bench/ignition.sh
#
# SERVERS="matchbox flint floor" adds the floor (bench/cfgload/floor.go): a
# stand-in for flint that does only what the protocol itself costs in Go (new
# connections, a full TLS 1.3 handshake with an ECDSA P-256 certificate, an
# in-memory single-use token, flint's agent config from memory), measured
# like flint: the best flint's delivery could do on this machine.
#
# SERVERS="flint flint-etcd" adds flint-etcd: the same flint binary and site
# config with store.backend etcd (ports of its own, its PKI sealed in etcd),
# on a real TLS etcd of ETCD_MEMBERS members on 127.0.0.1 (Debian's
# etcd-server; bench/etcdrun starts it through internal/etcdtest and stops it
# by PID), measured the same way in the same rounds. The report then adds a
# table of bbolt against etcd: rates and their ratio, p50/p99, flint's CPU
# and the etcd members' CPU per delivery, and the etcd requests (gRPC calls
# by method, raft proposals, WAL fsyncs, from the members' /metrics) per
# delivery. Needs etcd-server (make deps).
#
# Knobs: DURATION=10 (seconds per measurement), ROUNDS=3, CLIENTS="1 8 32",
# SERVERS="matchbox flint", ETCD_MEMBERS=3, NO_README=1 (print only), FLINT_BIN=path (another
# flint binary), KEEPALIVE=1 (reuse plain-HTTP connections; by default every
# request opens its own, as a booting node does), PROFILE=1 (build flint with
# net/http/pprof in a scratch copy under .work/, never committed, and take a
# CPU profile of flint and of flint-etcd during their first measurement at
# PROFILE_CLIENTS=8; written to .work/ignition-SERVER-cC.pprof, top printed).
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 8 32"}
SERVERS=${SERVERS:-"matchbox flint"}
PROFILE_CLIENTS=${PROFILE_CLIENTS:-8}
ETCD_MEMBERS=${ETCD_MEMBERS:-3}
MATCHBOX_VERSION=v0.11.0

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. "$ROOT/bench/lib.sh"
README="$ROOT/bench/README.md"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CACHE="$ROOT/.work/matchbox-$MATCHBOX_VERSION"

for srv in $SERVERS; do
	case $srv in
	matchbox | flint | flint-etcd | floor) ;;
	*) echo "bench/ignition.sh: unknown server $srv in SERVERS (matchbox, flint, flint-etcd, floor)" >&2; exit 2 ;;
	esac
done

has() { [[ " $(echo $SERVERS) " == *" $1 "* ]]; } # SERVER: whether SERVERS names it

WORK=""
FLINT_PID=""
FLINT_ETCD_PID=""
ETCD_PID=""
MATCHBOX_PID=""
FLOOR_PID=""
PPROF_SRC=""
cleanup() {
	# Only the processes this script started, by PID.
	stop_pid "$FLINT_PID"
	stop_pid "$FLINT_ETCD_PID"
	stop_pid "$ETCD_PID" # etcdrun: it stops its members by PID
	stop_pid "$MATCHBOX_PID"
	stop_pid "$FLOOR_PID"
	if [ -n "$PPROF_SRC" ]; then rm -rf "$PPROF_SRC"; fi
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/flint-bench-ign.XXXXXX)

# --- binaries --------------------------------------------------------------
log "building flint and cfgload"
if [ -n "${FLINT_BIN:-}" ]; then
	cp "$FLINT_BIN" "$WORK/flint"
elif [ -n "${PROFILE:-}" ]; then
	# A copy of cmd/flint with net/http/pprof on FLINT_PPROF_ADDR. Inside the
	# module (imports resolve), under the gitignored .work/; deleted on exit.
	PPROF_SRC="$ROOT/.work/ignition-pprof-$$"
	mkdir -p "$PPROF_SRC"
	cp cmd/flint/*.go "$PPROF_SRC/"
	rm -f "$PPROF_SRC"/*_test.go
	cat >"$PPROF_SRC/zz_pprof.go" <<'EOF'
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if a := os.Getenv("FLINT_PPROF_ADDR"); a != "" {
		go http.ListenAndServe(a, nil)
	}
}
EOF
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" "./.work/ignition-pprof-$$"
else
	CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/flint" ./cmd/flint
fi
CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/cfgload" ./bench/cfgload
WITH_ETCD=""
ETCD_VERSION=""
if has flint-etcd; then
	WITH_ETCD=1
	command -v etcd >/dev/null || { echo "bench/ignition.sh: flint-etcd needs etcd: apt-get install etcd-server (make deps)" >&2; exit 1; }
	"$GO" build -trimpath -o "$WORK/etcdrun" ./bench/etcdrun
fi
FLINT_VERSION=$(git describe --always --dirty 2>/dev/null || echo unknown)
[ -n "${FLINT_BIN:-}" ] && FLINT_VERSION="$FLINT_VERSION (FLINT_BIN)"
[ -n "${PROFILE:-}" ] && FLINT_VERSION="$FLINT_VERSION (+pprof)"

# matchbox from the module proxy (`go install ...@version` refuses it: its
# go.mod has replace directives), built once and cached.
if [ -n "${MATCHBOX_BIN:-}" ]; then
	cp "$MATCHBOX_BIN" "$WORK/matchbox"
elif [ -x "$CACHE/matchbox" ]; then
	cp "$CACHE/matchbox" "$WORK/matchbox"
else
	log "building matchbox $MATCHBOX_VERSION from the module proxy (cached in .work/)"
	mkdir -p "$WORK/mbx-src"
	cat >"$WORK/mbx-src/go.mod" <<EOF
module bench.local/matchbox

go 1.22

require github.com/poseidon/matchbox $MATCHBOX_VERSION
EOF
	cat >"$WORK/mbx-src/tools.go" <<'EOF'
//go:build tools

package tools

import _ "github.com/poseidon/matchbox/cmd/matchbox"
EOF
	(cd "$WORK/mbx-src" && "$GO" mod tidy && CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/matchbox" github.com/poseidon/matchbox/cmd/matchbox)
	mkdir -p "$CACHE"
	cp "$WORK/matchbox" "$CACHE/matchbox.tmp" && mv "$CACHE/matchbox.tmp" "$CACHE/matchbox"
fi

# --- helpers ---------------------------------------------------------------
# A TCP port nothing on 127.0.0.1 listens on (bounded tries).

wait_http() { # URL PID [SECONDS]
	local tries=$((${3:-30} * 10))
	for _ in $(seq 1 "$tries"); do
		kill -0 "$2" 2>/dev/null || return 1
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

indent() { sed "s/^/$1/" "$2"; } # PREFIX FILE

# --- the 100 machines and the assets -----------------------------------------
NMACHINES=100
NSERVERS=3
: >"$WORK/macs.txt"
for i in $(seq 1 $NMACHINES); do printf '02:00:00:00:00:%02x\n' "$i" >>"$WORK/macs.txt"; done
role_of() { if [ "$1" -le $NSERVERS ]; then echo server; else echo agent; fi; }

mkdir -p "$WORK/www/k3s" "$WORK/www/etcd" "$WORK/www/flatcar" "$WORK/ipxe" "$WORK/flint-data" "$WORK/mbx-data"
for f in k3s/k3s etcd/etcd etcd/etcdctl flatcar/flatcar_production_pxe.vmlinuz flatcar/flatcar_production_pxe_image.cpio.gz; do
	head -c 65536 /dev/urandom >"$WORK/www/$f" # stand-ins: only their hashes go into the configs
done
SSH_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlintBenchFlintBenchFlintBenchFlintBenchFlin bench@flint"

# --- flint -----------------------------------------------------------------
flint_config() { # HTTP_PORT HTTPS_PORT TFTP_PORT: the site config, without a store section
	cat <<EOF
server: {address: 127.0.0.1, listen: 127.0.0.1, http_port: $1, https_port: $2, tftp_port: $3}
dhcp: {mode: "off", subnet: 198.18.1.0/24, router: 198.18.1.1, dns: [198.18.1.1], domain: bench.example}
ipxe: {directory: $WORK/ipxe}
boot: {assets_dir: $WORK/www}
cluster:
  name: bench
  install_mode: live
  ssh_authorized_keys: ["$SSH_KEY"]
machines:
EOF
	for i in $(seq 1 $NMACHINES); do
		printf '  - {mac: "02:00:00:00:00:%02x", hostname: nuc%d, ip: 198.18.1.%d, role: %s}\n' "$i" "$i" $((10 + i)) "$(role_of "$i")"
	done
}
FPORT=$(free_port)
FTLS=$(free_port)
flint_config "$FPORT" "$FTLS" "$(free_port)" >"$WORK/flint.yaml"

declare -A PPROF_ADDR
if [ -n "${PROFILE:-}" ]; then
	PPROF_ADDR[flint]="127.0.0.1:$(free_port)"
	PPROF_ADDR[flint-etcd]="127.0.0.1:$(free_port)"
fi
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; } # T0: seconds since
log "starting flint (it renders all $NMACHINES machines before it serves)"
FLINT_PPROF_ADDR=${PPROF_ADDR[flint]:-} "$WORK/flint" serve --log-level warn --config "$WORK/flint.yaml" --data "$WORK/flint-data" >"$WORK/flint.out" 2>&1 &
FLINT_PID=$!
FLINT_URL="http://127.0.0.1:$FPORT"
T0=$(date +%s.%N)
wait_http "$FLINT_URL/healthz" "$FLINT_PID" 120 || { cat "$WORK/flint.out" >&2; exit 1; }
FLINT_START_S=$(since "$T0")
FLINT_IDLE_KIB=$(vmrss_kib "$FLINT_PID")

# --- flint-etcd: the same site on an etcd store --------------------------------
if [ -n "$WITH_ETCD" ]; then
	log "starting a $ETCD_MEMBERS-member TLS etcd on 127.0.0.1 (bench/etcdrun)"
	mkdir -p "$WORK/flint-etcd-data"
	etcd_start "$WORK/etcdrun" "$WORK" "$ETCD_MEMBERS" || exit 1
	FEPORT=$(free_port)
	{ flint_config "$FEPORT" "$(free_port)" "$(free_port)"; cat "$WORK/store.yaml"; } >"$WORK/flint-etcd.yaml"
	log "starting flint-etcd"
	FLINT_PPROF_ADDR=${PPROF_ADDR[flint-etcd]:-} "$WORK/flint" serve --log-level warn --config "$WORK/flint-etcd.yaml" --data "$WORK/flint-etcd-data" >"$WORK/flint-etcd.out" 2>&1 &
	FLINT_ETCD_PID=$!
	FLINT_ETCD_URL="http://127.0.0.1:$FEPORT"
	T0=$(date +%s.%N)
	wait_http "$FLINT_ETCD_URL/healthz" "$FLINT_ETCD_PID" 120 || { cat "$WORK/flint-etcd.out" >&2; exit 1; }
	FLINT_ETCD_START_S=$(since "$T0")
	FLINT_ETCD_IDLE_KIB=$(vmrss_kib "$FLINT_ETCD_PID")
fi

# --- matchbox data: groups, profiles, Butane templates like flint's profiles ---
PKI="$WORK/flint-data/pki"
sha() { sha512sum "$WORK/www/$1" | cut -d' ' -f1; }
MPORT=$(free_port)
MATCHBOX_URL="http://127.0.0.1:$MPORT"
mkdir -p "$WORK/mbx-data/groups" "$WORK/mbx-data/profiles" "$WORK/mbx-data/ignition"
for i in $(seq 1 $NMACHINES); do
	r=$(role_of "$i")
	printf '{\n  "id": "nuc%d",\n  "name": "nuc%d (%s)",\n  "profile": "%s",\n  "selector": {"mac": "02:00:00:00:00:%02x"},\n  "metadata": {"hostname": "nuc%d", "ip": "198.18.1.%d", "role": "%s"}\n}\n' \
		"$i" "$i" "$r" "$r" "$i" "$i" $((10 + i)) "$r" >"$WORK/mbx-data/groups/nuc$i.json"
done
for r in server agent; do
	printf '{\n  "id": "%s",\n  "name": "K3s %s",\n  "ignition_id": "%s.yaml"\n}\n' "$r" "$r" "$r" >"$WORK/mbx-data/profiles/$r.json"
done
# Static parts; {{.hostname}}, {{.ip}}, {{.mac}} come from the group.
# Like flint's: the servers, and the machine itself if it is an agent.
HOSTS=$(printf '          127.0.0.1 localhost\n          ::1 localhost'; for i in $(seq 1 $NSERVERS); do printf '\n          198.18.1.%d nuc%d.bench.example nuc%d' $((10 + i)) "$i" "$i"; done
	printf '\n          {{if ne .role "server"}}{{.ip}} {{.hostname}}.bench.example {{.hostname}}{{end}}')
REPORT_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mbx_common() { # UPDATE_STRATEGY NODE_PASSWORD_FILE
	cat <<EOF
variant: flatcar
version: 1.1.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - "$SSH_KEY"
storage:
  directories:
    - path: /var/lib/etcd
      mode: 0700
      user:
        id: 232
      group:
        id: 232
  files:
    - path: /etc/hostname
      mode: 0644
      overwrite: true
      contents:
        inline: |
          {{.hostname}}
    - path: /etc/systemd/network/00-flint.network
      mode: 0644
      overwrite: true
      contents:
        inline: |
          [Match]
          MACAddress={{.mac}}

          [Network]
          Address={{.ip}}/24
          Gateway=198.18.1.1
          DNS=198.18.1.1
          Domains=bench.example
    - path: /etc/hosts
      mode: 0644
      overwrite: true
      contents:
        inline: |
$HOSTS
    - path: /etc/flatcar/update.conf
      mode: 0644
      overwrite: true
      contents:
        inline: |
          REBOOT_STRATEGY=$1
    - path: /opt/bin/k3s
      mode: 0755
      overwrite: true
      contents:
        source: "$MATCHBOX_URL/assets/k3s/k3s"
        verification:
          hash: sha512-$(sha k3s/k3s)
    - path: /etc/rancher/node/password
      mode: 0600
      overwrite: true
      user:
        id: 0
      group:
        id: 0
      contents:
        inline: "$(cat "$2")"
    - path: /etc/flint/ca.crt
      mode: 0644
      overwrite: true
      contents:
        inline: |
$(indent '          ' "$PKI/ca.crt")
    - path: /etc/flint/report.header
      mode: 0600
      overwrite: true
      user:
        id: 0
      group:
        id: 0
      contents:
        inline: "Authorization: Bearer $REPORT_TOKEN"
    - path: /opt/bin/flint-report
      mode: 0755
      overwrite: true
      contents:
        inline: |
          #!/bin/bash
          # flint-report EVENT [DETAIL]: post a progress event to flint.
          event=\$1
          detail=\${2:-}
          detail=\${detail//[\"\\\\]/}
          body=\$(printf '{"mac":"%s","event":"%s","detail":"%s"}' '{{.mac}}' "\$event" "\$detail")
          curl -fsS --max-time 10 --retry 5 --retry-delay 2 --cacert /etc/flint/ca.crt \\
            -H @/etc/flint/report.header -H 'Content-Type: application/json' \\
            --data "\$body" -o /dev/null 'https://127.0.0.1:$FTLS/api/v1/events' || true
EOF
}
mbx_pem() { # PATH MODE UID FILE
	cat <<EOF
    - path: $1
      mode: $2
      overwrite: true
      user:
        id: $3
      group:
        id: $3
      contents:
        inline: |
$(indent '          ' "$4")
EOF
}
mbx_unit_report() { # NAME DESCRIPTION DEPENDENCY EVENT DETAIL
	cat <<EOF
    - name: $1
      enabled: true
      contents: |
        [Unit]
        Description=$2
        $3

        [Service]
        Type=oneshot
        ExecStart=/opt/bin/flint-report $4 "$5"

        [Install]
        WantedBy=multi-user.target
EOF
}
K3S_TOKEN=$(cat "$PKI/k3s-token")
K3S_AGENT_TOKEN=$(cat "$PKI/k3s-agent-token")
ETCD_CLUSTER="nuc1=https://198.18.1.11:2380,nuc2=https://198.18.1.12:2380,nuc3=https://198.18.1.13:2380"
ETCD_ENDPOINTS="https://198.18.1.11:2379,https://198.18.1.12:2379,https://198.18.1.13:2379"
{
	mbx_common off "$PKI/node-passwords/nuc1"
	mbx_pem /etc/ssl/etcd/ca.crt 0644 232 "$PKI/ca.crt"
	mbx_pem /etc/ssl/etcd/server.crt 0644 232 "$PKI/etcd/nuc1-server.crt"
	mbx_pem /etc/ssl/etcd/server.key 0600 232 "$PKI/etcd/nuc1-server.key"
	mbx_pem /etc/ssl/etcd/peer.crt 0644 232 "$PKI/etcd/nuc1-peer.crt"
	mbx_pem /etc/ssl/etcd/peer.key 0600 232 "$PKI/etcd/nuc1-peer.key"
	mbx_pem /etc/ssl/etcd/client.crt 0644 232 "$PKI/clients/k3s-datastore.crt"
	mbx_pem /etc/ssl/etcd/client.key 0600 232 "$PKI/clients/k3s-datastore.key"
	cat <<EOF
    - path: /etc/etcd/etcd.env
      mode: 0644
      overwrite: true
      contents:
        inline: |
          ETCD_NAME={{.hostname}}
          ETCD_DATA_DIR=/var/lib/etcd
          ETCD_LISTEN_CLIENT_URLS=https://{{.ip}}:2379,https://127.0.0.1:2379
          ETCD_ADVERTISE_CLIENT_URLS=https://{{.ip}}:2379
          ETCD_LISTEN_PEER_URLS=https://{{.ip}}:2380
          ETCD_INITIAL_ADVERTISE_PEER_URLS=https://{{.ip}}:2380
          ETCD_INITIAL_CLUSTER=$ETCD_CLUSTER
          ETCD_INITIAL_CLUSTER_STATE=new
          ETCD_INITIAL_CLUSTER_TOKEN=flint-bench
          ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.crt
          ETCD_CERT_FILE=/etc/ssl/etcd/server.crt
          ETCD_KEY_FILE=/etc/ssl/etcd/server.key
          ETCD_CLIENT_CERT_AUTH=true
          ETCD_PEER_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.crt
          ETCD_PEER_CERT_FILE=/etc/ssl/etcd/peer.crt
          ETCD_PEER_KEY_FILE=/etc/ssl/etcd/peer.key
          ETCD_PEER_CLIENT_CERT_AUTH=true
    - path: /opt/bin/etcd
      mode: 0755
      overwrite: true
      contents:
        source: "$MATCHBOX_URL/assets/etcd/etcd"
        verification:
          hash: sha512-$(sha etcd/etcd)
    - path: /opt/bin/etcdctl
      mode: 0755
      overwrite: true
      contents:
        source: "$MATCHBOX_URL/assets/etcd/etcdctl"
        verification:
          hash: sha512-$(sha etcd/etcdctl)
    - path: /opt/bin/etcd-wait-healthy
      mode: 0755
      overwrite: true
      contents:
        inline: |
          #!/bin/sh
          # Written by flint: waits until the local etcd member is healthy.
          until curl --silent --fail --max-time 5 \\
              --cacert /etc/ssl/etcd/ca.crt \\
              --cert /etc/ssl/etcd/client.crt \\
              --key /etc/ssl/etcd/client.key \\
              https://127.0.0.1:2379/health | grep -q '"health":"true"'; do
            sleep 2
          done
    - path: /etc/rancher/k3s/k3s.env
      mode: 0600
      overwrite: true
      user:
        id: 0
      group:
        id: 0
      contents:
        inline: |
          K3S_TOKEN=$K3S_TOKEN
          K3S_AGENT_TOKEN=$K3S_AGENT_TOKEN
          K3S_DATASTORE_ENDPOINT=$ETCD_ENDPOINTS
          K3S_DATASTORE_CAFILE=/etc/ssl/etcd/ca.crt
          K3S_DATASTORE_CERTFILE=/etc/ssl/etcd/client.crt
          K3S_DATASTORE_KEYFILE=/etc/ssl/etcd/client.key
systemd:
  units:
EOF
	mbx_unit_report flint-report-applied.service "Tell flint that {{.hostname}} booted with its config" \
		$'Wants=network-online.target\n        After=network-online.target' config-applied "{{.hostname}} booted with its server config"
	mbx_unit_report flint-report-etcd.service "Tell flint that etcd member {{.hostname}} is healthy" \
		$'Requires=etcd-healthy.service\n        After=etcd-healthy.service' etcd-healthy "member {{.hostname}} answers /health"
	mbx_unit_report flint-report-k3s.service "Tell flint that K3s runs on {{.hostname}}" \
		$'Requires=k3s.service\n        After=k3s.service' k3s-up server
	cat <<'EOF'
    - name: etcd.service
      enabled: true
      contents: |
        [Unit]
        Description=etcd member {{.hostname}} of cluster bench
        Documentation=https://etcd.io/docs/
        Wants=network-online.target
        After=network-online.target

        [Service]
        # etcd notifies systemd once it has joined; the first member waits for
        # the others, so no start timeout.
        Type=notify
        User=232
        Group=232
        EnvironmentFile=/etc/etcd/etcd.env
        ExecStart=/opt/bin/etcd
        Restart=always
        RestartSec=5s
        TimeoutStartSec=0
        LimitNOFILE=65536

        [Install]
        WantedBy=multi-user.target
    - name: etcd-healthy.service
      enabled: true
      contents: |
        [Unit]
        Description=Wait until the local etcd member is healthy
        Wants=etcd.service
        After=etcd.service

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        TimeoutStartSec=0
        ExecStart=/opt/bin/etcd-wait-healthy

        [Install]
        WantedBy=multi-user.target
    - name: k3s.service
      enabled: true
      contents: |
        [Unit]
        Description=K3s server {{.hostname}}
        Documentation=https://k3s.io
        Wants=network-online.target
        Requires=etcd-healthy.service
        After=network-online.target etcd-healthy.service

        [Service]
        Type=notify
        EnvironmentFile=/etc/rancher/k3s/k3s.env
        KillMode=process
        Delegate=yes
        LimitNOFILE=1048576
        LimitNPROC=infinity
        LimitCORE=infinity
        TasksMax=infinity
        TimeoutStartSec=0
        Restart=always
        RestartSec=5s
        ExecStartPre=-/usr/sbin/modprobe br_netfilter
        ExecStartPre=-/usr/sbin/modprobe overlay
        ExecStart=/opt/bin/k3s server --tls-san 198.18.1.11 --node-name {{.hostname}}

        [Install]
        WantedBy=multi-user.target
EOF
} >"$WORK/mbx-data/ignition/server.yaml"
{
	# Agents: no /var/lib/etcd (drop those six lines of the common part).
	mbx_common reboot "$PKI/node-passwords/nuc4" | sed '/^  directories:$/,/^  files:$/{/^  files:$/!d}'
	cat <<EOF
    - path: /etc/rancher/k3s/k3s.env
      mode: 0600
      overwrite: true
      user:
        id: 0
      group:
        id: 0
      contents:
        inline: |
          K3S_URL=https://198.18.1.11:6443
          K3S_TOKEN=$K3S_AGENT_TOKEN
systemd:
  units:
EOF
	mbx_unit_report flint-report-applied.service "Tell flint that {{.hostname}} booted with its config" \
		$'Wants=network-online.target\n        After=network-online.target' config-applied "{{.hostname}} booted with its agent config"
	mbx_unit_report flint-report-k3s.service "Tell flint that K3s runs on {{.hostname}}" \
		$'Requires=k3s-agent.service\n        After=k3s-agent.service' k3s-up agent
	cat <<'EOF'
    - name: k3s-agent.service
      enabled: true
      contents: |
        [Unit]
        Description=K3s agent {{.hostname}}
        Documentation=https://k3s.io
        Wants=network-online.target
        After=network-online.target

        [Service]
        Type=exec
        EnvironmentFile=/etc/rancher/k3s/k3s.env
        KillMode=process
        Delegate=yes
        LimitNOFILE=1048576
        LimitNPROC=infinity
        LimitCORE=infinity
        TasksMax=infinity
        TimeoutStartSec=0
        Restart=always
        RestartSec=5s
        ExecStartPre=-/usr/sbin/modprobe br_netfilter
        ExecStartPre=-/usr/sbin/modprobe overlay
        ExecStart=/opt/bin/k3s agent --node-name {{.hostname}}

        [Install]
        WantedBy=multi-user.target
EOF
} >"$WORK/mbx-data/ignition/agent.yaml"

log "starting matchbox $MATCHBOX_VERSION"
"$WORK/matchbox" -address "127.0.0.1:$MPORT" -data-path "$WORK/mbx-data" -assets-path "$WORK/www" \
	-log-level warning >"$WORK/matchbox.out" 2>&1 &
MATCHBOX_PID=$!
wait_http "$MATCHBOX_URL/" "$MATCHBOX_PID" 30 || { cat "$WORK/matchbox.out" >&2; exit 1; }
MATCHBOX_IDLE_KIB=$(vmrss_kib "$MATCHBOX_PID")

# --- one delivery of a server and an agent by hand (curl), sizes -----------
count_paths() { grep -o '"path":' "$1" | wc -l; }
count_units() { grep -o '"name":"[^"]*\.service"' "$1" | wc -l; }
SIZES=""
for i in 1 4; do
	mac=$(printf '02-00-00-00-00-%02x' "$i")
	curl -fsS -o "$WORK/mbx-$i.json" "$MATCHBOX_URL/ignition?mac=$mac"
	url=$(curl -fsS "$FLINT_URL/machines/$mac/boot.ipxe?arch=x86_64" | grep -o 'ignition\.config\.url=[^ ]*' | head -1 | cut -d= -f2-)
	tls=$(curl -fsS -H 'Accept: application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1' "$url" | grep -o '"source":"https://[^"]*"' | cut -d'"' -f4 | sed 's/\\u0026/\&/g')
	curl -fsS --cacert "$PKI/ca.crt" -H 'Accept: application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1' -o "$WORK/flint-$i.json" "$tls"
	for s in flint mbx; do
		grep -q '"version":"3\.' "$WORK/$s-$i.json" || { echo "bench: $s's config of nuc$i is not Ignition 3.x:" >&2; head -c 400 "$WORK/$s-$i.json" >&2; exit 1; }
	done
	SIZES+="nuc$i ($(role_of "$i")): flint $(wc -c <"$WORK/flint-$i.json") bytes, $(count_paths "$WORK/flint-$i.json") files and directories, $(count_units "$WORK/flint-$i.json") units; matchbox $(wc -c <"$WORK/mbx-$i.json") bytes, $(count_paths "$WORK/mbx-$i.json") files and directories, $(count_units "$WORK/mbx-$i.json") units. "
done
log "configs: $SIZES"

if has floor; then
	FLOOR_HTTP=$(free_port)
	FLOOR_TLS=$(free_port)
	"$WORK/cfgload" -serve-floor "127.0.0.1:$FLOOR_HTTP,127.0.0.1:$FLOOR_TLS,$WORK/flint-4.json" >"$WORK/floor.out" 2>&1 &
	FLOOR_PID=$!
	FLOOR_URL="http://127.0.0.1:$FLOOR_HTTP"
	wait_http "$FLOOR_URL/healthz" "$FLOOR_PID" 10 || { cat "$WORK/floor.out" >&2; exit 1; }
fi

# --- warm-up: one delivery per machine on each server -----------------------
KA=""
[ -n "${KEEPALIVE:-}" ] && KA="-keepalive"
server_pid() { # SERVER: the PID whose CPU and memory count as the server's
	case $1 in
	flint) echo "$FLINT_PID" ;;
	flint-etcd) echo "$FLINT_ETCD_PID" ;; # flint only: its etcd is counted apart
	floor) echo "$FLOOR_PID" ;;
	matchbox) echo "$MATCHBOX_PID" ;;
	esac
}
load() { # SERVER CLIENTS [cfgload flags...]
	local srv=$1 c=$2 url mode=flint
	shift 2
	case $srv in
	flint) url=$FLINT_URL ;;
	flint-etcd) url=$FLINT_ETCD_URL ;;
	floor) url=$FLOOR_URL ;;
	matchbox) url=$MATCHBOX_URL mode=matchbox ;;
	esac
	"$WORK/cfgload" -mode "$mode" -label "$srv" -url "$url" -macs "$WORK/macs.txt" -c "$c" -pid "$(server_pid "$srv")" $KA "$@"
}
for srv in $SERVERS; do
	out=$(load "$srv" 8 -n $NMACHINES)
	log "warm-up, $srv: $out"
	[ "$(field "$out" errors)" = 0 ] || { echo "bench: $srv failed its warm-up" >&2; exit 1; }
done

# --- measurements ----------------------------------------------------------
declare -A RES RSS PROFILED ECOUNT
EOK=0 # flint-etcd's deliveries measured, for ECOUNT (etcd requests in them)
for r in $(seq 1 "$ROUNDS"); do
	for c in $CLIENTS; do
		order=$SERVERS
		# Alternate which server goes first, so drift favours neither.
		[ $((r % 2)) -eq 0 ] && order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')
		for srv in $order; do
			pid=$(server_pid "$srv")
			echo 5 >"/proc/$pid/clear_refs" # reset VmHWM to the current RSS
			prof_pid=""
			if [ -n "${PPROF_ADDR[$srv]:-}" ] && [ -z "${PROFILED[$srv]:-}" ] && [ "$c" = "$PROFILE_CLIENTS" ]; then
				PROFILED[$srv]="$ROOT/.work/ignition-$srv-c$c.pprof"
				psecs=$((DURATION > 3 ? DURATION - 2 : 1))
				(sleep 1; curl -fsS -o "${PROFILED[$srv]}" "http://${PPROF_ADDR[$srv]}/debug/pprof/profile?seconds=$psecs") &
				prof_pid=$!
			fi
			if [ "$srv" = flint-etcd ]; then
				counts0=$(etcd_counts)
				eticks0=$(cpu_ticks "$ETCD_PID") # etcdrun and its members
			fi
			out=$(load "$srv" "$c" -duration "${DURATION}s")
			if [ "$srv" = flint-etcd ]; then
				eticks=$(($(cpu_ticks "$ETCD_PID") - eticks0))
				ok=$(field "$out" ok)
				out+=" etcd_cpu_ms=$(awk -v t="$eticks" -v n="$ok" 'BEGIN {if (n > 0) printf "%.3f", t * 10 / n; else print "na"}')"
				while read -r name n; do
					ECOUNT[$name]=$((${ECOUNT[$name]:-0} + n))
				done < <(etcd_delta "$counts0" "$(etcd_counts)")
				EOK=$((EOK + ok))
			fi
			if [ -n "$prof_pid" ]; then wait "$prof_pid" || { log "profile failed"; PROFILED[$srv]=""; }; fi
			log "round $r, $c clients, $srv: $out"
			RES[$srv,$c]+="$out
"
			RSS[$srv,$c]+="$(vmhwm_kib "$pid") "
		done
	done
done

# --- flint's machines: nobody was installed, servers still installing ---------
STATES=$("$WORK/flint" machines --data "$WORK/flint-data" --json 2>/dev/null | awk -F'"' '/"state":/ {s[$4]++} END {for (k in s) printf "%s %d, ", k, s[k]}' | sed 's/, $//')
log "flint machine states after the run: $STATES"
if [ -n "$WITH_ETCD" ]; then
	ETCD_STATES=$("$WORK/flint" machines --config "$WORK/flint-etcd.yaml" --data "$WORK/flint-etcd-data" --json 2>/dev/null | awk -F'"' '/"state":/ {s[$4]++} END {for (k in s) printf "%s %d, ", k, s[k]}' | sed 's/, $//')
	log "flint-etcd machine states after the run: $ETCD_STATES"
fi

# How long each server takes to stop on SIGTERM.
stop_timed() { # PID -> seconds
	local t0
	t0=$(date +%s.%N)
	stop_pid "$1"
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'
}
FLINT_STOP_S=$(stop_timed "$FLINT_PID")
FLINT_PID=""
if [ -n "$WITH_ETCD" ]; then
	FLINT_ETCD_STOP_S=$(stop_timed "$FLINT_ETCD_PID")
	FLINT_ETCD_PID=""
	stop_pid "$ETCD_PID"
	ETCD_PID=""
fi
MATCHBOX_STOP_S=$(stop_timed "$MATCHBOX_PID")
MATCHBOX_PID=""

# --- report ----------------------------------------------------------------
col() { grep . <<<"${RES[$1,$2]}" | while read -r l; do field "$l" "$3"; done | median; }
sum() { grep . <<<"${RES[$1,$2]}" | while read -r l; do field "$l" "$3"; done | awk '{s += $1} END {print s + 0}'; }
TABLE="| clients | server | deliveries/s | vs matchbox | p50 ms | p90 ms | p99 ms | server CPU ms/delivery | CPU vs matchbox | cfgload CPU ms/delivery | peak RSS | errors |
|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
TARGETS=""
STEPS=""
for c in $CLIENTS; do
	mrate="" mcpu=""
	if has matchbox; then mrate=$(col matchbox "$c" rate) mcpu=$(col matchbox "$c" cpu_ms); fi
	for srv in $SERVERS; do
		rate=$(col "$srv" "$c" rate)
		cpu=$(col "$srv" "$c" cpu_ms)
		ratio="-" cratio="-"
		if [ "$srv" != matchbox ] && [ -n "$mrate" ]; then
			ratio=$(awk -v a="$rate" -v b="$mrate" 'BEGIN {if (b > 0) printf "%.1fx", a / b; else print "-"}')
			cratio=$(awk -v a="$cpu" -v b="$mcpu" 'BEGIN {if (a > 0) printf "%.1fx", b / a; else print "-"}')
		fi
		rss=$(tr ' ' '\n' <<<"${RSS[$srv,$c]}" | grep . | sort -n | tail -1)
		TABLE+="
| $c | $srv | $rate | $ratio | $(col "$srv" "$c" p50_ms) | $(col "$srv" "$c" p90_ms) | $(col "$srv" "$c" p99_ms) | $cpu | $cratio | $(col "$srv" "$c" client_cpu_ms) | $(awk -v k="$rss" 'BEGIN {printf "%.0f MiB", k / 1024}') | $(sum "$srv" "$c" errors) |"
	done
	for srv in flint flint-etcd floor; do
		has "$srv" || continue
		STEPS+="$srv c=$c: script $(col $srv "$c" script_p50_ms), pointer $(col $srv "$c" pointer_p50_ms), TLS config $(col $srv "$c" tls_config_p50_ms) ms; "
	done
	if has flint; then
		if [ -n "$mrate" ]; then
			ok=$(awk -v a="$(col flint "$c" rate)" -v b="$mrate" 'BEGIN {print (b > 0 && a >= 50 * b) ? "met" : "missed"}')
			case $c in
			8) TARGETS+="c=8: rate >= 50x $ok, p99 <= 10 ms $(awk -v p="$(col flint 8 p99_ms)" 'BEGIN {print (p <= 10) ? "met" : "missed"}'); " ;;
			32) TARGETS+="c=32: rate >= 50x $ok; " ;;
			esac
		fi
	fi
done

CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1024 / 1024}' /proc/meminfo)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CONN="every request on a new TCP connection (as a booting node), flint's config on a new TLS connection (full handshake, HTTP/1.1)"
[ -n "$KA" ] && CONN="plain-HTTP requests on kept-alive connections, flint's config on a new TLS connection (full handshake, HTTP/1.1)"
TARGETS=${TARGETS%; }

# bbolt against etcd: flint against flint-etcd, clients by clients.
ETCD_REPORT=""
if [ -n "$WITH_ETCD" ]; then
	ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/^etcd Version:/ {print $3}')
	if has flint; then
		ETABLE="| clients | bbolt deliveries/s | etcd deliveries/s | bbolt / etcd | p50 ms bbolt / etcd | p99 ms bbolt / etcd | flint CPU ms/delivery bbolt / etcd | etcd CPU ms/delivery | errors bbolt / etcd |
|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
		for c in $CLIENTS; do
			ETABLE+="
| $c | $(col flint "$c" rate) | $(col flint-etcd "$c" rate) | $(ratio "$(col flint "$c" rate)" "$(col flint-etcd "$c" rate)") | $(col flint "$c" p50_ms) / $(col flint-etcd "$c" p50_ms) | $(col flint "$c" p99_ms) / $(col flint-etcd "$c" p99_ms) | $(col flint "$c" cpu_ms) / $(col flint-etcd "$c" cpu_ms) | $(col flint-etcd "$c" etcd_cpu_ms) | $(sum flint "$c" errors) / $(sum flint-etcd "$c" errors) |"
		done
	else
		ETABLE="(no flint on bbolt in SERVERS: nothing to compare)"
	fi
	PER=$(for name in "${!ECOUNT[@]}"; do echo "$name ${ECOUNT[$name]}"; done | etcd_per "$EOK")
	ETCD_REPORT="
flint on bbolt (flint) against flint on etcd (flint-etcd): the same binary and site, a $ETCD_MEMBERS-member etcd $ETCD_VERSION on 127.0.0.1 (TLS, client certificates; on the same $(nproc) cores). bbolt / etcd is how many times more deliveries flint makes on bbolt; flint CPU is flint's process only, etcd CPU all members together.

$ETABLE

etcd per delivery (the members' /metrics over all $EOK measured flint-etcd deliveries, flint's background work included; gRPC calls by method, raft proposals committed, WAL fsyncs summed over the members): $PER.
"
fi
HEADING="ignition.sh: $DATE, $(hostname)"
[ -n "$WITH_ETCD" ] && HEADING+=", flint on bbolt and on etcd"
[ -n "$WITH_ETCD" ] && STATES+="; flint-etcd: $ETCD_STATES"
ETCD_START=""
[ -n "$WITH_ETCD" ] && ETCD_START=" flint-etcd started in ${FLINT_ETCD_START_S}s and stopped ${FLINT_ETCD_STOP_S}s after SIGTERM, idle RSS $((FLINT_ETCD_IDLE_KIB / 1024)) MiB."
REPORT="### $HEADING

Machine: $(nproc) cores ($CPU_MODEL), $MEM, Linux $(uname -r). Servers and cfgload share the cores; loopback.
Load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews absolute numbers; the ratio less so).
Versions: flint $FLINT_VERSION (go $("$GO" env GOVERSION)), matchbox $MATCHBOX_VERSION${ETCD_VERSION:+, etcd $ETCD_VERSION}.
Machines: $NMACHINES (nuc1-3 servers, nuc4-100 agents, all install_mode live; no node reports, so every machine stays installing and gets its config on every delivery; after the run: $STATES).
Delivery: flint = iPXE script (fresh boot token) + pointer + config over TLS; matchbox = one GET /ignition; $CONN.
Configs: ${SIZES}flint started in ${FLINT_START_S}s (renders every machine first) and stopped ${FLINT_STOP_S}s after SIGTERM (matchbox: ${MATCHBOX_STOP_S}s); idle RSS flint $((FLINT_IDLE_KIB / 1024)) MiB, matchbox $((MATCHBOX_IDLE_KIB / 1024)) MiB.$ETCD_START
${DURATION}s per measurement, medians of $ROUNDS rounds (servers alternated); errors summed; peak RSS the highest of the rounds.
CPU per delivery from /proc/PID/stat (10 ms ticks; loopback receive work is charged to the sender). CPU vs matchbox is matchbox's CPU per request over the server's CPU per delivery: the rate ratio if each server had the cores to itself. cfgload (the load generator: TLS client, new connections, JSON) shares the same cores, so its CPU per delivery bounds the rates too.

$TABLE

Steps (p50): ${STEPS%; }.
Targets (flint's whole delivery vs matchbox's single request): ${TARGETS:-not checked (they need flint and matchbox at 8 or 32 clients)}.
$ETCD_REPORT"
echo
echo "$REPORT"
for srv in "${!PROFILED[@]}"; do
	[ -n "${PROFILED[$srv]}" ] || continue
	log "CPU profile of $srv at $PROFILE_CLIENTS clients: ${PROFILED[$srv]}"
	"$GO" tool pprof -top -nodecount=30 "${PROFILED[$srv]}" 2>/dev/null | head -40 >&2 || true
	"$GO" tool pprof -top -cum -nodecount=40 "${PROFILED[$srv]}" 2>/dev/null | head -50 >&2 || true
done
if [ -z "${NO_README:-}" ]; then
	printf '\n%s' "$REPORT" >>"$README"
	log "appended to bench/README.md"
fi
