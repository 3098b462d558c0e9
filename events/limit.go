package events

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Limiter is a token bucket per source address in a fixed-size table: a
// flood from many addresses cannot make it grow. Sources that hash to the
// same slot share a bucket (a collision makes the limit stricter for both,
// never looser than the rate per slot).
type Limiter struct {
	perMinute float64
	burst     float64

	mu    sync.Mutex
	seed  maphash.Seed
	slots []bucket
	drops uint64
}

type bucket struct {
	tokens float64
	last   time.Time
}

// limiterSlots is the table size: enough that a rack's machines rarely share.
const limiterSlots = 4096

// NewLimiter allows perMinute events per source, in bursts of up to a
// minute's worth.
func NewLimiter(perMinute int) *Limiter {
	if perMinute < 1 {
		perMinute = 1
	}
	return &Limiter{perMinute: float64(perMinute), burst: float64(perMinute), seed: maphash.MakeSeed(), slots: make([]bucket, limiterSlots)}
}

// Allow takes one event from src's bucket; false means drop it.
func (l *Limiter) Allow(src netip.Addr, now time.Time) bool {
	b := src.As16()
	i := maphash.Bytes(l.seed, b[:]) % uint64(len(l.slots))
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &l.slots[i]
	if s.last.IsZero() {
		s.tokens = l.burst
	} else if dt := now.Sub(s.last); dt > 0 {
		s.tokens = min(l.burst, s.tokens+dt.Minutes()*l.perMinute)
	}
	s.last = now
	if s.tokens < 1 {
		l.drops++
		return false
	}
	s.tokens--
	return true
}

// Dropped counts the events refused so far.
func (l *Limiter) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.drops
}
