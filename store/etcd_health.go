package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Failing fast while etcd has no quorum.
//
// Without a quorum every etcd operation waits the store's timeout (5 s by
// default) before it fails. Each DHCP packet, config request and timeline
// write would then hold its handler that long, and a renewal that flint may
// answer from memory (see dhcp's AckFromCache) would come 5 s late, when a
// client may have given up on it. So the first operation that times out
// marks the store down: from then on operations fail at once with
// ErrUnavailable, and one probe reads a key (linearizable, so only a quorum
// answers) every probeEvery until it answers; then operations go through
// again. Errors that come fast (a member that went
// away, a leader change, a failed compare) leave the store up: the client
// tries another member, and nothing waited.
const (
	probeEvery   = 500 * time.Millisecond
	probeTimeout = time.Second
)

// Up reports whether the store takes operations: false from an operation
// that found no quorum until a probe read answers again.
func (s *Etcd) Up() bool { return !s.down.Load() }

// markDown makes operations fail fast and starts the probe (once).
func (s *Etcd) markDown() {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed || !s.down.CompareAndSwap(false, true) {
		return // after Close nothing is probed: Close waits for the probe
	}
	s.probes.Add(1)
	go func() {
		defer s.probes.Done()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(probeEvery):
			}
			ctx, cancel := context.WithTimeout(s.ctx, min(probeTimeout, s.timeout))
			_, err := s.cli.Get(ctx, s.prefix+etcdIncomplete)
			cancel()
			if err == nil {
				s.down.Store(false)
				return
			}
		}
	}()
}

// downError is what an operation gets while the store is down.
func (s *Etcd) downError() error {
	return fmt.Errorf("%w: etcd store at %s did not answer an earlier request and is checked again every %v (check that a quorum of etcd members is up and reachable)",
		ErrUnavailable, strings.Join(s.endpoints, ", "), probeEvery)
}
