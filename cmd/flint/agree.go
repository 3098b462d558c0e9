package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/profiles"
	"github.com/flint-boot/flint/store"
)

// How instances sharing an etcd store learn whether they agree on the site:
// each announces the fingerprint of its config and profiles
// (config.SiteHash) under a lease, and compares it with the others' every
// agreeEvery. While any differs, none serves a secret config.
const (
	announceTTL = 10 * time.Second
	agreeEvery  = 2 * time.Second
)

// siteHash is the fingerprint of what this config and its profiles (the
// embedded ones and the overlay in cluster.profiles_dir) give machines.
func siteHash(cfg *config.Config) (string, error) {
	set, err := profiles.Load(cfg.Cluster.ProfilesDir)
	if err != nil {
		return "", err
	}
	return cfg.SiteHash([]byte(set.Digest())), nil
}

// instanceID names this flint among the instances sharing an etcd store:
// in their announcements and in every timeline event it records. It is ""
// for a store of its own (bolt): there is only one.
func instanceID(cfg *config.Config) string {
	if cfg.Store.Backend != config.StoreEtcd {
		return ""
	}
	return cfg.HTTPBaseURL()
}

// compareSites is the decision: this instance (id, with hash) agrees with
// the announced instances when every other one has the same hash. why names
// those that differ and says what to do.
func compareSites(id, hash string, all []store.Instance) (ok bool, why string) {
	var differ []string
	for _, in := range all {
		if in.ID != id && in.SiteHash != hash {
			differ = append(differ, fmt.Sprintf("%s (site %s)", in.ID, short(in.SiteHash)))
		}
	}
	if len(differ) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("flint instances sharing the store disagree on the site config: %s differ from %s (site %s); no secret config goes out until their configs and profiles are the same (flint validate --store compares them)",
		strings.Join(differ, ", "), id, short(hash))
}

// agreement is what the last comparison found; safe for concurrent use.
type agreement struct {
	mu        sync.Mutex
	ok        bool
	why       string
	instances int
	up        bool // the last read of the instances committed (etcd has quorum)
}

// Agreed is lifecycle.Options.Agreed.
func (a *agreement) Agreed() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ok, a.why
}

func (a *agreement) gauges() (agreed float64, instances float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok {
		agreed = 1
	}
	return agreed, float64(a.instances)
}

// storeUp records whether the last linearizable read answered and says
// whether that changed.
func (a *agreement) storeUp(up bool) (changed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed = up != a.up
	a.up = up
	return changed
}

func (a *agreement) upGauge() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.up {
		return 1
	}
	return 0
}

// set records a comparison and says whether the verdict changed.
func (a *agreement) set(ok bool, why string, instances int) (changed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed = ok != a.ok || why != a.why
	a.ok, a.why, a.instances = ok, why, instances
	return changed
}

// startAgreement announces this instance in the etcd store and compares
// the site with the other instances' now and every agreeEvery until ctx
// ends; stop withdraws the announcement. It returns nil (and nothing to do)
// for a store of one instance (bolt).
func startAgreement(ctx context.Context, cfg *config.Config, st store.Store, met *metrics.Metrics, log *slog.Logger) (a *agreement, stop func(), err error) {
	es, ok := st.(*store.Etcd)
	if !ok {
		return nil, func() {}, nil
	}
	hash, err := siteHash(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	self := store.Instance{ID: instanceID(cfg), SiteHash: hash, Version: version, Since: time.Now()}
	withdraw, err := es.Announce(ctx, self, announceTTL)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%w\n(flint instances sharing an etcd store announce themselves there)", err)
	}
	a = &agreement{ok: true, up: true}
	compare := func() {
		if h, err := siteHash(cfg); err == nil && h != self.SiteHash {
			// The overlay profiles changed under a running flint.
			withdraw()
			self.SiteHash = h
			if withdraw, err = es.Announce(ctx, self, announceTTL); err != nil {
				log.Warn("could not announce this flint's new site fingerprint; retrying", "err", err.Error())
				withdraw = func() {}
			}
		}
		all, err := es.Instances()
		if a.storeUp(err == nil) {
			if err != nil {
				log.Error("the etcd store does not answer: no new address goes out and configs wait (503); bound machines renew from this instance's memory. Check the etcd members' health (etcdctl endpoint health) and quorum", "err", err.Error())
			} else {
				log.Info("the etcd store answers again", "instances", len(all))
			}
		}
		if err != nil {
			return // keep the last verdict
		}
		ok, why := compareSites(self.ID, self.SiteHash, all)
		if a.set(ok, why, len(all)) {
			if ok {
				log.Info("flint instances sharing the store agree on the site config again; secret configs go out", "instances", len(all), "site", short(self.SiteHash))
			} else {
				log.Error(why)
			}
		}
	}
	compare()
	met.GaugeFunc("flint_config_agreement", "1 while every flint instance sharing the etcd store has this instance's site config (config.SiteHash), else 0: no secret config goes out.",
		func() float64 { v, _ := a.gauges(); return v })
	met.GaugeFunc("flint_store_instances", "flint instances announced in the etcd store, this one included.",
		func() float64 { _, n := a.gauges(); return n })
	met.GaugeFunc("flint_store_up", "1 while the etcd store answers linearizable reads (checked every 2 s), 0 while it has no quorum or cannot be reached: no new address goes out.",
		a.upGauge)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(agreeEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				compare()
			}
		}
	}()
	return a, func() { cancel(); <-done; withdraw() }, nil
}

// compareWithStore is validate --store: this config's site against every
// instance announced in the config's store.
func compareWithStore(out io.Writer, cfg *config.Config, dataDir string) error {
	if cfg.Store.Backend != config.StoreEtcd {
		fmt.Fprintf(out, "--store: store.backend is %s (this host's DATA/flint.db): there are no other instances to compare with\n", cfg.Store.Backend)
		return nil
	}
	hash, err := siteHash(cfg)
	if err != nil {
		return err
	}
	st, err := openStore(cfg, dataDir, storeRead)
	if err != nil {
		return err
	}
	defer st.Close()
	all, err := st.(*store.Etcd).Instances()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "this config: site %s\n", short(hash))
	differ := 0
	for _, in := range all {
		verdict := "same site"
		if in.SiteHash != hash {
			verdict = "DIFFERS"
			differ++
		}
		fmt.Fprintf(out, "  %s: site %s (flint %s, since %s): %s\n", in.ID, short(in.SiteHash), in.Version, in.Since.Format(time.RFC3339), verdict)
	}
	if len(all) == 0 {
		fmt.Fprintln(out, "  no flint instance serves from the store now")
	}
	if err := checkStorePKI(out, cfg, dataDir, st); err != nil {
		return err
	}
	if differ > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s serving from the store %s a different site (config or profiles): make them the same; meanwhile none of them serves secret configs", plural(differ, "instance", "instances"), map[bool]string{true: "has", false: "have"}[differ == 1])}
	}
	return nil
}
