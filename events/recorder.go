// Package events builds each machine's boot timeline. DHCP and HTTP script
// requests name their MAC; TFTP transfers and asset downloads only show an IP
// address, so the Recorder remembers which MAC was last seen at which address
// and attributes those to it.
package events

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flint-boot/flint/store"
)

// Recorder is a store.Store whose writes also learn IP -> MAC, and which
// rate-limits what requests about unknown MACs may add.
type Recorder struct {
	store.Store
	log     *slog.Logger
	unknown *Limiter
	maxIPs  int

	mu   sync.RWMutex
	byIP map[netip.Addr]string
}

// Options bound a Recorder.
type Options struct {
	// UnknownPerMinute is how many events about unknown MACs one source may
	// record per minute (config limits.unknown_events_per_minute).
	UnknownPerMinute int
	// MaxAddresses bounds the IP -> MAC index (known machines plus
	// limits.discovered_machines is enough); beyond it an arbitrary entry goes.
	MaxAddresses int
}

// New wraps st and seeds the address index from its leases and machine records.
func New(st store.Store, opts Options, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.UnknownPerMinute <= 0 {
		opts.UnknownPerMinute = 120
	}
	if opts.MaxAddresses <= 0 {
		opts.MaxAddresses = 4096
	}
	r := &Recorder{Store: st, log: log, unknown: NewLimiter(opts.UnknownPerMinute), maxIPs: opts.MaxAddresses, byIP: map[netip.Addr]string{}}
	if ms, err := st.Machines(); err == nil {
		for _, m := range ms {
			r.learn(m.IP, m.MAC)
		}
	}
	if ls, err := st.Leases(); err == nil {
		now := time.Now()
		for _, l := range ls {
			if l.State == store.LeaseBound && l.Expires.After(now) {
				r.learn(l.IP, l.MAC)
			}
		}
	}
	return r
}

func (r *Recorder) learn(ip netip.Addr, mac string) {
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || mac == "" {
		return
	}
	r.mu.Lock()
	if _, ok := r.byIP[ip]; !ok && len(r.byIP) >= r.maxIPs {
		for k := range r.byIP { // any one: the map stays bounded
			delete(r.byIP, k)
			break
		}
	}
	r.byIP[ip] = mac
	r.mu.Unlock()
}

// RecordSighting records s and remembers s.IP as s.MAC's address.
func (r *Recorder) RecordSighting(s store.Sighting) error {
	if !s.TimelineOnly {
		r.learn(s.IP, s.MAC)
	}
	return r.Store.RecordSighting(s)
}

// Record records s and fn in one transaction and remembers s.IP as s.MAC's address.
func (r *Recorder) Record(s store.Sighting, fn func(*store.Machine) error) (store.Machine, error) {
	m, err := r.Store.Record(s, fn)
	if err == nil && !s.TimelineOnly {
		r.learn(s.IP, s.MAC)
	}
	return m, err
}

// RecordUnknown records a request about a MAC outside the config, unless
// its source has used up its rate (limits.unknown_events_per_minute): a flood
// of made-up MACs costs at most that many records per source and minute,
// and the discovered-record cap bounds the total.
func (r *Recorder) RecordUnknown(from netip.Addr, s store.Sighting) {
	if !r.unknown.Allow(from, s.At) {
		return
	}
	if err := r.Store.RecordSighting(s); err != nil {
		r.log.Warn("could not record event", "mac", s.MAC, "event", s.Event, "err", err)
	}
}

// UnknownDropped counts requests about unknown MACs not recorded for the rate limit.
func (r *Recorder) UnknownDropped() uint64 { return r.unknown.Dropped() }

// MACFor returns the MAC last seen at ip.
func (r *Recorder) MACFor(ip netip.Addr) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	mac, ok := r.byIP[ip.Unmap()]
	return mac, ok
}

// RecordFromIP adds an event to the timeline of the machine last seen at ip.
// Requests from addresses flint has never seen (a curl from the admin's
// laptop) are not machine events and are only logged at debug level.
func (r *Recorder) RecordFromIP(ip netip.Addr, event, detail string) {
	ip = ip.Unmap()
	mac, ok := r.MACFor(ip)
	if !ok {
		r.log.Debug("event from an address no machine was seen at", "ip", ip, "event", event)
		return
	}
	if err := r.Store.RecordSighting(store.Sighting{MAC: mac, At: time.Now(), IP: ip, Event: event, Detail: detail}); err != nil {
		r.log.Warn("could not record event", "mac", mac, "event", event, "err", err)
	}
}
