// Package lifecycle decides what a machine may have at each point of its life:
// discovered -> ready -> installing -> installed, and back through reprovision
// when an operator arms it. It guards the Ignition config (which carries the
// machine's private keys and the cluster token) and rebuilds an etcd member
// in place before a reprovisioned server gets its config back.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// Verdict is the answer to a config request.
type Verdict int

const (
	Serve   Verdict = iota // hand out the config
	Refuse                 // 403: not this requester, or not now
	Wait                   // 503: flint is preparing (etcd membership); Ignition retries
	Unknown                // 404: not a machine of the config
)

// Node events that move the lifecycle (POST /api/v1/events).
const (
	EventConfigApplied   = "config-applied"   // Ignition finished; live machines are installed then
	EventInstallFinished = "install-finished" // flatcar-install wrote the disk
	EventEtcdHealthy     = "etcd-healthy"     // the member serves; a rebuild is over
	EventK3sUp           = "k3s-up"
)

// Rejoiner fixes etcd membership so a wiped member can start again with an
// empty data directory (etcdadmin.Admin).
type Rejoiner interface {
	PrepareRejoin(ctx context.Context, name, peerURL string) (initialCluster string, err error)
	Close() error
}

// ConnectEtcd opens an admin connection to the given client endpoints.
type ConnectEtcd func(ctx context.Context, endpoints []string) (Rejoiner, error)

// Manager keeps the lifecycle in the store. Safe for concurrent use.
type Manager struct {
	cfg     *config.Config
	st      store.Store
	connect ConnectEtcd
	log     *slog.Logger
	now     func() time.Time

	// RetryRejoin is how long after a failed membership change the next
	// config request tries again.
	RetryRejoin time.Duration

	mu        sync.Mutex
	preparing map[string]bool      // MAC -> a rejoin runs now
	failed    map[string]rejoinErr // MAC -> last rejoin failure
}

type rejoinErr struct {
	at  time.Time
	msg string
}

// New makes a manager. connect may be nil when no etcd rebuild can happen
// (then reprovisioned servers are refused with an explanation).
func New(cfg *config.Config, st store.Store, connect ConnectEtcd, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, st: st, connect: connect, log: log, now: time.Now,
		RetryRejoin: 10 * time.Second, preparing: map[string]bool{}, failed: map[string]rejoinErr{}}
}

// record puts an event on mac's timeline only: the requester may be another
// machine, whose address must not become mac's.
func (m *Manager) record(mac string, from netip.Addr, event, detail string) {
	err := m.st.RecordSighting(store.Sighting{MAC: mac, At: m.now(), IP: from, Event: event, Detail: detail, TimelineOnly: true})
	if err != nil {
		m.log.Warn("could not record event", "mac", mac, "event", event, "err", err)
	}
}

func (m *Manager) machineRecord(mac string) (store.Machine, bool) {
	ms, err := m.st.Machines()
	if err != nil {
		return store.Machine{}, false
	}
	for _, r := range ms {
		if r.MAC == mac {
			return r, true
		}
	}
	return store.Machine{}, false
}

// ConfigRequest decides whether the machine with mac, asking from address
// `from`, gets its Ignition config now. The reason explains a refusal and is
// recorded on the machine's timeline.
func (m *Manager) ConfigRequest(mac config.MAC, from netip.Addr) (Verdict, string) {
	mc, ok := m.cfg.MachineByMAC(mac)
	if !ok {
		return Unknown, "not in the config"
	}
	key := mc.MAC
	from = from.Unmap()
	if m.cfg.DHCP.Mode == config.ModeFull {
		if reason := m.checkLease(key, from); reason != "" {
			m.log.Warn("refused ignition config", "mac", key, "from", from, "reason", reason)
			m.record(key, from, "ignition refused", reason)
			return Refuse, reason
		}
	}
	rec, _ := m.machineRecord(key)
	live := m.cfg.InstallModeOf(mc) == config.InstallLive
	switch rec.State {
	case store.StateReady, store.StateInstalling, store.StateReprovision, "":
	default:
		if !live {
			reason := fmt.Sprintf("%s is %s: its install window is closed; run `flint reprovision %s` to reinstall it", mc.Hostname, rec.State, mc.Hostname)
			m.log.Warn("refused ignition config", "mac", key, "from", from, "reason", reason)
			m.record(key, from, "ignition refused", reason)
			return Refuse, reason
		}
	}
	if mc.Role == config.RoleServer && live && rec.State == store.StateInstalled {
		// A live server runs from RAM: its etcd data died with the reboot, so
		// each boot after the first is a rebuild of its member.
		if v, reason := m.armLiveRebuild(mc, from); v != Serve {
			return v, reason
		}
		rec.State, rec.EtcdRejoin = store.StateReprovision, false
	}
	if mc.Role == config.RoleServer && rec.State == store.StateReprovision && !rec.EtcdRejoin {
		return m.rejoin(mc, from)
	}
	return Serve, ""
}

// armLiveRebuild marks a rebooted live server as rebuilding, one at a time
// like an operator's reprovision.
func (m *Manager) armLiveRebuild(mc *config.Machine, from netip.Addr) (Verdict, string) {
	ms, err := m.st.Machines()
	if err != nil {
		return Wait, "cannot read machine records: " + err.Error()
	}
	for _, r := range ms {
		if r.Known && r.Role == config.RoleServer && r.MAC != mc.MAC && (r.Rebuilding || r.State == store.StateReprovision) {
			return Wait, fmt.Sprintf("%s rebooted and must rejoin etcd, but %s is still rebuilding; it waits its turn", mc.Hostname, r.Hostname)
		}
	}
	_, err = m.st.UpdateMachine(mc.MAC, func(r *store.Machine) error {
		r.State, r.StateChanged = store.StateReprovision, m.now()
		r.Rebuilding, r.EtcdRejoin = true, false
		return nil
	})
	if err != nil {
		return Wait, "cannot record the rebuild: " + err.Error()
	}
	m.log.Warn("live server rebooted: its etcd data is gone, rebuilding its member", "machine", mc.Hostname)
	m.record(mc.MAC, from, "live rebuild armed", "a live server's etcd data does not survive a reboot")
	return Serve, ""
}

// checkLease: in full mode the config goes only to the address flint leased to
// that MAC, so another box on the LAN can't ask for a node's keys by its MAC.
func (m *Manager) checkLease(mac string, from netip.Addr) string {
	leases, err := m.st.Leases()
	if err != nil {
		return "cannot read leases: " + err.Error()
	}
	now := m.now()
	for _, l := range leases {
		if l.MAC == mac && l.State == store.LeaseBound && l.Expires.After(now) {
			if l.IP == from {
				return ""
			}
			return fmt.Sprintf("request from %s, but flint leased %s to %s", from, l.IP, mac)
		}
	}
	return fmt.Sprintf("request from %s, but %s holds no lease from flint (boot it from the network first)", from, mac)
}

// rejoin runs the etcd membership change for a reprovisioned server in the
// background; the node is told to wait (503) until it is done.
func (m *Manager) rejoin(mc *config.Machine, from netip.Addr) (Verdict, string) {
	key := mc.MAC
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.preparing[key] {
		return Wait, "flint is replacing " + mc.Hostname + "'s etcd member"
	}
	if f, ok := m.failed[key]; ok && m.now().Sub(f.at) < m.RetryRejoin {
		return Wait, f.msg
	}
	if m.connect == nil {
		return Wait, "this flint cannot reach etcd to replace the member"
	}
	m.preparing[key] = true
	m.record(key, from, "etcd rejoin started", "checking the other members")
	go m.runRejoin(mc, from)
	return Wait, "flint is replacing " + mc.Hostname + "'s etcd member"
}

func (m *Manager) runRejoin(mc *config.Machine, from netip.Addr) {
	start := m.now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := m.prepare(ctx, mc)
	m.mu.Lock()
	delete(m.preparing, mc.MAC)
	if err != nil {
		m.failed[mc.MAC] = rejoinErr{at: m.now(), msg: err.Error()}
	} else {
		delete(m.failed, mc.MAC)
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Error("etcd member replacement refused; the node waits and flint retries", "machine", mc.Hostname, "err", err)
		m.record(mc.MAC, from, "etcd rejoin refused", err.Error())
		return
	}
	m.log.Info("etcd member replaced; serving the node its config with state existing", "machine", mc.Hostname, "took", time.Since(start).Round(time.Millisecond))
	m.record(mc.MAC, from, "etcd rejoin prepared", fmt.Sprintf("member re-added in %s", time.Since(start).Round(time.Millisecond)))
}

func (m *Manager) prepare(ctx context.Context, mc *config.Machine) error {
	var endpoints []string
	for _, s := range m.cfg.Servers() {
		if s.MAC != mc.MAC {
			endpoints = append(endpoints, "https://"+net.JoinHostPort(s.IPAddr.String(), "2379"))
		}
	}
	if len(endpoints) == 0 {
		return fmt.Errorf("%s is the only etcd member: there is no cluster to rejoin; it starts a new one", mc.Hostname)
	}
	admin, err := m.connect(ctx, endpoints)
	if err != nil {
		return fmt.Errorf("connect to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	defer admin.Close()
	peerURL := "https://" + net.JoinHostPort(mc.IPAddr.String(), "2380")
	if _, err := admin.PrepareRejoin(ctx, mc.Hostname, peerURL); err != nil {
		return err
	}
	_, err = m.st.UpdateMachine(mc.MAC, func(r *store.Machine) error {
		r.EtcdRejoin = true
		return nil
	})
	return err
}

// ClusterState is ETCD_INITIAL_CLUSTER_STATE for a server's config: "existing"
// once its member was re-added to a running cluster.
func (m *Manager) ClusterState(mc *config.Machine) string {
	if rec, ok := m.machineRecord(mc.MAC); ok && rec.EtcdRejoin {
		return "existing"
	}
	return "new"
}

// ConfigServed moves a machine into installing once its config went out.
func (m *Manager) ConfigServed(mac config.MAC) {
	mc, ok := m.cfg.MachineByMAC(mac)
	if !ok {
		return
	}
	m.setState(mc.MAC, func(r *store.Machine) bool {
		return r.State == store.StateReady || r.State == store.StateReprovision || r.State == ""
	}, store.StateInstalling)
}

func (m *Manager) setState(mac string, when func(*store.Machine) bool, to store.State) {
	_, err := m.st.UpdateMachine(mac, func(r *store.Machine) error {
		if when(r) && r.State != to {
			r.State, r.StateChanged = to, m.now()
		}
		return nil
	})
	if err != nil {
		m.log.Warn("could not update machine state", "mac", mac, "to", to, "err", err)
	}
}

// ErrRefused is a node event flint does not accept.
var ErrRefused = errors.New("event refused")

// NodeEvent applies a node's progress report. In full mode the report must
// come from the address flint leased to that MAC.
func (m *Manager) NodeEvent(mac config.MAC, from netip.Addr, event string) error {
	mc, ok := m.cfg.MachineByMAC(mac)
	if !ok {
		return nil // discovered machines have no lifecycle to move
	}
	if m.cfg.DHCP.Mode == config.ModeFull {
		if reason := m.checkLease(mc.MAC, from.Unmap()); reason != "" {
			return fmt.Errorf("%w: %s", ErrRefused, reason)
		}
	}
	disk := m.cfg.InstallModeOf(mc) == config.InstallDisk
	switch event {
	case EventInstallFinished:
		m.setState(mc.MAC, func(r *store.Machine) bool { return r.State == store.StateInstalling }, store.StateInstalled)
	case EventConfigApplied:
		if !disk { // a disk install is done only when flatcar-install says so
			m.setState(mc.MAC, func(r *store.Machine) bool { return r.State == store.StateInstalling }, store.StateInstalled)
		}
	case EventEtcdHealthy:
		_, err := m.st.UpdateMachine(mc.MAC, func(r *store.Machine) error {
			r.Rebuilding = false
			return nil
		})
		return err
	}
	return nil
}

// BootsLocally reports whether the machine's next PXE boot should boot its
// disk: a disk install that finished and was not re-armed.
func (m *Manager) BootsLocally(mac config.MAC) bool {
	mc, ok := m.cfg.MachineByMAC(mac)
	if !ok || m.cfg.InstallModeOf(mc) != config.InstallDisk {
		return false
	}
	rec, ok := m.machineRecord(mc.MAC)
	return ok && rec.State == store.StateInstalled
}

// Plan is what arming a reprovision will do, in words for the operator.
type Plan struct {
	Machine string   `json:"machine"`
	Role    string   `json:"role"`
	Steps   []string `json:"steps"`
	// NeedsConfirm is true for servers: etcd membership changes.
	NeedsConfirm bool `json:"needs_confirm"`
	Armed        bool `json:"armed"`
}

// ErrBusy means another server is still being rebuilt.
var ErrBusy = errors.New("another etcd member is still being rebuilt")

// Reprovision arms machine `name` so its next boot reinstalls it. For a
// server it only explains unless confirm is set, and it refuses while another
// server is rebuilding: two members down at once can cost a 3-member cluster
// its quorum.
func Reprovision(st store.Store, name string, confirm bool, now time.Time) (Plan, error) {
	ms, err := st.Machines()
	if err != nil {
		return Plan{}, err
	}
	var target *store.Machine
	for i := range ms {
		if ms[i].Known && (ms[i].Hostname == name || ms[i].MAC == name) {
			target = &ms[i]
		}
	}
	if target == nil {
		var names []string
		for _, r := range ms {
			if r.Known {
				names = append(names, r.Hostname)
			}
		}
		sort.Strings(names)
		return Plan{}, fmt.Errorf("no machine %q in flint's config (known: %s)", name, strings.Join(names, ", "))
	}
	p := Plan{Machine: target.Hostname, Role: target.Role}
	if target.Role == config.RoleServer {
		var others []string
		for _, r := range ms {
			if r.Known && r.Role == config.RoleServer && r.MAC != target.MAC {
				others = append(others, r.Hostname)
				if r.Rebuilding || r.State == store.StateReprovision {
					return p, fmt.Errorf("%w: %s was reprovisioned and has not reported etcd healthy yet; wait for it (flint machines shows its last event) before rebuilding %s", ErrBusy, r.Hostname, target.Hostname)
				}
			}
		}
		sort.Strings(others)
		p.NeedsConfirm = true
		p.Steps = []string{
			fmt.Sprintf("check that the other etcd members (%s) are healthy and that quorum survives; otherwise serve nothing and say why", strings.Join(others, ", ")),
			fmt.Sprintf("remove %s's old etcd member and add it back with peer URL https://%s:2380", target.Hostname, target.ReservedIP),
			fmt.Sprintf("serve %s its config with ETCD_INITIAL_CLUSTER_STATE=existing, the same certificates, K3s token and node password", target.Hostname),
			fmt.Sprintf("%s starts with an empty etcd data directory and copies the data from the other members", target.Hostname),
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
	_, err = st.UpdateMachine(target.MAC, func(r *store.Machine) error {
		r.State, r.StateChanged = store.StateReprovision, now
		if r.Role == config.RoleServer {
			r.Rebuilding, r.EtcdRejoin = true, false
		}
		return nil
	})
	if err != nil {
		return p, err
	}
	p.Armed = true
	return p, st.RecordSighting(store.Sighting{MAC: target.MAC, At: now, Event: "reprovision armed"})
}
