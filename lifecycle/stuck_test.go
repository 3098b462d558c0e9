package lifecycle

import (
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

// TestMarkStuck: a machine installing past cluster.install_timeout is marked
// once, with a timeline event that says what to do; the mark goes when a
// report moves it on; nothing is written while nothing changes.
func TestMarkStuck(t *testing.T) {
	f := newFixture(t, "full", "live")
	f.dhcp(t, nuc1, ip1)
	a := f.deliver(t, nuc1, ip1, f.script(t, nuc1, ip1), StageBoot)
	if s := f.state(t, nuc1); s.State != store.StateInstalling || s.Stuck {
		t.Fatalf("after the config: %s stuck=%v", s.State, s.Stuck)
	}
	timeout := f.cfg.Cluster.InstallTimeout.Duration

	t.Run("not before the timeout", func(t *testing.T) {
		f.clock.Advance(timeout - time.Minute)
		if n, err := f.m.MarkStuck(); err != nil || n != 0 || f.state(t, nuc1).Stuck {
			t.Fatalf("MarkStuck: %d %v", n, err)
		}
	})
	t.Run("marked after it", func(t *testing.T) {
		f.clock.Advance(2 * time.Minute)
		if n, err := f.m.MarkStuck(); err != nil || n != 1 {
			t.Fatalf("MarkStuck: %d %v", n, err)
		}
		if !f.state(t, nuc1).Stuck {
			t.Fatal("not marked")
		}
		if ev := f.events(t, nuc1); !strings.Contains(ev, "install stuck") || !strings.Contains(ev, "reboot it to retry") {
			t.Errorf("timeline:\n%s", ev)
		}
		if n, err := f.m.MarkStuck(); err != nil || n != 0 {
			t.Errorf("a second check rewrote the mark: %d %v", n, err)
		}
		if strings.Count(f.events(t, nuc1), "install stuck") != 1 {
			t.Error("the event was recorded twice")
		}
	})
	t.Run("a retry starts the clock over", func(t *testing.T) {
		f.dhcp(t, nuc1, ip1)
		a = f.deliver(t, nuc1, ip1, f.script(t, nuc1, ip1), StageBoot)
		if s := f.state(t, nuc1); s.Stuck || s.State != store.StateInstalling {
			t.Fatalf("after a second delivery: %s stuck=%v", s.State, s.Stuck)
		}
		f.clock.Advance(timeout / 2)
		if n, err := f.m.MarkStuck(); err != nil || n != 0 || f.state(t, nuc1).Stuck {
			t.Fatalf("half a timeout after the retry: %d %v", n, err)
		}
		f.clock.Advance(timeout)
		if n, err := f.m.MarkStuck(); err != nil || n != 1 {
			t.Fatalf("a timeout after the retry: %d %v", n, err)
		}
	})
	t.Run("cleared by the report", func(t *testing.T) {
		if err := f.report(nuc1, ip1, a.Boot.ReportToken, EventConfigApplied); err != nil {
			t.Fatal(err)
		}
		if n, err := f.m.MarkStuck(); err != nil || n != 1 {
			t.Fatalf("MarkStuck: %d %v", n, err)
		}
		if s := f.state(t, nuc1); s.Stuck || s.State != store.StateInstalled {
			t.Errorf("after the report: %s stuck=%v", s.State, s.Stuck)
		}
	})
	t.Run("other machines untouched", func(t *testing.T) {
		if s := f.state(t, nuc2); s.Stuck || s.State == store.StateInstalling {
			t.Errorf("nuc2: %s stuck=%v", s.State, s.Stuck)
		}
	})
}
