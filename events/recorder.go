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

// Recorder is a store.Store whose RecordSighting also learns IP -> MAC.
type Recorder struct {
	store.Store
	log *slog.Logger

	mu   sync.RWMutex
	byIP map[netip.Addr]string
}

// New wraps st and seeds the address index from its leases and machine records.
func New(st store.Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{Store: st, log: log, byIP: map[netip.Addr]string{}}
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
