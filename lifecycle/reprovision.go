package lifecycle

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// Plan is what arming a reprovision will do, in words for the operator.
type Plan struct {
	Machine string   `json:"machine"`
	Role    string   `json:"role"`
	Steps   []string `json:"steps"`
	// NeedsConfirm is true for servers: etcd membership changes.
	NeedsConfirm bool `json:"needs_confirm"`
	Armed        bool `json:"armed"`
	// Cancelled: an armed reprovision was disarmed (CancelReprovision).
	Cancelled bool `json:"cancelled,omitempty"`
}

// ErrBusy means another server is still being rebuilt.
var ErrBusy = store.ErrRebuildBusy

// ErrNoMachine means the name matches no machine of the config.
var ErrNoMachine = errors.New("no such machine in flint's config")

// ErrNotInstalled means the machine has no install to redo: its install
// window is open and its next network boot installs it anyway.
var ErrNotInstalled = errors.New("nothing to reprovision")

// ErrNotArmed means there is no armed reprovision to cancel.
var ErrNotArmed = errors.New("no reprovision armed")

// ErrRebuildStarted means a cancel came after flint changed (or may have
// changed) the machine's etcd membership.
var ErrRebuildStarted = errors.New("the rebuild has started")

// lookup finds the config's machine by hostname or MAC.
func lookup(cfg *config.Config, name string) (*config.Machine, error) {
	if m, ok := cfg.MachineByNameOrMAC(name); ok {
		return m, nil
	}
	names := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		names = append(names, m.Hostname)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%w: %q (known: %s)", ErrNoMachine, name, strings.Join(names, ", "))
}

// installedOrArmed refuses a machine whose install window is still open:
// there is nothing to redo, and its next network boot installs it.
func installedOrArmed(hostname string, s store.State) error {
	switch s {
	case store.StateInstalled, store.StateReprovision:
		return nil
	case store.StateInstalling:
		return fmt.Errorf("%w: %s is installing now and has not reported its install finished: its install window is open, so rebooting it from the network installs it again", ErrNotInstalled, hostname)
	}
	return fmt.Errorf("%w: %s was never installed: it installs on its first network boot", ErrNotInstalled, hostname)
}

// Reprovision arms machine `name` (hostname or MAC) so its next boot
// reinstalls it. For a server it only explains unless confirm is set, and it
// refuses while another server is rebuilding: two members down at once can
// cost a 3-member cluster its quorum. Checking and arming are one store
// transaction, so concurrent calls arm at most one server. A machine that
// was never installed has no plan: it installs on its first boot.
func Reprovision(st store.Store, cfg *config.Config, name string, confirm bool, now time.Time) (Plan, error) {
	target, err := lookup(cfg, name)
	if err != nil {
		return Plan{}, err
	}
	rec, _, err := st.Machine(target.MAC)
	if err != nil {
		return Plan{}, err
	}
	if err := installedOrArmed(target.Hostname, rec.State); err != nil {
		return Plan{}, err
	}
	p := Plan{Machine: target.Hostname, Role: target.Role}
	if target.Role == config.RoleServer {
		var others []string
		for _, s := range cfg.Servers() {
			if s.MAC != target.MAC {
				others = append(others, s.Hostname)
			}
		}
		p.NeedsConfirm = true
		if len(others) == 0 {
			p.Steps = []string{
				fmt.Sprintf("%s is the config's only etcd member: there is no other member to copy the cluster's data from", target.Hostname),
				fmt.Sprintf("serve %s its config with ETCD_INITIAL_CLUSTER_STATE=new, the same certificates, K3s token and node password: etcd and K3s start empty, and what the cluster stored is lost (restore an etcd snapshot afterwards if you have one)", target.Hostname),
				"give the cluster three servers so that the next rebuild keeps its data",
			}
		} else {
			p.Steps = []string{
				fmt.Sprintf("check that %s's own etcd member is down (a running, healthy member is never replaced) and that the other members (%s) are healthy and quorum survives; otherwise serve nothing and say why", target.Hostname, strings.Join(others, ", ")),
				fmt.Sprintf("remove %s's old etcd member and add it back with peer URL https://%s:2380", target.Hostname, target.IPAddr),
				fmt.Sprintf("serve %s its config with ETCD_INITIAL_CLUSTER_STATE=existing, the same certificates, K3s token and node password", target.Hostname),
				fmt.Sprintf("%s starts with an empty etcd data directory and copies the data from the other members", target.Hostname),
			}
		}
	} else {
		p.Steps = []string{
			fmt.Sprintf("serve %s its config again and reinstall it", target.Hostname),
			"it rejoins K3s with the same token and node password",
		}
	}
	if p.NeedsConfirm && !confirm {
		return p, nil
	}
	arm := func(r *store.Machine) error {
		if err := installedOrArmed(target.Hostname, r.State); err != nil {
			return err
		}
		r.State, r.StateChanged = store.StateReprovision, now
		// A new install: nothing of the old boot counts, not even a boot
		// token issued before the arm.
		r.Boot = store.Boot{SpentBefore: now}
		if target.Role == config.RoleServer {
			r.Rebuilding, r.EtcdRejoin = true, false
		}
		return nil
	}
	if target.Role == config.RoleServer {
		_, err = st.ClaimRebuild(target.MAC, arm)
	} else {
		_, err = st.UpdateMachine(target.MAC, arm)
	}
	var busy *store.BusyError
	if errors.As(err, &busy) {
		return p, fmt.Errorf("%w: %s was reprovisioned and has not reported etcd healthy yet; wait for it (flint machines shows its last event) before rebuilding %s, or cancel its rebuild with `flint reprovision %s --cancel` if it was a mistake", ErrBusy, nameOf(busy.Holder), target.Hostname, nameOf(busy.Holder))
	}
	if err != nil {
		return p, err
	}
	p.Armed = true
	return p, st.RecordSighting(store.Sighting{MAC: target.MAC, At: now, Event: "reprovision armed", TimelineOnly: true})
}

// Reprovision is the package function with this manager's store, config and clock.
func (m *Manager) Reprovision(name string, confirm bool) (Plan, error) {
	return Reprovision(m.st, m.cfg, name, confirm, m.now())
}

// CancelReprovision disarms the armed reprovision of `name`: the machine is
// installed again (its install window closed, its old boot tokens void) and
// the rebuild slot is free for another server. It refuses once flint has
// changed the machine's etcd membership: etcd then waits for the member to
// rejoin, and only finishing the rebuild brings it.
func CancelReprovision(st store.Store, cfg *config.Config, name string, now time.Time) (Plan, error) {
	target, err := lookup(cfg, name)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Machine: target.Hostname, Role: target.Role}
	_, err = st.ReleaseRebuild(target.MAC, func(r *store.Machine) error {
		if r.State != store.StateReprovision {
			state := string(r.State)
			if state == "" {
				state = string(store.StateReady)
			}
			return fmt.Errorf("%w: %s is %s, not armed for reprovision: nothing to cancel", ErrNotArmed, target.Hostname, state)
		}
		if r.EtcdRejoin {
			return rebuildStarted(target.Hostname, "flint already removed its old etcd member and added it back, so etcd waits for it to rejoin")
		}
		r.State, r.StateChanged = store.StateInstalled, now
		r.Rebuilding = false
		r.Boot = store.Boot{SpentBefore: now}
		return nil
	})
	if err != nil {
		return p, err
	}
	p.Cancelled = true
	p.Steps = []string{fmt.Sprintf("leave %s installed: its next boot starts from its disk (a live machine boots as before), and another server may be rebuilt", target.Hostname)}
	return p, st.RecordSighting(store.Sighting{MAC: target.MAC, At: now, Event: "reprovision cancelled", TimelineOnly: true})
}

func rebuildStarted(hostname, why string) error {
	return fmt.Errorf("%w: cannot cancel %s's rebuild: %s; cancelling now would leave etcd a member that never comes back. Boot %s from the network to finish the rebuild", ErrRebuildStarted, hostname, why, hostname)
}

// CancelReprovision is the package function with this manager's store,
// config and clock. It holds the rejoin lock, so a rejoin either starts
// before it (and the cancel is refused) or finds the arm gone.
func (m *Manager) CancelReprovision(name string) (Plan, error) {
	target, err := lookup(m.cfg, name)
	if err != nil {
		return Plan{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.preparing[target.HW] {
		return Plan{Machine: target.Hostname, Role: target.Role}, rebuildStarted(target.Hostname, "flint is replacing its etcd member right now")
	}
	if f, ok := m.failed[target.HW]; ok && f.changed {
		return Plan{Machine: target.Hostname, Role: target.Role}, rebuildStarted(target.Hostname, "flint's last attempt to replace its etcd member failed part-way ("+f.msg+") and may have removed the old member")
	}
	p, err := CancelReprovision(m.st, m.cfg, name, m.now())
	if err == nil {
		delete(m.failed, target.HW)
	}
	return p, err
}
