package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHAStorm is issue #13's storm proof: two flint instances in full mode
// on one segment, sharing a 3-member TLS etcd, answer a DHCP storm of 2,000
// clients from the Go load generator (bench/dhcpload, every client a MAC of
// its own, both servers' OFFERs on the wire, the client taking the first)
// and 12 udhcpc clients in namespaces of their own. In the middle of it,
// flint A is killed with SIGKILL. Then:
//
//   - every client got an address: the generator's clients that had chosen
//     A start over (a new DISCOVER, as RFC 2131 clients do when their
//     REQUEST goes unanswered) and finish through B, as do the udhcpc ones;
//   - no address was ACKed to two MACs (the generator checks every ACK it
//     sees, the test checks its clients against udhcpc's), every ACKed
//     address is in the pool, and each client's last ACK is its lease in
//     the shared store;
//   - A, restarted, sees the same leases and answers again.
func TestHAStorm(t *testing.T) {
	e := newHAEnv(t, haSite([]machine{node1}))
	e.start(e.A)
	e.start(e.B)
	l := e.lab

	const clients, udhcpcs = 2000, 12
	load := l.AddHost(t, "load", "02:00:c6:12:00:10")
	hosts := make([]*Host, udhcpcs)
	for i := range hosts {
		hosts[i] = l.AddHost(t, fmt.Sprintf("u%02d", i), fmt.Sprintf("52:54:00:dd:01:%02x", i+1))
	}
	acks := filepath.Join(l.Dir, "acks.txt")
	start := time.Now()
	gen := l.Start(t, load.NS, "dhcpload", loadBin, "-iface", "eth0", "-n", strconv.Itoa(clients), "-c", "16",
		"-timeout", "1s", "-retries", "3", "-restarts", "8", "-max", "300s", "-run", "7", "-acks", acks, "-label", "A+B")

	// The udhcpc clients start with the storm, a few at a time.
	leases := make([]*Lease, udhcpcs)
	results := make([]Result, udhcpcs)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 700 * time.Millisecond)
			// udhcpc gives up after -t DISCOVERs without an OFFER, and goes
			// back to DISCOVER when its REQUEST goes unanswered.
			leases[i], results[i] = h.Udhcpc(t, 240*time.Second, "-t", "30", "-T", "2")
		}()
	}

	// Kill A once about a third of the storm is through (leases on record).
	var killedAt time.Duration
	var atKill int
	err := eventually(180*time.Second, 250*time.Millisecond, func() error {
		if gen.Exited() {
			return fmt.Errorf("the generator ended before A was killed:\n%s%s", gen.Stdout, gen.Stderr)
		}
		recs, err := e.leases(e.B)
		if err != nil {
			return err
		}
		if len(recs) < clients/3 {
			return fmt.Errorf("%d leases on record", len(recs))
		}
		atKill = len(recs)
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for a third of the storm: %v", err)
	}
	e.A.Kill(t)
	killedAt = time.Since(start)
	t.Logf("flint A killed (SIGKILL) %v into the storm, with %d leases on record", killedAt.Round(time.Millisecond), atKill)

	if _, ok := gen.Wait(300 * time.Second); !ok {
		t.Fatalf("the generator did not finish within 300 s")
	}
	wg.Wait()
	took := time.Since(start)
	out := strings.TrimSpace(gen.Stdout.String())
	t.Logf("generator: %s", out)
	if s := strings.TrimSpace(gen.Stderr.String()); s != "" {
		t.Logf("generator stderr:\n%s", s)
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	if kv["ok"] != strconv.Itoa(clients) {
		t.Errorf("%s of %d generator clients got an address, want all", kv["ok"], clients)
	}
	if kv["dups"] != "0" {
		t.Errorf("the generator saw %s addresses ACKed to two MACs, want 0", kv["dups"])
	}
	if kv["naks"] != "0" {
		t.Errorf("the generator got %s NAKs: an instance refused an address the other offered", kv["naks"])
	}

	// Each generator client's last ACK, and who gave it.
	b, err := os.ReadFile(acks)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{} // address -> MAC
	mine := map[string]string{}  // MAC -> address
	by := map[string]int{}
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(ln)
		if len(f) != 3 {
			t.Fatalf("acks file line %q", ln)
		}
		mac, ip, server := f[0], f[1], f[2]
		if !haInPool(ip) {
			t.Errorf("%s was ACKed %s, outside the pool %s-%s", mac, ip, haPoolStart, haPoolEnd)
		}
		if prev, dup := owner[ip]; dup {
			t.Errorf("address %s ACKed to both %s and %s", ip, prev, mac)
		}
		owner[ip], mine[mac] = mac, ip
		by[server]++
	}
	for i, h := range hosts {
		le := leases[i]
		if le == nil {
			t.Errorf("udhcpc on %s got no address\n%s", h.MAC, results[i])
			continue
		}
		if !haInPool(le.IP) {
			t.Errorf("udhcpc on %s got %s, outside the pool", h.MAC, le.IP)
		}
		if prev, dup := owner[le.IP]; dup {
			t.Errorf("address %s ACKed to both %s and %s (udhcpc)", le.IP, prev, h.MAC)
		}
		owner[le.IP], mine[h.MAC] = h.MAC, le.IP
		by[le.ServerID]++
	}
	var split []string
	for s, n := range by {
		split = append(split, fmt.Sprintf("%s: %d", s, n))
	}
	sort.Strings(split)
	t.Logf("%d clients (%d generator, %d udhcpc) got %d distinct addresses in %v; last ACK by server: %s",
		len(mine), clients, udhcpcs, len(owner), took.Round(time.Millisecond), strings.Join(split, ", "))
	if by[e.A.IP] == 0 || by[e.B.IP] == 0 {
		t.Errorf("ACKs by server %v: both instances should have answered part of the storm", by)
	}
	if n, _ := strconv.Atoi(kv["restarts"]); n == 0 {
		t.Logf("no generator client had to start over after the kill (none was between A's OFFER and ACK)")
	}

	// The shared store: each client's last ACK is its lease, through B.
	recs, err := e.leases(e.B)
	if err != nil {
		t.Fatal(err)
	}
	for mac, ip := range mine {
		if recs[ip] != mac {
			t.Errorf("the store says %s belongs to %q, but it was ACKed to %s", ip, recs[ip], mac)
		}
	}

	// A comes back: it reads the same leases and answers a new client.
	e.start(e.A)
	recsA, err := e.leases(e.A)
	if err != nil {
		t.Fatal(err)
	}
	if len(recsA) != len(recs) {
		t.Errorf("restarted A sees %d leases, B %d", len(recsA), len(recs))
	}
	late := l.AddHost(t, "late", "52:54:00:dd:02:01")
	le, r := late.Udhcpc(t, 60*time.Second, "-t", "10")
	if le == nil {
		t.Fatalf("a client after the storm got no address\n%s", r)
	}
	if _, taken := owner[le.IP]; taken || !haInPool(le.IP) {
		t.Errorf("a client after the storm got %s (taken: %v, in pool: %v)", le.IP, taken, haInPool(le.IP))
	}
	t.Logf("after A's restart a new client got %s from %s", le.IP, le.ServerID)
}
