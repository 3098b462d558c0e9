package tftp

import (
	"log/slog"
	"testing"
	"time"
)

// TestRateLogFlood: a flood of one message gives logBurst lines one by one
// and then one summary line per flush carrying the count of the rest;
// another message keeps its own budget; nothing is lost from the counts.
func TestRateLogFlood(t *testing.T) {
	logs := &logRecords{}
	r := newRateLog(slog.New(slog.NewJSONHandler(logs, nil)), time.Hour, 3)
	for range 1000 {
		r.Warn("flood", "client", "198.18.0.7")
	}
	r.Warn("other")
	r.flush()
	r.flush() // nothing new: no line
	flood := logs.with(t, "flood")
	if len(flood) != 4 {
		t.Fatalf("%d lines for 1000 floods, want 3 one by one and 1 summary", len(flood))
	}
	if n, _ := flood[3]["suppressed"].(float64); n != 997 {
		t.Errorf("summary %v, want suppressed=997", flood[3])
	}
	if n := len(logs.with(t, "other")); n != 1 {
		t.Errorf("%d lines for the other message, want 1", n)
	}
	// Debug lines cost nothing when debug is off, and are not counted.
	r.Debug("quiet")
	r.flush()
	if n := len(logs.with(t, "quiet")); n != 0 {
		t.Errorf("debug line logged at info level")
	}

	// A new interval gives a new budget.
	r.every = time.Nanosecond
	time.Sleep(time.Millisecond)
	r.Warn("flood")
	if n := len(logs.with(t, "flood")); n != 5 {
		t.Errorf("%d flood lines after the interval passed, want 5", n)
	}
}
