package dhcp

import (
	"net/netip"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// allocator is full mode's address book of one subnet: reservations from the
// config, leases (bound and declined) and offers held for a client. One mutex
// guards it all: every decision that hands out an address is made and
// recorded under it, so concurrent clients can never be given the same
// address. Each subnet flint serves has its own.
type allocator struct {
	mu sync.Mutex

	pool       *config.Pool               // nil: no addresses for unknown MACs
	reservedBy map[netip.Addr]string      // config machine address -> its MAC
	excluded   map[netip.Addr]string      // never handed out: flint, router, network, broadcast
	offerHold  time.Duration              // how long an offer stays reserved for its client
	declined   time.Duration              // how long a DECLINEd address stays out of the pool
	leases     map[netip.Addr]store.Lease // bound and declined, expired ones included
	leaseOf    map[string]netip.Addr      // MAC -> address of its bound lease
	holds      map[string]hold            // MAC -> address offered to it
	heldBy     map[netip.Addr]string      // offered address -> MAC
	// elsewhere: pool addresses whose claim another flint instance holds
	// (active/active on etcd), skipped until then; bounded by the pool.
	elsewhere map[netip.Addr]time.Time
	cursor    netip.Addr // next-fit: where the next pool scan starts
}

type hold struct {
	ip    netip.Addr
	until time.Time
}

func newAllocator(cfg *config.Config, n *config.Subnet) *allocator {
	a := &allocator{
		pool:       n.Pool,
		reservedBy: map[netip.Addr]string{},
		excluded:   map[netip.Addr]string{},
		offerHold:  cfg.DHCP.OfferHold.Duration,
		declined:   cfg.DHCP.DeclineHold.Duration,
		leases:     map[netip.Addr]store.Lease{},
		leaseOf:    map[string]netip.Addr{},
		holds:      map[string]hold{},
		heldBy:     map[netip.Addr]string{},
		elsewhere:  map[netip.Addr]time.Time{},
	}
	for _, m := range cfg.Machines {
		if m.IPAddr.IsValid() && !m.HW.IsZero() && n.Prefix.Contains(m.IPAddr) {
			a.reservedBy[m.IPAddr] = m.HW.String()
		}
	}
	if ip := cfg.Server.AddressIP; ip.IsValid() && n.Prefix.Contains(ip) {
		a.excluded[ip] = "flint's own address"
	}
	if ip := n.RouterIP; ip.IsValid() {
		a.excluded[ip] = "the router's address"
	}
	if p := n.Prefix; p.IsValid() && p.Addr().Is4() && p.Bits() <= 30 {
		a.excluded[p.Masked().Addr()] = "the subnet's network address"
		a.excluded[lastAddr(p)] = "the subnet's broadcast address"
	}
	if a.pool != nil && a.pool.StartIP.IsValid() {
		a.cursor = a.pool.StartIP
	}
	return a
}

// lastAddr is the highest address of an IPv4 prefix (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// load adopts persisted leases, dropping expired ones.
func (a *allocator) load(leases []store.Lease, now time.Time) (kept int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range leases {
		if !l.IP.Is4() || !l.Expires.After(now) {
			continue
		}
		a.leases[l.IP] = l
		kept++
		if l.State != store.LeaseBound || l.MAC == "" {
			continue
		}
		// A MAC with two records (should not happen) keeps the longer-lived one.
		if prev, ok := a.leaseOf[l.MAC]; !ok || a.leases[prev].Expires.Before(l.Expires) {
			a.leaseOf[l.MAC] = l.IP
		}
	}
	return kept
}

// usable reports whether ip may be given to an unknown (pool) client mac:
// in the pool, not reserved, not flint's or the router's, not bound to or held
// for another MAC, not quarantined.
func (a *allocator) usable(ip netip.Addr, mac string, now time.Time) bool {
	if !a.pool.Contains(ip) || a.excluded[ip] != "" || a.reservedBy[ip] != "" {
		return false
	}
	if l, ok := a.leases[ip]; ok && l.Expires.After(now) {
		if l.State != store.LeaseBound || l.MAC != mac {
			return false
		}
	}
	if other, ok := a.heldBy[ip]; ok && other != mac && a.holds[other].until.After(now) {
		return false
	}
	if until, ok := a.elsewhere[ip]; ok && until.After(now) {
		return false
	}
	return true
}

// offer picks the address to offer an unknown client and holds it for that
// client: its current offer, else its lease, else the address it asks for,
// else the next free one. ok is false when the pool has nothing left.
func (a *allocator) offer(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneHolds(now)
	if h, ok := a.holds[mac]; ok && a.usable(h.ip, mac, now) {
		a.setHold(mac, h.ip, now)
		return h.ip, true
	}
	if ip, ok := a.leaseOf[mac]; ok && a.usable(ip, mac, now) {
		a.setHold(mac, ip, now)
		return ip, true
	}
	if requested.IsValid() && a.usable(requested, mac, now) {
		a.setHold(mac, requested, now)
		return requested, true
	}
	if ip, ok := a.nextFree(mac, now); ok {
		a.setHold(mac, ip, now)
		return ip, true
	}
	return netip.Addr{}, false
}

// nextFree scans the pool from the cursor, wrapping once. Next-fit spreads
// addresses over the pool, so a freed address is not handed to someone else
// at once (its old owner may come back for it).
func (a *allocator) nextFree(mac string, now time.Time) (netip.Addr, bool) {
	if a.pool == nil || !a.pool.StartIP.IsValid() {
		return netip.Addr{}, false
	}
	start, end := a.pool.StartIP, a.pool.EndIP
	if !a.pool.Contains(a.cursor) {
		a.cursor = start
	}
	try := func(from, to netip.Addr) (netip.Addr, bool) {
		for ip := from; ip.IsValid() && ip.Compare(to) <= 0; ip = ip.Next() {
			if a.usable(ip, mac, now) {
				return ip, true
			}
		}
		return netip.Addr{}, false
	}
	ip, ok := try(a.cursor, end)
	if !ok && a.cursor != start {
		ip, ok = try(start, a.cursor.Prev())
	}
	if ok {
		a.cursor = ip.Next()
	}
	return ip, ok
}

func (a *allocator) setHold(mac string, ip netip.Addr, now time.Time) {
	if h, ok := a.holds[mac]; ok && h.ip != ip {
		delete(a.heldBy, h.ip)
	}
	a.holds[mac] = hold{ip: ip, until: now.Add(a.offerHold)}
	a.heldBy[ip] = mac
}

func (a *allocator) clearHold(mac string) {
	if h, ok := a.holds[mac]; ok {
		delete(a.holds, mac)
		if a.heldBy[h.ip] == mac {
			delete(a.heldBy, h.ip)
		}
	}
}

func (a *allocator) pruneHolds(now time.Time) {
	for mac, h := range a.holds {
		if !h.until.After(now) {
			a.clearHold(mac)
		}
	}
	for ip, until := range a.elsewhere {
		if !until.After(now) {
			delete(a.elsewhere, ip)
		}
	}
}

// dropHold forgets an offer, e.g. when the client chose another server.
func (a *allocator) dropHold(mac string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clearHold(mac)
}

// owns reports whether ip is mac's to use: res, the reservation of the
// config machine the request was answered as (and nothing else), otherwise
// (res invalid: a client the config does not know) an address offered to or
// leased by it. The caller holds a.mu.
func (a *allocator) owns(mac string, ip, res netip.Addr, now time.Time) bool {
	if res.IsValid() {
		return ip == res
	}
	if !a.usable(ip, mac, now) {
		return false
	}
	if h, ok := a.holds[mac]; ok && h.ip == ip && h.until.After(now) {
		return true
	}
	l, ok := a.leases[ip]
	return ok && l.State == store.LeaseBound && l.MAC == mac
}

// belongsTo is owns for callers outside the allocator.
func (a *allocator) belongsTo(mac string, ip, res netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.owns(mac, ip, res, now)
}

// verdict is what an INIT-REBOOT request deserves.
type verdict int

const (
	verdictOwned   verdict = iota // the client's own address: ACK
	verdictTaken                  // someone else's or unusable: NAK
	verdictWrong                  // we know the client and this is not its address: NAK
	verdictUnknown                // no record of the client: stay silent (RFC 2131 4.3.2)
)

// judge classifies a client's claim to ip; why explains a NAK.
func (a *allocator) judge(mac string, ip, res netip.Addr, now time.Time) (v verdict, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owns(mac, ip, res, now) {
		return verdictOwned, ""
	}
	if other := a.reservedBy[ip]; other != "" {
		return verdictTaken, "reserved for " + other
	}
	if why := a.excluded[ip]; why != "" {
		return verdictTaken, why
	}
	if l, ok := a.leases[ip]; ok && l.Expires.After(now) {
		if l.State == store.LeaseDeclined {
			return verdictTaken, "quarantined after a DECLINE"
		}
		if l.MAC != mac {
			return verdictTaken, "leased to " + l.MAC
		}
	}
	if other, ok := a.heldBy[ip]; ok && other != mac && a.holds[other].until.After(now) {
		return verdictTaken, "offered to " + other
	}
	_, leased := a.leaseOf[mac]
	_, held := a.holds[mac]
	if res.IsValid() || leased || held {
		return verdictWrong, "not the client's address"
	}
	return verdictUnknown, ""
}

// bind records l (bound to l.MAC) in memory if l.IP is still that MAC's to
// use (res as for owns). It returns an undo for when persisting fails, and
// the MAC's previous address if it had another one: that record stays
// (blocking the address for others) until the caller deleted it from the
// store and calls forget. A reservation bound to another box before (a
// machine chosen by its relay port, whose box was swapped) now is this one's.
func (a *allocator) bind(l store.Lease, res netip.Addr, now time.Time) (undo func(), previous netip.Addr, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.owns(l.MAC, l.IP, res, now) {
		return nil, netip.Addr{}, false
	}
	prevAtIP, hadAtIP := a.leases[l.IP]
	prevIP, hadPrevIP := a.leaseOf[l.MAC]
	prevHold, hadHold := a.holds[l.MAC]
	otherMAC := ""
	if hadAtIP && prevAtIP.State == store.LeaseBound && prevAtIP.MAC != l.MAC && a.leaseOf[prevAtIP.MAC] == l.IP {
		otherMAC = prevAtIP.MAC
		delete(a.leaseOf, otherMAC)
	}

	a.clearHold(l.MAC)
	a.leases[l.IP] = l
	a.leaseOf[l.MAC] = l.IP
	if hadPrevIP && prevIP != l.IP {
		if old, ok := a.leases[prevIP]; ok && old.State == store.LeaseBound && old.MAC == l.MAC {
			previous = prevIP
		}
	}
	undo = func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if cur, ok := a.leases[l.IP]; !ok || cur != l {
			return // something newer happened meanwhile; keep it
		}
		if hadAtIP {
			a.leases[l.IP] = prevAtIP
			if _, taken := a.leaseOf[otherMAC]; otherMAC != "" && !taken {
				a.leaseOf[otherMAC] = l.IP
			}
		} else {
			delete(a.leases, l.IP)
		}
		if hadPrevIP {
			a.leaseOf[l.MAC] = prevIP
		} else {
			delete(a.leaseOf, l.MAC)
		}
		if hadHold && prevHold.until.After(now) {
			if other, taken := a.heldBy[prevHold.ip]; !taken || other == l.MAC {
				a.holds[l.MAC] = prevHold
				a.heldBy[prevHold.ip] = l.MAC
			}
		}
	}
	return undo, previous, true
}

// boundTo reports whether ip has a bound lease record of mac (expired or not).
func (a *allocator) boundTo(mac string, ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.leases[ip]
	return ok && l.State == store.LeaseBound && l.MAC == mac
}

// reservedLease is the reserved address mac holds an unexpired bound lease
// on, if any: a box a relay port chose as a machine of the config, renewing
// later without the relay (and so without option 82).
func (a *allocator) reservedLease(mac string, now time.Time) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.leaseOf[mac]
	if !ok || a.reservedBy[ip] == "" {
		return netip.Addr{}, false
	}
	l := a.leases[ip]
	if l.State != store.LeaseBound || l.MAC != mac || !l.Expires.After(now) {
		return netip.Addr{}, false
	}
	return ip, true
}

// forget drops mac's lease record of ip, after the caller deleted it from the
// store. (Deleting from the store first matters: while the record is in
// memory nobody else can lease ip, so no newer record of ip can be deleted by
// mistake.)
func (a *allocator) forget(mac string, ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.leases[ip]; ok && l.State == store.LeaseBound && l.MAC == mac {
		delete(a.leases, ip)
	}
	if a.leaseOf[mac] == ip {
		delete(a.leaseOf, mac)
	}
}

// decline quarantines a pool address mac was offered or leased and found in
// use by another host. It returns the quarantine record to persist.
func (a *allocator) decline(mac string, ip, res netip.Addr, now time.Time) (store.Lease, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if res.IsValid() || !a.owns(mac, ip, res, now) {
		return store.Lease{}, false
	}
	a.clearHold(mac)
	if a.leaseOf[mac] == ip {
		delete(a.leaseOf, mac)
	}
	l := store.Lease{IP: ip, State: store.LeaseDeclined, Start: now, Expires: now.Add(a.declined)}
	a.leases[ip] = l
	return l, true
}

// leaseFor returns mac's bound lease, if any (for tests and logs).
func (a *allocator) leaseFor(mac string) (store.Lease, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.leaseOf[mac]
	if !ok {
		return store.Lease{}, false
	}
	l, ok := a.leases[ip]
	return l, ok
}

// PoolStats is what the pool holds now: its size (config machines' reserved
// addresses and flint's own excluded), the addresses bound or declined in it,
// and the offers waiting for their REQUEST.
type PoolStats struct {
	Size, Bound, Declined, Offered int
}

// stats counts the pool. It walks the leases, never the pool: a /16 pool
// costs nothing until it is used.
func (a *allocator) stats(now time.Time) PoolStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneHolds(now)
	var st PoolStats
	if a.pool == nil || !a.pool.StartIP.IsValid() {
		return st
	}
	st.Size = addrSpan(a.pool.StartIP, a.pool.EndIP)
	for ip := range a.excluded {
		if a.pool.Contains(ip) {
			st.Size--
		}
	}
	for ip := range a.reservedBy {
		if a.pool.Contains(ip) && a.excluded[ip] == "" {
			st.Size--
		}
	}
	for ip, l := range a.leases {
		if !a.pool.Contains(ip) || a.reservedBy[ip] != "" || !l.Expires.After(now) {
			continue
		}
		switch l.State {
		case store.LeaseBound:
			st.Bound++
		case store.LeaseDeclined:
			st.Declined++
		}
	}
	for ip := range a.heldBy {
		if a.pool.Contains(ip) {
			st.Offered++
		}
	}
	return st
}

// addrSpan is the number of IPv4 addresses from a to b inclusive.
func addrSpan(a, b netip.Addr) int {
	x, y := a.As4(), b.As4()
	u := uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3])
	v := uint32(y[0])<<24 | uint32(y[1])<<16 | uint32(y[2])<<8 | uint32(y[3])
	if v < u {
		return 0
	}
	return int(v-u) + 1
}
