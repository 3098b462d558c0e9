package tftp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// limiter caps concurrent transfers in total and per client address.
//
// Invariant: every entry of perAddr is a client with at least one live
// transfer, so len(perAddr) <= total <= max: the table cannot grow past
// the global cap however many addresses send requests.
type limiter struct {
	max, perClient int

	mu      sync.Mutex
	total   int
	perAddr map[netip.Addr]int
}

func newLimiter(max, perClient int) *limiter {
	return &limiter{max: max, perClient: perClient, perAddr: make(map[netip.Addr]int)}
}

// acquire takes a transfer slot for client. It returns "" on success, or
// which cap is reached ("global" or "per-client") and takes nothing.
func (l *limiter) acquire(client netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return "global"
	}
	if l.perAddr[client] >= l.perClient {
		return "per-client"
	}
	l.total++
	l.perAddr[client]++
	return ""
}

// release gives back a slot acquire took; the client's entry goes with its
// last transfer.
func (l *limiter) release(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.perAddr[client]
	if !ok {
		panic("tftp: release without acquire for " + client.String())
	}
	if n <= 1 {
		delete(l.perAddr, client)
	} else {
		l.perAddr[client] = n - 1
	}
	l.total--
}

func (l *limiter) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *limiter) caps() (max, perClient int) { return l.max, l.perClient }

// entries is the size of the per-client table (for tests).
func (l *limiter) entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.perAddr)
}

const (
	// logInterval and logBurst bound what a flood can write to the log:
	// per message, logBurst lines per logInterval one by one, then one
	// summary line per interval with the count of the rest.
	logInterval = 10 * time.Second
	logBurst    = 5
)

// rateLog writes lines caused by network input without letting a flood
// flood the log. Lines are grouped by their message, which is always a
// constant from this package, so its maps are bounded by the code.
type rateLog struct {
	log   *slog.Logger
	every time.Duration
	burst int

	mu         sync.Mutex
	window     time.Time                  // start of the current interval
	used       map[string]int             // lines written one by one in this interval
	suppressed map[string]suppressedLines // lines not written since the last flush
}

type suppressedLines struct {
	level slog.Level
	n     int
}

func newRateLog(log *slog.Logger, every time.Duration, burst int) *rateLog {
	return &rateLog{log: log, every: every, burst: burst, used: map[string]int{}, suppressed: map[string]suppressedLines{}}
}

func (r *rateLog) Warn(msg string, args ...any)  { r.emit(slog.LevelWarn, msg, args) }
func (r *rateLog) Debug(msg string, args ...any) { r.emit(slog.LevelDebug, msg, args) }

func (r *rateLog) emit(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !r.log.Enabled(ctx, level) {
		return
	}
	r.mu.Lock()
	if now := time.Now(); now.Sub(r.window) >= r.every {
		r.window = now
		clear(r.used)
	}
	if r.used[msg] < r.burst {
		r.used[msg]++
		r.mu.Unlock()
		r.log.Log(ctx, level, msg, args...)
		return
	}
	s := r.suppressed[msg]
	r.suppressed[msg] = suppressedLines{level: level, n: s.n + 1}
	r.mu.Unlock()
}

// flush writes one summary line per message that had lines suppressed:
// the message with suppressed=<count>.
func (r *rateLog) flush() {
	r.mu.Lock()
	sup := r.suppressed
	r.suppressed = map[string]suppressedLines{}
	r.mu.Unlock()
	msgs := make([]string, 0, len(sup))
	for msg := range sup {
		msgs = append(msgs, msg)
	}
	slices.Sort(msgs)
	for _, msg := range msgs {
		s := sup[msg]
		r.log.Log(context.Background(), s.level, msg, "suppressed", s.n, "interval", r.every.String(),
			"note", "this many more lines like this one were not logged one by one")
	}
}

// flushEvery flushes once per interval until the returned stop is called,
// which flushes a last time.
func (r *rateLog) flushEvery() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.flush()
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		r.flush()
	}
}
