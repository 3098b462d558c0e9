package dhcp

import (
	"fmt"
	"testing"
	"time"
)

func TestQuietLogOncePerKeyPerPeriod(t *testing.T) {
	var q quietLog
	allow := func(key string, at time.Time) bool { ok, _ := q.allow(key, at); return ok }
	if !allow("a", t0) {
		t.Fatal("first line of a key suppressed")
	}
	if allow("a", t0.Add(59*time.Second)) {
		t.Error("same key let through again within the minute")
	}
	if !allow("b", t0) {
		t.Error("another key suppressed")
	}
	if !allow("a", t0.Add(61*time.Second)) {
		t.Error("key suppressed after its minute")
	}
	// A clock stepped back does not silence the key until it catches up.
	if !allow("a", t0.Add(-time.Hour)) {
		t.Error("key suppressed after the clock stepped back")
	}
}

// TestQuietLogBudget: a flood of distinct keys (spoofed MACs) gets
// quietBudget lines a minute in all; the next line let through says how many
// were held back.
func TestQuietLogBudget(t *testing.T) {
	var q quietLog
	let := 0
	for i := range 1000 {
		if ok, _ := q.allow(fmt.Sprint("pool full ", i), t0); ok {
			let++
		}
	}
	if let != quietBudget {
		t.Errorf("%d of 1000 distinct keys logged within a minute, want the budget %d", let, quietBudget)
	}
	ok, suppressed := q.allow("pool full x", t0.Add(quietPeriod))
	if !ok || suppressed != 1000-quietBudget {
		t.Errorf("after a minute: allowed %v, suppressed %d, want true and %d", ok, suppressed, 1000-quietBudget)
	}
	if _, suppressed := q.allow("pool full y", t0.Add(quietPeriod)); suppressed != 0 {
		t.Errorf("suppressed count reported twice (%d)", suppressed)
	}
}

// TestQuietLogIsFixedSize: a call allocates nothing, however many keys there
// were (the table is an array; nothing grows with the keys).
func TestQuietLogIsFixedSize(t *testing.T) {
	var q quietLog
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("pool full 02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
	}
	i := 0
	allocs := testing.AllocsPerRun(len(keys), func() {
		q.allow(keys[i%len(keys)], t0.Add(time.Duration(i)*time.Millisecond))
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
}

func TestTokenBucket(t *testing.T) {
	b := tokenBucket{perPeriod: 3, period: time.Minute}
	got := ""
	for _, at := range []time.Duration{0, 0, 0, 0, 19 * time.Second, 20 * time.Second, 20 * time.Second, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		got += map[bool]string{true: "y", false: "n"}[b.take(t0.Add(at))]
	}
	// 3 at once, then one per 20s; a long pause refills to 3, not more.
	if want := "yyyn" + "nyn" + "yyyn"; got != want {
		t.Errorf("takes %s, want %s", got, want)
	}
}

// BenchmarkQuietLog: the cost per packet stays flat from 100 to 100,000
// distinct keys (a flood of spoofed MACs). Run it alone:
//
//	go test -run '^$' -bench BenchmarkQuietLog ./dhcp/
func BenchmarkQuietLog(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("pool full 02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
			}
			var q quietLog
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				q.allow(keys[i%n], t0.Add(time.Duration(i)*time.Microsecond))
				i++
			}
		})
	}
}
