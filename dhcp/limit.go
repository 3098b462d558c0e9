package dhcp

import (
	"hash/maphash"
	"sync"
	"time"
)

const (
	// quietPeriod is how often a repeated per-MAC complaint is logged.
	quietPeriod = time.Minute
	// quietSlots is the size of the log limiter's table (a power of two).
	quietSlots = 4096
	// quietBudget is how many rate-limited complaints are logged per
	// quietPeriod in all, whatever the number of MACs complained about: a
	// flood of spoofed MACs must not fill the disk with log lines.
	quietBudget = 60
)

// quietLog lets a repeated complaint (keyed, e.g. "pool full <mac>") through
// once per quietPeriod, and at most quietBudget complaints per quietPeriod in
// all.
//
// It is a fixed table of quietSlots slots, indexed by a hash of the key; each
// slot holds the hash of the key last let through there and when. A call costs
// the same and the table keeps its size however many keys a flood of spoofed
// MACs brings. The price is collisions:
//   - two keys sharing a slot evict each other, so a key may be let through
//     again before its quietPeriod is over (an early line, never a lost one;
//     the budget still bounds the total);
//   - two keys with the same 64-bit hash (odds 2^-64 per pair; the seed is
//     random per process, so they can't be chosen) would suppress each other.
//
// The zero value is ready to use.
type quietLog struct {
	mu         sync.Mutex
	seed       maphash.Seed
	seeded     bool
	slots      [quietSlots]quietSlot
	budget     tokenBucket
	suppressed uint64 // complaints refused by the budget since the last one let through
}

type quietSlot struct {
	key uint64 // maphash of the key; 0: empty
	at  int64  // when it was let through, Unix nanoseconds
}

// allow reports whether a complaint about key may be logged now, and how many
// complaints the overall budget suppressed since the last one it let through
// (to be logged with it).
func (q *quietLog) allow(key string, now time.Time) (ok bool, suppressed uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.seeded {
		q.seed, q.seeded = maphash.MakeSeed(), true
		q.budget = tokenBucket{perPeriod: quietBudget, period: quietPeriod}
	}
	h := maphash.String(q.seed, key) | 1 // never 0, the empty slot
	slot := &q.slots[h%quietSlots]
	t := now.UnixNano()
	// A clock stepped backwards (age < 0) lets the line through rather than
	// silencing the key until the clock catches up.
	if age := t - slot.at; slot.key == h && age >= 0 && age < int64(quietPeriod) {
		return false, 0
	}
	if !q.budget.take(now) {
		q.suppressed++
		return false, 0
	}
	*slot = quietSlot{key: h, at: t}
	suppressed, q.suppressed = q.suppressed, 0
	return true, suppressed
}

// tokenBucket lets perPeriod events through per period, in bursts of up to
// perPeriod; it starts full. It is not safe for concurrent use: its owner
// locks.
type tokenBucket struct {
	perPeriod int
	period    time.Duration
	tokens    float64
	last      time.Time
	started   bool
}

// take spends a token if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	burst := float64(b.perPeriod)
	switch {
	case !b.started:
		b.tokens, b.last, b.started = burst, now, true
	case now.After(b.last):
		b.tokens += float64(now.Sub(b.last)) / float64(b.period) * burst
		b.tokens = min(b.tokens, burst)
		b.last = now
	case now.Before(b.last):
		b.last = now // clock stepped back: refill from here, never in advance
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
