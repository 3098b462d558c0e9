package ignition

import (
	"testing"
	"time"
)

// TestCacheIsBounded: at most MaxCached rendered configs are kept, the least
// recently used go first, and a config older than MaxAge is rendered again
// (its certificates renewed if due).
func TestCacheIsBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	r, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{MaxCached: 2, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return clock }
	render := func(mac string) {
		t.Helper()
		if _, err := r.RenderMAC(mustMAC(mac), SpecV3); err != nil {
			t.Fatal(err)
		}
	}
	a, b, c := "02:00:0a:00:00:3c", "02:00:0a:00:00:3d", "02:00:0a:00:00:3e"
	render(a)
	render(b)
	render(a) // a is the most recent now
	render(c) // evicts b
	if n := r.translations.Load(); n != 3 || r.Cached() != 2 {
		t.Fatalf("%d renders, %d cached; want 3 and 2", n, r.Cached())
	}
	render(a)
	if n := r.translations.Load(); n != 3 {
		t.Fatalf("a was evicted instead of b (%d renders)", n)
	}
	render(b)
	if n := r.translations.Load(); n != 4 {
		t.Fatalf("b was not evicted (%d renders)", n)
	}
	clock = clock.Add(2 * time.Hour)
	render(b)
	if n := r.translations.Load(); n != 5 {
		t.Fatalf("a config older than MaxAge was served (%d renders)", n)
	}
}
