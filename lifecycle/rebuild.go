package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// ErrMemberHealthy is how a Rejoiner says the member still answers: a
// running, healthy member is never replaced, whoever asks.
var ErrMemberHealthy = errors.New("the etcd member still answers as healthy")

// ErrNothingChanged is how a Rejoiner says it refused before changing
// anything (e.g. quorum would be at risk).
var ErrNothingChanged = errors.New("etcd membership was not changed")

// armLiveRebuild takes the one rebuild slot for a rebooted live server and
// marks it rebuilding, in one store transaction.
func (m *Manager) armLiveRebuild(mc *config.Machine, from netip.Addr) (store.Machine, Verdict, string) {
	rec, err := m.st.ClaimRebuild(mc.MAC, func(r *store.Machine) error {
		r.State, r.StateChanged = store.StateReprovision, m.now()
		r.Rebuilding, r.EtcdRejoin = true, false
		return nil
	})
	var busy *store.BusyError
	switch {
	case errors.As(err, &busy):
		return rec, Wait, fmt.Sprintf("%s rebooted and must rejoin etcd, but %s is still rebuilding; it waits its turn", mc.Hostname, nameOf(busy.Holder))
	case err != nil:
		m.log.Error("cannot record the rebuild; failing closed", "machine", mc.Hostname, "err", err)
		return rec, Wait, "flint cannot record the rebuild; retry"
	}
	m.log.Warn("live server rebooted: its etcd data is gone, rebuilding its member once etcd confirms it is down", "machine", mc.Hostname)
	m.record(mc.HW, from, "live rebuild armed", "a live server's etcd data does not survive a reboot")
	return rec, Serve, ""
}

func nameOf(r store.Machine) string {
	if r.Hostname != "" {
		return r.Hostname
	}
	return r.MAC
}

// rejoin runs the etcd membership change for a reprovisioned server in the
// background; the node is told to wait (503) until it is done, or refused
// (403) when etcd says its old member still runs. It returns the verdict,
// its reason and, for a refusal, its code (Refused*).
func (m *Manager) rejoin(mc *config.Machine, from netip.Addr) (Verdict, string, string) {
	key := mc.HW
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.preparing[key] {
		return Wait, "flint is replacing " + mc.Hostname + "'s etcd member", ""
	}
	// The arm may have been cancelled since the caller read it; cancels
	// hold m.mu too, so this read settles it.
	if rec, _, err := m.st.Machine(mc.MAC); err != nil {
		return Wait, "flint cannot read its state; retry", ""
	} else if rec.EtcdRejoin {
		return Wait, "flint has replaced " + mc.Hostname + "'s etcd member; retry", ""
	} else if rec.State != store.StateReprovision {
		return Refuse, mc.Hostname + "'s reprovision was cancelled: its etcd member stays as it is", RefusedCancelled
	}
	if f, ok := m.failed[key]; ok && m.now().Sub(f.at) < m.RetryRejoin {
		if f.refuse {
			return Refuse, f.msg, RefusedRunning
		}
		return Wait, f.msg, ""
	}
	if m.connect == nil {
		return Wait, "this flint cannot reach etcd to replace the member", ""
	}
	if m.ctx.Err() != nil {
		return Wait, "flint is shutting down", ""
	}
	m.preparing[key] = true
	m.record(key, from, "etcd rejoin started", "checking the member and the others")
	m.bg.Add(1)
	go m.runRejoin(mc, from)
	return Wait, "flint is replacing " + mc.Hostname + "'s etcd member", ""
}

// recentFailure is the last rejoin failure of mac within RetryRejoin.
func (m *Manager) recentFailure(mac config.MAC) (rejoinErr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.failed[mac]
	if !ok || m.now().Sub(f.at) >= m.RetryRejoin {
		return rejoinErr{}, false
	}
	return f, true
}

func (m *Manager) runRejoin(mc *config.Machine, from netip.Addr) {
	defer m.bg.Done()
	start := m.now()
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	err := m.prepare(ctx, mc)
	healthy := errors.Is(err, ErrMemberHealthy)
	// Remember the outcome before the slot is freed: a config request in
	// between must find the refusal, not arm the member again.
	m.mu.Lock()
	delete(m.preparing, mc.HW)
	if err != nil {
		msg := err.Error()
		if errors.As(err, new(*localError)) {
			// flint's own trouble (its certificate files, its database):
			// the details, with their paths, go to the log and the
			// timeline, never to a node on the LAN.
			msg = fmt.Sprintf("flint cannot replace %s's etcd member now and retries; flint's log and the machine's timeline say why", mc.Hostname)
		}
		if healthy {
			msg = fmt.Sprintf("%s's etcd member still runs and is healthy: a running member is never replaced (%v)", mc.Hostname, err)
		}
		m.failed[mc.HW] = rejoinErr{at: m.now(), msg: msg, refuse: healthy, changed: errors.As(err, new(*membershipError))}
	} else {
		delete(m.failed, mc.HW)
	}
	m.mu.Unlock()
	if healthy && m.cfg.InstallModeOf(mc) == config.InstallLive {
		// Someone asked for a running member's config. Nothing changed in
		// etcd; a live server goes back to installed and frees the slot (its
		// next real reboot arms it again). An operator's arm stays.
		_, rerr := m.st.ReleaseRebuild(mc.MAC, func(r *store.Machine) error {
			r.State, r.StateChanged, r.Rebuilding = store.StateInstalled, m.now(), false
			return nil
		})
		if rerr != nil {
			m.log.Error("could not release the rebuild slot", "machine", mc.Hostname, "err", rerr)
		}
	}
	switch {
	case healthy:
		m.metrics.EtcdRejoin("refused_healthy", 0)
		m.log.Warn("config request for a running etcd member refused; its member was not touched", "machine", mc.Hostname, "from", from, "err", err)
		m.record(mc.HW, from, "etcd rejoin refused", "the member still runs and is healthy; nothing was changed")
	case err != nil:
		m.metrics.EtcdRejoin("failed", 0)
		m.log.Error("etcd member replacement refused; the node waits and flint retries", "machine", mc.Hostname, "err", err)
		m.record(mc.HW, from, "etcd rejoin refused", err.Error())
	default:
		m.metrics.EtcdRejoin("replaced", m.now().Sub(start))
		m.log.Info("etcd member replaced; serving the node its config with state existing", "machine", mc.Hostname, "took", m.now().Sub(start).Round(time.Millisecond))
		m.record(mc.HW, from, "etcd rejoin prepared", fmt.Sprintf("member re-added in %s", m.now().Sub(start).Round(time.Millisecond)))
	}
}

// hasOtherServers says whether the config has etcd members besides mc.
func (m *Manager) hasOtherServers(mc *config.Machine) bool {
	for _, s := range m.cfg.Servers() {
		if s.MAC != mc.MAC {
			return true
		}
	}
	return false
}

// membershipLock names the lock that keeps etcd membership changes one at
// a time across the flint instances sharing a store.
const membershipLock = "etcd-membership"

func (m *Manager) prepare(ctx context.Context, mc *config.Machine) error {
	if m.lock != nil {
		unlock, err := m.lock(ctx, membershipLock)
		if err != nil {
			return &localError{fmt.Errorf("wait for the other flint instances' etcd membership changes: %w", err)}
		}
		defer unlock()
		// Another instance may have re-added the member while this one
		// waited for the lock: then there is nothing left to do.
		if rec, ok, err := m.st.Machine(mc.MAC); err == nil && ok && rec.EtcdRejoin {
			return nil
		}
	}
	var endpoints []string
	for _, s := range m.cfg.Servers() {
		if s.MAC != mc.MAC {
			endpoints = append(endpoints, "https://"+net.JoinHostPort(s.IPAddr.String(), "2379"))
		}
	}
	if len(endpoints) == 0 {
		return fmt.Errorf("%s is the only etcd member: there is no cluster to rejoin (admission serves it a new cluster instead; this is a bug)", mc.Hostname)
	}
	admin, err := m.connect(ctx, endpoints)
	if err != nil {
		return &localError{fmt.Errorf("connect to etcd at %s: %w", strings.Join(endpoints, ","), err)}
	}
	defer admin.Close()
	peerURL := "https://" + net.JoinHostPort(mc.IPAddr.String(), "2380")
	if _, err := admin.PrepareRejoin(ctx, mc.Hostname, peerURL); err != nil {
		if errors.Is(err, ErrMemberHealthy) || errors.Is(err, ErrNothingChanged) {
			return err
		}
		return &membershipError{err}
	}
	_, err = m.st.UpdateMachine(mc.MAC, func(r *store.Machine) error {
		r.EtcdRejoin = true
		return nil
	})
	if err != nil {
		return &membershipError{&localError{err}}
	}
	return nil
}

// localError is a rejoin failure of flint's own (reaching etcd with its
// certificate, writing its state): its text may name files on flint.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// membershipError is a rejoin failure after which etcd's membership may
// have changed (PrepareRejoin removes before it adds).
type membershipError struct{ err error }

func (e *membershipError) Error() string { return e.err.Error() }
func (e *membershipError) Unwrap() error { return e.err }
