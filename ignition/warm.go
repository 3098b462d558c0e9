package ignition

import (
	"context"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/profiles"
)

// Warm renders ahead, while flint serves, the config each machine of the
// config will ask for first (spec 3, a new cluster member; in disk mode the
// installer's config and then the installed system's), in config order, so
// a storm of first boots is answered from memory. It stops when the cache
// is three quarters full: a site larger than the cache keeps room for the
// machines that actually boot. Every `every` it checks whether what the
// configs are made from changed (a profile edited, an asset replaced) or
// half of MaxAge passed, and renders again. It returns within one render of
// ctx ending.
func (r *Renderer) Warm(ctx context.Context, every time.Duration) {
	var last string
	var lastAt time.Time
	for {
		if in, ok := r.currentInputs(); ok && (in != last || r.now().Sub(lastAt) >= r.cache.maxAge/2) {
			start := time.Now()
			n, done := r.warmOnce(ctx)
			if done {
				last, lastAt = in, r.now()
				configs, bytes := r.Cached()
				r.log.Info("ignition: rendered configs ahead", "rendered", n, "cached", configs, "bytes", bytes, "took", time.Since(start).Round(time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// currentInputs is what the cache keys its entries by now; false while an
// asset is missing (nothing renders then).
func (r *Renderer) currentInputs() (string, bool) {
	ps, err := r.profileSet()
	if err != nil {
		return "", false
	}
	assets, err := r.hasher.assets(r.cfg, r.assetsDir)
	if err != nil {
		return "", false
	}
	return inputsOf(ps.set.Digest(), assets), true
}

// warmOnce renders every machine's first configs that are not cached yet;
// n counts the renders, done is false if ctx ended first.
func (r *Renderer) warmOnce(ctx context.Context) (n int, done bool) {
	assets, err := r.hasher.assets(r.cfg, r.assetsDir)
	if err != nil {
		return 0, true
	}
	for i := range r.cfg.Machines {
		m := &r.cfg.Machines[i]
		variants := []string{profiles.ProfileOf(m)}
		if r.cfg.InstallModeOf(m) == config.InstallDisk {
			variants = []string{InstallerProfile, profiles.ProfileOf(m)}
		}
		for _, profile := range variants {
			if ctx.Err() != nil {
				return n, false
			}
			if configs, bytes := r.cache.len(); configs >= r.cache.max*3/4 || bytes >= r.cache.maxBytes*3/4 {
				return n, true
			}
			before := r.translations.Load()
			if _, err := r.render(m, SpecV3, assets, profile, ClusterStateNew); err != nil {
				r.log.Debug("ignition: render ahead failed; the machine's request will say why", "machine", m.Hostname, "err", err)
				continue
			}
			if r.translations.Load() != before {
				n++
			}
		}
	}
	return n, true
}
