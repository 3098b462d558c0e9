package dhcp

import (
	"net/netip"
	"time"

	"github.com/flint-boot/flint/store"
)

// The address book's part in active/active full mode (see claim.go): what
// it learns from the shared store's answers.

// claimedElsewhere notes that another MAC holds ip's claim in the store
// (another instance offered or leased it): mac's hold of it goes and the
// book skips ip for an offer hold, then asks the store again.
func (a *allocator) claimedElsewhere(mac string, ip netip.Addr, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.holds[mac]; ok && h.ip == ip {
		a.clearHold(mac)
	}
	a.elsewhere[ip] = now.Add(a.offerHold)
}

// renewal reports whether ip is bound to mac by an unexpired lease in the
// book: a REQUEST for it renews what the client already has.
func (a *allocator) renewal(mac string, ip netip.Addr, now time.Time) bool {
	_, ok := a.boundUntil(mac, ip, now)
	return ok
}

// boundUntil is when the book's unexpired lease of ip to mac expires; ok is
// false when the book has none.
func (a *allocator) boundUntil(mac string, ip netip.Addr, now time.Time) (until time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.leases[ip]
	if !ok || l.State != store.LeaseBound || l.MAC != mac || !l.Expires.After(now) {
		return time.Time{}, false
	}
	return l.Expires, true
}

// adopt takes in a bound lease another instance wrote to the shared store,
// unless the book knows a record of ip that lasts longer.
func (a *allocator) adopt(l store.Lease, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l.State != store.LeaseBound || l.MAC == "" || !l.Expires.After(now) {
		return
	}
	if cur, ok := a.leases[l.IP]; ok && !cur.Expires.Before(l.Expires) {
		return
	}
	if cur, ok := a.leases[l.IP]; ok && cur.State == store.LeaseBound && a.leaseOf[cur.MAC] == l.IP {
		delete(a.leaseOf, cur.MAC)
	}
	if prev, ok := a.leaseOf[l.MAC]; ok && prev != l.IP {
		if old := a.leases[prev]; old.MAC == l.MAC && old.Expires.After(l.Expires) {
			return // the MAC's other lease in the book lasts longer
		}
	}
	a.leases[l.IP] = l
	a.leaseOf[l.MAC] = l.IP
	delete(a.elsewhere, l.IP)
}

// spread starts the next-fit scan at a place of the pool that depends on
// seed (the instance's server identifier): instances sharing a store then
// scan different parts of the pool and rarely try to claim the same
// address. Fibonacci hashing puts consecutive server addresses about 0.618
// of the pool apart.
func (a *allocator) spread(seed netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pool == nil || !a.pool.StartIP.IsValid() || !seed.Is4() {
		return
	}
	size := addrSpan(a.pool.StartIP, a.pool.EndIP)
	if size <= 0 {
		return
	}
	b := seed.As4()
	h := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) * 2654435769
	off := uint32(uint64(h) * uint64(size) >> 32)
	s := a.pool.StartIP.As4()
	v := uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]) + off
	a.cursor = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// dropOffer forgets mac's offer, like dropHold, and returns its address.
func (a *allocator) dropOffer(mac string) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, ok := a.holds[mac]
	a.clearHold(mac)
	return h.ip, ok
}
