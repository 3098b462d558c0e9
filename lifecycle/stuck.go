package lifecycle

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/flint-boot/flint/store"
)

// stuck says whether a record is a stalled install: its config went out
// (installing) longer than cluster.install_timeout ago and no report moved
// it on.
func (m *Manager) stuck(r *store.Machine, now time.Time) bool {
	return r.State == store.StateInstalling && now.Sub(r.StateChanged) >= m.cfg.Cluster.InstallTimeout.Duration
}

// MarkStuck sets or clears the Stuck mark of every machine of the config,
// each looked up by key, and writes only the records whose mark changes. A
// machine newly marked gets a timeline event that says what to do. It
// returns how many marks changed.
func (m *Manager) MarkStuck() (changed int, err error) {
	now := m.now()
	for i := range m.cfg.Machines {
		mc := &m.cfg.Machines[i]
		rec, ok, err := m.st.Machine(mc.MAC)
		if err != nil {
			return changed, fmt.Errorf("read %s: %w", mc.Hostname, err)
		}
		if !ok || rec.Stuck == m.stuck(&rec, now) {
			continue
		}
		var marked bool
		_, err = m.st.UpdateMachine(mc.MAC, func(r *store.Machine) error {
			r.Stuck = m.stuck(r, now)
			marked = r.Stuck
			return nil
		})
		if err != nil {
			return changed, fmt.Errorf("mark %s: %w", mc.Hostname, err)
		}
		changed++
		if marked {
			since := now.Sub(rec.StateChanged).Round(time.Minute)
			m.log.Warn("install stuck: no report since its config was served", "machine", mc.Hostname, "for", since)
			m.record(mc.HW, netip.Addr{}, "install stuck",
				fmt.Sprintf("no report for %s since its config was served (cluster.install_timeout %s): look at its console, or reboot it to retry", since, m.cfg.Cluster.InstallTimeout.Duration))
		}
	}
	return changed, nil
}

// WatchInstalls runs MarkStuck every `every` until ctx ends.
func (m *Manager) WatchInstalls(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := m.MarkStuck(); err != nil {
			m.log.Error("could not check for stuck installs; trying again in a minute", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
