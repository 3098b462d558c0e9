package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// TestHAQuorum is issue #13's proof of what the pair of flint instances does
// when its etcd degrades, step by step on one lab:
//
//  1. one etcd member down (SIGKILL): nothing stops; a new machine gets an
//     address and node1's script is served;
//  2. quorum lost (a second member killed): no new address is handed out
//     (a new client's DISCOVERs go unanswered), the machines already bound,
//     a pool client and node1 with its reservation, renew (udhcpc's renew on
//     SIGUSR1, answered from the instance's memory), and flint says why:
//     its log names the quorum, flint_store_up is 0, claims that did not
//     commit are counted as unavailable;
//  3. quorum back (both members restarted on their data): the new client
//     gets its address, and every lease from before is still on record.
func TestHAQuorum(t *testing.T) {
	e := newHAEnv(t, haSite([]machine{node1}))
	e.start(e.A)
	e.start(e.B)
	l := e.lab
	members := e.etcd.Members

	// Machines that hold their leases through the whole test: udhcpc keeps
	// running, applies the address and logs every bound and renew.
	bound := newRenewer(t, l, l.AddHost(t, "bound", "52:54:00:dd:03:01"))
	n1 := newRenewer(t, l, l.AddHost(t, "node1", node1.MAC))
	for _, r := range []*renewer{bound, n1} {
		if err := r.waitEvents(1, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	boundIP, n1IP := bound.ip(), n1.ip()
	if !haInPool(boundIP) || n1IP != node1.IP {
		t.Fatalf("before the test: pool client got %q, node1 %q (want its reservation %s)", boundIP, n1IP, node1.IP)
	}

	t.Run("one-member-down", func(t *testing.T) {
		e.etcd.Kill(members[2])
		h := l.AddHost(t, "new1", "52:54:00:dd:03:02")
		le, r := h.Udhcpc(t, 60*time.Second, "-t", "10")
		if le == nil || !haInPool(le.IP) {
			t.Fatalf("with one etcd member down a new client got no pool address:\n%s", r)
		}
		for _, f := range []*haFlint{e.A, e.B} {
			code, r := l.Curl(n1.host.NS, f.HTTP()+"/machines/"+hexhyp(node1.MAC)+"/boot.ipxe")
			if code != "200" || !strings.Contains(r.Stdout, "kernel ") {
				t.Errorf("with one etcd member down, node1's script from %s: %s\n%s", f.Name, code, r.Stdout)
			}
		}
		t.Logf("one member down: a new client got %s from %s; node1's script served by both instances", le.IP, le.ServerID)
	})

	var lost time.Time
	t.Run("quorum-lost", func(t *testing.T) {
		e.etcd.Kill(members[1])
		lost = time.Now()
		h := l.AddHost(t, "new2", "52:54:00:dd:03:03")
		// A client gives up after its DISCOVERs; no instance may offer an
		// address it could not claim.
		if le, r := h.Udhcpc(t, 60*time.Second, "-t", "6", "-T", "2"); le != nil {
			t.Errorf("without quorum a new client got %s from %s: no address may go out without a committed claim\n%s", le.IP, le.ServerID, r)
		}
		for _, r := range []*renewer{bound, n1} {
			before := r.count()
			r.renew()
			if err := r.waitEvents(before+1, 30*time.Second); err != nil {
				t.Errorf("without quorum: %v", err)
				continue
			}
			ev := r.last()
			if ev[0] != "renew" || ev[1] != r.ip() {
				t.Errorf("without quorum %s's renewal gave %q, want renew of %s", r.host.Name, ev, r.ip())
			}
			t.Logf("without quorum %s renewed %s from %s (lease %ss)", r.host.Name, ev[1], ev[2], ev[3])
		}
		// What flint says: the log, the metrics.
		logs := e.A.log() + e.B.log()
		for _, want := range []string{"address claim was not committed", "check the etcd cluster's quorum", "answered from this instance's memory"} {
			if !strings.Contains(logs, want) {
				t.Errorf("without quorum neither instance's log says %q", want)
			}
		}
		var unavailable float64
		for _, f := range []*haFlint{e.A, e.B} {
			err := eventually(20*time.Second, 500*time.Millisecond, func() error {
				up, err := e.metric(f, "flint_store_up", false)
				if err != nil {
					return err
				}
				if up != 0 {
					return fmt.Errorf("%s: flint_store_up %v without quorum, want 0", f.Name, up)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			v, err := e.metric(f, `flint_dhcp_claims_total{result="unavailable"}`, true)
			if err != nil {
				t.Error(err)
			}
			unavailable += v
		}
		if unavailable == 0 {
			t.Errorf(`without quorum flint_dhcp_claims_total{result="unavailable"} stayed 0 on both instances`)
		}
		t.Logf("without quorum: flint_store_up 0 on both, %v claims unavailable", unavailable)
	})

	t.Run("quorum-back", func(t *testing.T) {
		for _, m := range members[1:] {
			e.etcd.StartMember(m, e.etcd.InitialCluster, "new") // its data dir makes it rejoin
		}
		for _, m := range members {
			e.etcd.WaitReadable(m, 30*time.Second)
		}
		t.Logf("quorum back %v after it was lost", time.Since(lost).Round(time.Millisecond))
		for _, f := range []*haFlint{e.A, e.B} {
			err := eventually(20*time.Second, 500*time.Millisecond, func() error {
				if up, err := e.metric(f, "flint_store_up", false); err != nil || up != 1 {
					return fmt.Errorf("%s: flint_store_up %v (%v) with quorum back, want 1", f.Name, up, err)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
		h := l.AddHost(t, "new3", "52:54:00:dd:03:04")
		le, r := h.Udhcpc(t, 60*time.Second, "-t", "10")
		if le == nil || !haInPool(le.IP) {
			t.Fatalf("with quorum back a new client got no pool address:\n%s", r)
		}
		recs, err := e.leases(e.B)
		if err != nil {
			t.Fatal(err)
		}
		for ip, mac := range map[string]string{boundIP: bound.host.MAC, n1IP: node1.MAC, le.IP: h.MAC} {
			if recs[ip] != mac {
				t.Errorf("with quorum back the store gives %s to %q, want %s", ip, recs[ip], mac)
			}
		}
		// A renewal once etcd answers is committed: the whole lease time again.
		before := bound.count()
		bound.renew()
		if err := bound.waitEvents(before+1, 30*time.Second); err != nil {
			t.Error(err)
		} else if ev := bound.last(); ev[0] != "renew" || ev[1] != boundIP || ev[3] != "3600" {
			t.Errorf("with quorum back the pool client's renewal gave %q, want renew of %s for 3600 s (dhcp.lease_time)", ev, boundIP)
		}
		t.Logf("quorum back: a new client got %s from %s; %d leases on record, the bound ones unchanged", le.IP, le.ServerID, len(recs))
	})
	if t.Failed() {
		for _, m := range members {
			t.Logf("last lines of etcd %s:\n%s", m.Name, etcdtest.Tail(m.LogPath, 10))
		}
	}
}

// renewer is a udhcpc that keeps running on a host: its script puts the
// leased address on eth0 (udhcpc renews from it) and logs every event.
type renewer struct {
	t    *testing.T
	host *Host
	proc *Proc
	log  string
}

func newRenewer(t *testing.T, l *Lab, h *Host) *renewer {
	t.Helper()
	r := &renewer{t: t, host: h, log: filepath.Join(l.Dir, "renewer-"+h.Name+".log")}
	script := l.writeFile(t, "renewer-"+h.Name+".sh", `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew)
	ip -4 addr replace "$ip/${mask:-20}" dev "$interface"
	echo "$1 $ip $serverid $lease" >> `+r.log+`
	;;
esac
`, 0o755)
	r.proc = l.Start(t, h.NS, "udhcpc-"+h.Name, "udhcpc", "-f", "-i", "eth0", "-s", script, "-t", "10", "-T", "3")
	return r
}

// events are the script's lines so far, as fields: event, ip, server, lease.
func (r *renewer) events() [][]string {
	b, _ := os.ReadFile(r.log)
	var out [][]string
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(ln); len(f) == 4 {
			out = append(out, f)
		}
	}
	return out
}

func (r *renewer) count() int { return len(r.events()) }

func (r *renewer) last() []string {
	ev := r.events()
	if len(ev) == 0 {
		return []string{"", "", "", ""}
	}
	return ev[len(ev)-1]
}

func (r *renewer) ip() string {
	for _, ev := range r.events() {
		if ev[0] == "bound" {
			return ev[1]
		}
	}
	return ""
}

// renew makes udhcpc renew its lease now (SIGUSR1).
func (r *renewer) renew() { r.proc.Signal(syscall.SIGUSR1) }

// waitEvents waits until the script has logged at least n events.
func (r *renewer) waitEvents(n int, timeout time.Duration) error {
	return eventually(timeout, 200*time.Millisecond, func() error {
		if r.proc.Exited() {
			return fmt.Errorf("udhcpc on %s exited: %v\n%s", r.host.Name, r.proc.Cmd.ProcessState, r.proc.Stderr)
		}
		if got := r.count(); got < n {
			return fmt.Errorf("udhcpc on %s: %d events (%v), want %d", r.host.Name, got, r.events(), n)
		}
		return nil
	})
}
