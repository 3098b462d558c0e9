package ignition

import (
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
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
	if n, cached := r.translations.Load(), r.cached(); n != 3 || cached != 2 {
		t.Fatalf("%d renders, %d cached; want 3 and 2", n, cached)
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

func (r *Renderer) cached() int { n, _ := r.Cached(); return n }

// TestCacheIsBoundedByBytes: the cache also stops at MaxCachedBytes, a config
// larger than that is rendered every time rather than kept, and forgetting
// one machine forgets all its variants and their bytes.
func TestCacheIsBoundedByBytes(t *testing.T) {
	e := newEnv(t, envOpts{})
	probe, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := mustMAC("02:00:0a:00:00:3c"), mustMAC("02:00:0a:00:00:3d"), mustMAC("02:00:0a:00:00:3e")
	if _, err := probe.RenderMAC(a, SpecV3); err != nil {
		t.Fatal(err)
	}
	_, one := probe.Cached()
	if one == 0 {
		t.Fatal("a rendered config was not kept")
	}

	// Room for two configs of this size, not three.
	r, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{MaxCachedBytes: one * 5 / 2, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range []config.MAC{a, b, c} {
		if _, err := r.RenderMAC(mac, SpecV3); err != nil {
			t.Fatal(err)
		}
	}
	if n, bytes := r.Cached(); n != 2 || bytes > one*5/2 {
		t.Fatalf("%d configs, %d bytes cached; want 2 within %d bytes", n, bytes, one*5/2)
	}
	r.InvalidateMachine(c)
	if n, bytes := r.Cached(); n != 1 || bytes <= 0 || bytes > one*3/2 {
		t.Fatalf("after forgetting one machine: %d configs, %d bytes; want 1", n, bytes)
	}
	if _, err := r.RenderMAC(c, SpecLegacy); err != nil { // a second variant of c
		t.Fatal(err)
	}
	if _, err := r.RenderMAC(c, SpecV3); err != nil {
		t.Fatal(err)
	}
	r.InvalidateMachine(c)
	if n, _ := r.Cached(); n != 0 {
		// b was evicted to make room for c's two variants; none is left.
		t.Fatalf("after forgetting c: %d configs cached, want 0", n)
	}

	tiny, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{MaxCachedBytes: one / 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := tiny.RenderMAC(a, SpecV3); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := tiny.Cached(); n != 0 || tiny.translations.Load() != 2 {
		t.Fatalf("a config larger than the bound: %d cached, %d renders; want 0 and 2", n, tiny.translations.Load())
	}
}
