package dhcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

// The address book's part in active/active: what it learns from the store.
func TestAllocatorClaims(t *testing.T) {
	cfg := testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.103"})
	const mac1, mac2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	first := netip.MustParseAddr("198.18.0.100")

	t.Run("an address claimed elsewhere is skipped for an offer hold", func(t *testing.T) {
		a := newAllocator(cfg, &cfg.DHCP.Networks[0])
		ip, _ := a.offer(mac1, netip.Addr{}, t0)
		if ip != first {
			t.Fatalf("first offer %s", ip)
		}
		a.claimedElsewhere(mac1, ip, t0)
		if next, _ := a.offer(mac1, ip, t0); next == ip {
			t.Errorf("offered %s again while another instance holds it", ip)
		}
		if _, held := a.holds[mac1]; !held {
			t.Error("no hold of the next address")
		}
		later := t0.Add(cfg.DHCP.OfferHold.Duration + time.Second)
		if got, _ := a.offer(mac2, ip, later); got != ip {
			t.Errorf("after the hold: offered %s, want %s again", got, ip)
		}
	})

	t.Run("adopt takes in another instance's lease, not an older one", func(t *testing.T) {
		a := newAllocator(cfg, &cfg.DHCP.Networks[0])
		l := store.Lease{IP: first, MAC: mac1, State: store.LeaseBound, Start: t0, Expires: t0.Add(time.Hour)}
		if a.renewal(mac1, first, t0) {
			t.Fatal("renewal before anything was bound")
		}
		a.adopt(l, t0)
		if !a.renewal(mac1, first, t0) || !a.belongsTo(mac1, first, netip.Addr{}, t0) {
			t.Fatal("the adopted lease is not the client's")
		}
		if a.belongsTo(mac2, first, netip.Addr{}, t0) {
			t.Error("the adopted lease belongs to another MAC too")
		}
		old := l
		old.MAC, old.Expires = mac2, t0.Add(time.Minute)
		a.adopt(old, t0)
		if !a.renewal(mac1, first, t0) {
			t.Error("an older record replaced the book's")
		}
		expired := l
		expired.IP, expired.Expires = first.Next(), t0.Add(-time.Second)
		a.adopt(expired, t0)
		if _, ok := a.leases[expired.IP]; ok {
			t.Error("an expired lease was adopted")
		}
		if a.renewal(mac1, first, t0.Add(2*time.Hour)) {
			t.Error("renewal of an expired lease")
		}
	})

	t.Run("instances start scanning at different places", func(t *testing.T) {
		big := testConfig(t, cfgOpts{poolStart: "198.18.0.20", poolEnd: "198.18.0.239"})
		a, b := newAllocator(big, &big.DHCP.Networks[0]), newAllocator(big, &big.DHCP.Networks[0])
		a.spread(flintIP)
		b.spread(flintIP2)
		pool := big.DHCP.Networks[0].Pool
		if !pool.Contains(a.cursor) || !pool.Contains(b.cursor) {
			t.Fatalf("cursors %s and %s outside the pool", a.cursor, b.cursor)
		}
		size := addrSpan(pool.StartIP, pool.EndIP)
		gap := addrSpan(pool.StartIP, a.cursor) - addrSpan(pool.StartIP, b.cursor)
		gap = min(max(gap, -gap), size-max(gap, -gap)) // around the pool
		if gap < size/4 {
			t.Errorf("cursors %s and %s only %d of %d addresses apart", a.cursor, b.cursor, gap, size)
		}
		t.Logf("198.18.0.1 starts at %s, 198.18.0.2 at %s", a.cursor, b.cursor)
	})
}
