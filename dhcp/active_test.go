package dhcp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

var flintIP2 = netip.MustParseAddr("198.18.0.2")

// activePair is two flint instances (198.18.0.1 and .2) answering one
// segment, each with its own client of one etcd store prefix.
func activePair(t *testing.T, cl *etcdtest.Cluster, prefix string, timeout time.Duration) (a, b *Server, sa, sb *store.Etcd) {
	t.Helper()
	open := func() *store.Etcd {
		st, err := store.OpenEtcd(store.EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: prefix, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	sa, sb = open(), open()
	server := func(st store.Store, addr netip.Addr) *Server {
		cfg := testConfig(t, cfgOpts{poolStart: "198.18.0.20", poolEnd: "198.18.0.239"})
		cfg.Server.AddressIP = addr
		s, err := newServer(cfg, st, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if !s.shared {
			t.Fatal("a server on an etcd store does not claim addresses")
		}
		return s
	}
	return server(sa, flintIP), server(sb, flintIP2), sa, sb
}

// TestActiveActive: two instances on one etcd answer the same broadcasts;
// no address goes to two MACs.
func TestActiveActive(t *testing.T) {
	cl := etcdtest.Start(t, 1)

	t.Run("200 clients over two instances: no address to two MACs", func(t *testing.T) {
		twoInstances(t, cl, "/flint/aa/", false)
	})
	t.Run("both scanning the pool from one place: every DISCOVER races", func(t *testing.T) {
		twoInstances(t, cl, "/flint/aa-race/", true)
	})
	t.Run("rebinding and rebooting through the other instance", func(t *testing.T) {
		a, b, _, _ := activePair(t, cl, "/flint/rebind/", 5*time.Second)
		mac := "02:aa:00:01:00:01"
		ip := dora(t, a, mac)
		// REBINDING: broadcast, ciaddr, no server identifier. b never saw
		// the client: it reads the lease from etcd instead of a NAK.
		ack, _ := exchange(t, b, packet(mac, dhcpv4.MessageTypeRequest, ciaddr(ip)))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		if got := yiaddr(ack); got != ip {
			t.Errorf("rebinding through .2: ACK for %s, want %s", got, ip)
		}
		// INIT-REBOOT of another client of a, through b.
		mac2 := "02:aa:00:01:00:02"
		ip2 := dora(t, a, mac2)
		ack, _ = exchange(t, b, packet(mac2, dhcpv4.MessageTypeRequest, requested(ip2)))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		// b never offers a's clients' addresses to others.
		for i := range 5 {
			other := fmt.Sprintf("02:aa:00:02:00:%02x", i)
			offer, _ := exchange(t, b, packet(other, dhcpv4.MessageTypeDiscover, requested(ip)))
			if offer == nil {
				t.Fatalf("%s: no offer", other)
			}
			if got := yiaddr(offer); got == ip || got == ip2 {
				t.Errorf("%s offered %s, bound to another MAC through .1", other, got)
			}
		}
	})

	t.Run("etcd without quorum: renewals answered, no new address", func(t *testing.T) {
		dead := etcdtest.Start(t, 1)
		a, _, _, _ := activePair(t, dead, "/flint/noquorum/", time.Second)
		mac := "02:aa:00:03:00:01"
		ip := dora(t, a, mac)
		if got := dora(t, a, nuc1MAC); got != nuc1IP {
			t.Fatalf("nuc1 got %s", got)
		}
		dead.Kill(dead.Members[0])
		start := time.Now()
		ack, _ := exchange(t, a, packet(mac, dhcpv4.MessageTypeRequest, ciaddr(ip)))
		t.Logf("renewal without quorum answered after %v", time.Since(start).Round(time.Millisecond))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		// Answered from memory, the client keeps only what is left of the
		// lease the store holds: a full lease would outlive the store's
		// record, and another instance could hand the address out.
		first := ack.IPAddressLeaseTime(0)
		if first <= 0 || first >= time.Hour || ack.IPAddressRenewalTime(0) != (first/2).Truncate(time.Second) {
			t.Errorf("renewal from memory: lease %v, T1 %v; want what is left of the 1h lease (< 1h), T1 half of it", first, ack.IPAddressRenewalTime(0))
		}
		ack, _ = exchange(t, a, packet(mac, dhcpv4.MessageTypeRequest, serverID(flintIP), requested(ip), ciaddr(ip)))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		if again := ack.IPAddressLeaseTime(0); again > first {
			t.Errorf("a second renewal from memory got %v, more than the first's %v: memory was extended past the store", again, first)
		}
		offer, _ := exchange(t, a, packet("02:aa:00:03:00:02", dhcpv4.MessageTypeDiscover))
		wantNoReply(t, offer)
		// A machine of the config renews its reservation the same way.
		ack, _ = exchange(t, a, packet(nuc1MAC, dhcpv4.MessageTypeRequest, ciaddr(nuc1IP)))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		// A machine of the config that had no lease here yet gets its
		// reservation offered (no claim needed: it is that MAC's alone), but
		// no ACK while the lease cannot be made durable (it retries).
		ack, _ = exchange(t, a, packet(nuc2MAC, dhcpv4.MessageTypeRequest, serverID(flintIP), requested(nuc2IP)))
		wantNoReply(t, ack)
	})
}

// twoInstances answers 200 clients' broadcasts by two instances, half the
// clients choosing each; sameStart makes both scan the pool from the same
// address, so that they keep trying to claim the same addresses.
func twoInstances(t *testing.T, cl *etcdtest.Cluster, prefix string, sameStart bool) {
	a, b, sa, _ := activePair(t, cl, prefix, 5*time.Second)
	if sameStart {
		b.allocs[0].cursor = a.allocs[0].cursor
	}
	var taken atomic.Int64
	for _, s := range []*Server{a, b} {
		s.onClaim = func(r ClaimResult) {
			if r == ClaimTaken {
				taken.Add(1)
			}
		}
	}
	servers := []*Server{a, b}
	ids := []netip.Addr{flintIP, flintIP2}
	const clients = 200
	type result struct {
		ip             netip.Addr
		by, tries, nak int
	}
	results := make([]result, clients)
	var mu sync.Mutex
	var problems []string
	fail := func(f string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			mac := fmt.Sprintf("02:aa:00:00:%02x:%02x", byte(i>>8), byte(i))
			res := &results[i]
			for res.tries = 1; res.tries <= 5; res.tries++ {
				// The DISCOVER is broadcast: both instances see it.
				var offers [2]*dhcpv4.DHCPv4
				var owg sync.WaitGroup
				for j, s := range servers {
					owg.Add(1)
					go func() {
						defer owg.Done()
						offers[j], _ = s.handle(packet(mac, dhcpv4.MessageTypeDiscover), clientPeer, viaDHCP)
					}()
				}
				owg.Wait()
				pick := i % 2 // half the clients prefer each instance
				if offers[pick] == nil {
					pick = 1 - pick
				}
				if offers[pick] == nil {
					t.Logf("%s try %d: no offer", mac, res.tries)
					continue
				}
				ip := yiaddr(offers[pick])
				req := packet(mac, dhcpv4.MessageTypeRequest, serverID(ids[pick]), requested(ip))
				// So is the REQUEST: the instance not chosen stays silent.
				if other, _ := servers[1-pick].handle(req, clientPeer, viaDHCP); other != nil {
					fail("%s: the instance not chosen answered %v", mac, other.MessageType())
				}
				ack, _ := servers[pick].handle(req, clientPeer, viaDHCP)
				if ack == nil {
					t.Logf("%s try %d: offers %v %v, no answer to REQUEST %s via %d", mac, res.tries, offers[0] != nil, offers[1] != nil, ip, pick)
					continue
				}
				if ack.MessageType() == dhcpv4.MessageTypeNak {
					res.nak++
					continue
				}
				res.ip, res.by = yiaddr(ack), pick
				return
			}
			fail("%s: no ACK in 5 tries", mac)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, p := range problems {
		t.Error(p)
	}
	owner := map[netip.Addr]int{}
	var by [2]int
	retried, naks := 0, 0
	for i, r := range results {
		if !r.ip.IsValid() {
			continue
		}
		if j, dup := owner[r.ip]; dup {
			t.Errorf("%s acked to client %d and client %d", r.ip, j, i)
		}
		owner[r.ip] = i
		by[r.by]++
		if r.tries > 1 {
			retried++
		}
		naks += r.nak
	}
	t.Logf("%d clients, %d distinct addresses in %v (%.0f DORA/s); acked by .1: %d, by .2: %d; %d clients needed a second DISCOVER, %d NAKs",
		clients, len(owner), took.Round(time.Millisecond), float64(clients)/took.Seconds(), by[0], by[1], retried, naks)
	t.Logf("claims refused because another MAC held the address: %d", taken.Load())
	if len(owner) != clients {
		t.Errorf("%d clients got an address, want %d", len(owner), clients)
	}
	if by[0] == 0 || by[1] == 0 {
		t.Errorf("one instance acked nothing: %v", by)
	}
	// The store holds one bound lease per address, of the MAC it was acked to.
	leases, err := sa.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != clients {
		t.Errorf("%d lease records in etcd, want %d", len(leases), clients)
	}
	for _, l := range leases {
		i, ok := owner[l.IP]
		if want := fmt.Sprintf("02:aa:00:00:%02x:%02x", byte(i>>8), byte(i)); !ok || l.MAC != want {
			t.Errorf("lease record %s of %s; acked to %s", l.IP, l.MAC, want)
		}
	}
}
