package lifecycle

import (
	"context"
	"testing"
)

// chanLock is a lock two managers share, as the etcd store's Lock is
// shared by the flint instances on one store.
type chanLock chan struct{}

func (l chanLock) lock(ctx context.Context, _ string) (func(), error) {
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestRejoinOnceAcrossInstances: a rebuilt server whose config requests
// reach two flint instances at once (each with its own in-memory rejoin
// slot) has its etcd member replaced once: the second instance waits for
// the first's membership change under the shared lock, then finds it done.
// Without the lock, both would replace it (the control).
func TestRejoinOnceAcrossInstances(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lock  bool
		calls int
	}{{"with the shared lock", true, 1}, {"without it (control)", false, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "full", "disk")
			var l chanLock = make(chan struct{}, 1)
			m2, err := New(f.cfg, f.st, Options{
				Connect:   func(context.Context, []string) (Rejoiner, error) { return f.etc, nil },
				ReportKey: testKey,
				Now:       f.clock.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m2.Close)
			if tc.lock {
				f.m.lock, m2.lock = l.lock, l.lock
			}
			f.installDisk(t, nuc1, ip1)
			f.installDisk(t, nuc2, ip2) // a cluster to rejoin
			if plan, err := f.m.Reprovision("nuc1", true); err != nil || !plan.Armed {
				t.Fatalf("arm nuc1: %+v %v", plan, err)
			}
			release := make(chan struct{})
			f.etc.set(nil, release)
			f.dhcp(t, nuc1, ip1)
			tok := f.script(t, nuc1, ip1)
			for _, m := range []*Manager{f.m, m2} {
				if a := m.AdmitConfig(ConfigRequest{MAC: nuc1, From: ip1, Token: tok, Stage: StageBoot}); a.Verdict != Wait {
					t.Fatalf("config request during the rebuild: %v %q, want wait", a.Verdict, a.Reason)
				}
			}
			close(release)
			waitFor(t, "both instances' rejoins to end", func() bool {
				busy := false
				for _, m := range []*Manager{f.m, m2} {
					m.mu.Lock()
					busy = busy || m.preparing[nuc1]
					m.mu.Unlock()
				}
				return !busy
			})
			f.etc.mu.Lock()
			calls := len(f.etc.calls)
			f.etc.mu.Unlock()
			if calls != tc.calls {
				t.Errorf("nuc1's member was replaced %d times, want %d", calls, tc.calls)
			}
		})
	}
}
