package ignition

import (
	"context"
	"testing"
	"time"
)

// TestWarmRendersAhead: after Warm's first pass every machine's first
// config comes from memory; an edited profile is rendered again on the next
// check; the cache keeps room beyond three quarters; ctx stops it at once.
func TestWarmRendersAhead(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	r := e.renderer(t, fakeSecrets{})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { r.Warm(ctx, 20*time.Millisecond); close(stopped) }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Every machine's first config: the installer's and the installed one
	// in disk mode, the machine's own in live mode.
	want := 0
	for i := range e.cfg.Machines {
		want++
		if e.cfg.InstallModeOf(&e.cfg.Machines[i]) == "disk" {
			want++
		}
	}
	waitFor("every machine is rendered", func() bool { n, _ := r.Cached(); return n >= want })

	t.Run("first configs come from memory", func(t *testing.T) {
		before := r.translations.Load()
		for i := range e.cfg.Machines {
			if _, err := r.RenderMAC(e.cfg.Machines[i].HW, SpecV3); err != nil {
				t.Fatal(err)
			}
		}
		if n := r.translations.Load() - before; n != 0 {
			t.Errorf("%d machines were rendered on request after Warm", n)
		}
	})

	t.Run("an edited profile is rendered again", func(t *testing.T) {
		before := r.translations.Load()
		e.writeProfile(t, "_unused.yaml", `{{define "unused"}}{{end}}`)
		waitFor("the new profile set is rendered", func() bool { return r.translations.Load()-before >= int64(want) })
		before = r.translations.Load()
		if _, err := r.RenderMAC(e.cfg.Machines[0].HW, SpecV3); err != nil {
			t.Fatal(err)
		}
		if r.translations.Load() != before {
			t.Error("a machine was rendered on request after the re-warm")
		}
	})

	t.Run("stops at once", func(t *testing.T) {
		t0 := time.Now()
		cancel()
		select {
		case <-stopped:
		case <-time.After(time.Second):
			t.Fatal("Warm still running a second after ctx ended")
		}
		t.Logf("stopped in %v", time.Since(t0))
	})

	t.Run("keeps room in a small cache", func(t *testing.T) {
		small, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{MaxCached: 4})
		if err != nil {
			t.Fatal(err)
		}
		small.warmOnce(context.Background())
		if n, _ := small.Cached(); n > 3 {
			t.Errorf("warmed %d configs into a cache of 4, want at most 3", n)
		}
	})
}
