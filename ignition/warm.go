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
// half of MaxAge passed, and renders again. It is background work and
// paced like it: after each render it waits as long as the render took, so
// it never takes more than half of one core from the DHCP, TFTP and HTTP
// answers it shares the machine with. It returns within one render of ctx
// ending.
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

// currentInputs is what the cache keys its entries by now, over the assets
// there are (a missing one changes it when it arrives); false while the
// profiles do not load (nothing renders then).
func (r *Renderer) currentInputs() (string, bool) {
	ps, err := r.profileSet()
	if err != nil {
		return "", false
	}
	return inputsOf(ps.set.Digest(), r.hasher.available(r.cfg, r.assetsDir)), true
}

// warmOnce renders every machine's first configs that are not cached yet;
// n counts the renders, done is false if ctx ended first.
func (r *Renderer) warmOnce(ctx context.Context) (n int, done bool) {
	for i := range r.cfg.Machines {
		m := &r.cfg.Machines[i]
		assets, err := r.hasher.assets(r.cfg, r.assetsDir, m)
		if err != nil {
			continue // its own request will say which asset is missing
		}
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
			before, start := r.translations.Load(), time.Now()
			_, err := r.render(m, SpecV3, assets, profile, ClusterStateNew)
			if err != nil {
				r.log.Debug("ignition: render ahead failed; the machine's request will say why", "machine", m.Hostname, "err", err)
			}
			if r.translations.Load() == before {
				continue // cached already, or failed before rendering
			}
			n++
			if !sleep(ctx, time.Since(start)) {
				return n, false
			}
		}
	}
	return n, true
}

// sleep waits for d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
