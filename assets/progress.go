package assets

import (
	"log/slog"
	"sync"
	"time"
)

// Progress is told about each download. The CLI draws progress bars on a
// terminal and uses LogProgress otherwise.
type Progress interface {
	// Start is called when a file's transfer begins: resumed bytes are
	// already on disk from an earlier attempt; total is the whole file's
	// size, or -1 when the server does not say.
	Start(file string, resumed, total int64) Meter
}

// Meter follows one transfer.
type Meter interface {
	Add(n int64)      // n more bytes arrived
	Finish(err error) // the transfer ended (err nil: completely)
}

// LogProgress reports downloads as structured log lines, one every
// interval per file plus one at the end: for logs and pipes, where
// progress bars would be noise.
func LogProgress(log *slog.Logger, interval time.Duration) Progress {
	return &logProgress{log: log, every: interval}
}

type logProgress struct {
	log   *slog.Logger
	every time.Duration
}

func (p *logProgress) Start(file string, resumed, total int64) Meter {
	now := time.Now()
	m := &logMeter{p: p, file: file, done: resumed, resumed: resumed, total: total, start: now, last: now}
	if resumed > 0 {
		p.log.Info("resuming download", "file", file, "have", resumed, "total", total)
	}
	return m
}

type logMeter struct {
	p             *logProgress
	mu            sync.Mutex
	file          string
	done, resumed int64
	total         int64
	start, last   time.Time
}

func (m *logMeter) Add(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done += n
	if now := time.Now(); now.Sub(m.last) >= m.p.every {
		m.last = now
		attrs := []any{"file", m.file, "bytes", m.done, "total", m.total, "mb_per_s", m.rate(now)}
		if m.total > 0 {
			attrs = append(attrs, "percent", m.done*100/m.total)
		}
		m.p.log.Info("downloading", attrs...)
	}
}

func (m *logMeter) Finish(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if err != nil {
		m.p.log.Warn("download interrupted", "file", m.file, "bytes", m.done, "total", m.total, "err", err.Error())
		return
	}
	m.p.log.Info("downloaded", "file", m.file, "bytes", m.done, "seconds", roundTo(now.Sub(m.start).Seconds(), 2), "mb_per_s", m.rate(now))
}

func (m *logMeter) rate(now time.Time) float64 {
	s := now.Sub(m.start).Seconds()
	if s <= 0 {
		return 0
	}
	return roundTo(float64(m.done-m.resumed)/1e6/s, 1)
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// noProgress is used when Options.Progress is nil.
type noProgress struct{}

func (noProgress) Start(string, int64, int64) Meter { return noMeter{} }

type noMeter struct{}

func (noMeter) Add(int64)    {}
func (noMeter) Finish(error) {}
