// Package events is flint's one timeline writer. DHCP and HTTP script
// requests name their MAC; TFTP transfers and asset downloads only show an IP
// address, so the Recorder remembers which MAC was last seen at which address
// and attributes those to it.
//
// What is informational (sightings, transfers, downloads) is noted in memory
// and written in one background transaction every FlushEvery: a boot storm
// costs one fsync per batch, not one per packet, and the DHCP and HTTP
// replies never wait for it. The queue is bounded; what does not fit is
// dropped and counted. What the lifecycle decides (tokens, deliveries, state)
// goes through the embedded store.Store and is durable before the reply.
package events

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flint-boot/flint/store"
)

// Recorder is a store.Store whose writes also learn IP -> MAC, with a
// batched writer for informational events (Note), and a rate limit on what
// requests about unknown MACs may add.
type Recorder struct {
	store.Store
	log     *slog.Logger
	unknown *Limiter
	maxIPs  int

	queue   chan store.Sighting
	flush   chan chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	every   time.Duration
	dropped atomic.Uint64
	written atomic.Uint64

	mu   sync.RWMutex
	byIP map[netip.Addr]string

	by string // Options.Instance
}

// Options bound a Recorder.
type Options struct {
	// UnknownPerMinute is how many events about unknown MACs one source may
	// record per minute (config limits.unknown_events_per_minute).
	UnknownPerMinute int
	// MaxAddresses bounds the IP -> MAC index (known machines plus
	// limits.discovered_machines is enough); beyond it an arbitrary entry goes.
	MaxAddresses int
	// Pending bounds the events waiting for the next batch (config
	// limits.pending_events); beyond it Note drops and counts.
	Pending int
	// FlushEvery is how often the batch is written (default 200 ms).
	FlushEvery time.Duration
	// Instance names this flint in every event it records (store.Event.By)
	// when several instances share the store; "" for a store of its own.
	Instance string
	// Known are the MACs of the config's machines: their records seed the
	// address index, looked up one by one. Discovered machines are not read
	// at start (a site may hold 100,000 of them); their next sighting
	// teaches the index again.
	Known []string
}

// maxBatch bounds one transaction.
const maxBatch = 2048

// New wraps st, seeds the address index from its bound leases and the known
// machines' records, and starts the batch writer; Stop stops it.
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
	if opts.Pending <= 0 {
		opts.Pending = 8192
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = 200 * time.Millisecond
	}
	r := &Recorder{Store: st, log: log, unknown: NewLimiter(opts.UnknownPerMinute), maxIPs: opts.MaxAddresses, byIP: map[netip.Addr]string{},
		queue: make(chan store.Sighting, opts.Pending), flush: make(chan chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}), every: opts.FlushEvery,
		by: opts.Instance}
	for _, mac := range opts.Known {
		if m, ok, err := st.Machine(mac); err == nil && ok {
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
	go r.writer()
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

// Note queues an informational sighting for the next batch and returns at
// once; false means the queue was full (or the writer stopped) and it was
// dropped (and counted).
func (r *Recorder) Note(s store.Sighting) bool {
	s = r.stamp(s)
	if !s.TimelineOnly {
		r.learn(s.IP, s.MAC)
	}
	select {
	case <-r.stop:
		r.dropped.Add(1)
		return false
	default:
	}
	select {
	case r.queue <- s:
		return true
	default:
		r.dropped.Add(1)
		return false
	}
}

// Dropped counts the events Note could not queue.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Flush writes what is queued and returns once it is written (at once after Stop).
func (r *Recorder) Flush() {
	done := make(chan struct{})
	select {
	case r.flush <- done:
		<-done
	case <-r.stopped:
	}
}

// Stop writes what is queued and stops the writer (the store stays open: its
// owner closes it). Notes after Stop are dropped.
func (r *Recorder) Stop() {
	r.once.Do(func() { close(r.stop) })
	<-r.stopped
}

// writer drains the queue in batches.
func (r *Recorder) writer() {
	defer close(r.stopped)
	t := time.NewTicker(r.every)
	defer t.Stop()
	batch := make([]store.Sighting, 0, maxBatch)
	write := func() {
		for len(batch) < maxBatch {
			select {
			case s := <-r.queue:
				batch = append(batch, s)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			return
		}
		if err := r.Store.RecordSightings(batch); err != nil {
			r.log.Warn("could not write timeline events", "events", len(batch), "err", err)
		} else {
			r.written.Add(uint64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-t.C:
			write()
		case done := <-r.flush:
			for len(r.queue) > 0 {
				write()
			}
			close(done)
		case <-r.stop:
			for len(r.queue) > 0 {
				write()
			}
			return
		}
	}
}

// stamp names this instance in s (Options.Instance).
func (r *Recorder) stamp(s store.Sighting) store.Sighting {
	if s.By == "" {
		s.By = r.by
	}
	return s
}

// RecordSighting records s now (durably) and remembers s.IP as s.MAC's address.
func (r *Recorder) RecordSighting(s store.Sighting) error {
	s = r.stamp(s)
	if !s.TimelineOnly {
		r.learn(s.IP, s.MAC)
	}
	return r.Store.RecordSighting(s)
}

// Record records s and fn in one transaction and remembers s.IP as s.MAC's address.
func (r *Recorder) Record(s store.Sighting, fn func(*store.Machine) error) (store.Machine, error) {
	s = r.stamp(s)
	m, err := r.Store.Record(s, fn)
	if err == nil && !s.TimelineOnly {
		r.learn(s.IP, s.MAC)
	}
	return m, err
}

// RecordUnknown notes a request about a MAC outside the config, unless its
// source has used up its rate (limits.unknown_events_per_minute): a flood of
// made-up MACs costs at most that many records per source and minute, and
// the discovered-record cap bounds the total.
func (r *Recorder) RecordUnknown(from netip.Addr, s store.Sighting) {
	if !r.unknown.Allow(from, s.At) {
		return
	}
	r.Note(s)
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

// RecordFromIP notes an event on the timeline of the machine last seen at
// ip. Requests from addresses flint has never seen (a curl from the admin's
// laptop) are not machine events and are only logged at debug level.
func (r *Recorder) RecordFromIP(ip netip.Addr, event, detail string) {
	ip = ip.Unmap()
	mac, ok := r.MACFor(ip)
	if !ok {
		r.log.Debug("event from an address no machine was seen at", "ip", ip, "event", event)
		return
	}
	r.Note(store.Sighting{MAC: mac, At: time.Now(), IP: ip, Event: event, Detail: detail})
}
