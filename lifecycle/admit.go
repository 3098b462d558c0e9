package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/store"
)

// ScriptVerdict is what a machine's iPXE script does.
type ScriptVerdict int

const (
	ScriptInstall ScriptVerdict = iota // boot Flatcar; the script carries a fresh boot token
	ScriptLocal                        // boot the local disk
	ScriptRefuse                       // 403: not from the machine's own address
	ScriptWait                         // 503: flint cannot decide now (state unreadable)
	ScriptUnknown                      // 404: not a machine of the config
)

// Script is the decision for one script request.
type Script struct {
	Verdict ScriptVerdict
	Machine *config.Machine // nil for ScriptUnknown
	Token   string          // ScriptInstall: the boot token for ignition.config.url
	Reason  string          // why, for refusals, waits and local boots
}

// Timeline events of script requests: the iPXE script over HTTP, and the
// per-machine GRUB config of the Secure Boot chain over TFTP (the same
// decision, asked another way). A local boot adds localSuffix, a refusal
// " refused".
const (
	EventScript        = "http script"
	EventScriptLocal   = EventScript + localSuffix
	EventScriptRefused = "http script refused"
	EventGrubConfig    = "tftp grub config"
	localSuffix        = " (boot disk)"
)

// Script decides machine mac's iPXE script, asked from address from. An
// install script gets a fresh boot token; issuing it writes nothing.
func (m *Manager) Script(mac config.MAC, from netip.Addr) Script {
	return m.ScriptAs(mac, from, EventScript)
}

// ScriptAs is Script for a boot script asked for another way, recorded on
// the machine's timeline as event (EventGrubConfig: the Secure Boot chain's
// GRUB config over TFTP).
func (m *Manager) ScriptAs(mac config.MAC, from netip.Addr, event string) Script {
	from = from.Unmap()
	mc, ok, err := m.machineOf(mac, from)
	if err != nil {
		m.log.Error("cannot read the lease of the requester; failing closed", "mac", mac, "from", from, "err", err)
		return Script{Verdict: ScriptWait, Reason: "flint cannot read its state; retry"}
	}
	if !ok {
		return Script{Verdict: ScriptUnknown, Reason: "not in the config"}
	}
	disk := m.cfg.InstallModeOf(mc) == config.InstallDisk
	rec, err := m.machine(mc.HW)
	if err != nil {
		m.log.Error("cannot read machine state; failing closed", "machine", mc.Hostname, "err", err)
		if disk {
			// An installed disk must never be sent back to the installer.
			return Script{Verdict: ScriptLocal, Machine: mc, Reason: "flint cannot read its state: booting the disk to be safe"}
		}
		return Script{Verdict: ScriptWait, Machine: mc, Reason: "flint cannot read its state; retry"}
	}
	if disk && !windowOpen(rec.State) {
		m.recordSighting(mc, from, event+localSuffix, "")
		return Script{Verdict: ScriptLocal, Machine: mc, Reason: fmt.Sprintf("%s is %s", mc.Hostname, rec.State)}
	}
	reason, err := m.ownAddress(mc, rec, from, true)
	if err != nil {
		m.log.Error("cannot check the requester's address; failing closed", "machine", mc.Hostname, "err", err)
		return Script{Verdict: ScriptWait, Machine: mc, Reason: "flint cannot read its state; retry"}
	}
	if reason != "" {
		m.refuse(mc, from, event, reason)
		return Script{Verdict: ScriptRefuse, Machine: mc, Reason: reason}
	}
	now := m.now()
	m.note(store.Sighting{MAC: mc.MAC, At: now, IP: from, Event: event})
	return Script{Verdict: ScriptInstall, Machine: mc, Token: m.issueBootToken(mc.HW, from, now)}
}

// machineOf finds the machine of the config a script request is about: the
// one with the MAC, or in full mode the machine whose relay port
// (machines[].relay) the DHCP server chose this box for, though its MAC is
// in no config. The lease at from, looked up by key, says so: it names the
// box's MAC and was bound as that machine (its host name), on the address
// reserved for it. From then on the box is that machine: its script names
// the machine's MAC, and so do its config and reports.
func (m *Manager) machineOf(mac config.MAC, from netip.Addr) (*config.Machine, bool, error) {
	if mc, ok := m.cfg.MachineByMAC(mac); ok {
		return mc, true, nil
	}
	if m.cfg.DHCP.Mode != config.ModeFull {
		return nil, false, nil
	}
	mc, ok := m.cfg.MachineByIP(from)
	if !ok || mc.Relay == nil {
		return nil, false, nil
	}
	l, ok, err := m.st.Lease(from)
	if err != nil {
		return nil, false, fmt.Errorf("read the lease of %s: %w", from, err)
	}
	if !ok || l.MAC != mac.String() || !leaseOf(l, mc, m.now()) {
		return nil, false, nil
	}
	return mc, true, nil
}

// leaseOf reports whether l is machine mc's unexpired lease: bound to its
// MAC, or, for a machine chosen by its relay port, bound as that machine to
// whichever box is in the port.
func leaseOf(l store.Lease, mc *config.Machine, now time.Time) bool {
	if l.State != store.LeaseBound || !l.Expires.After(now) {
		return false
	}
	return l.MAC == mc.MAC || (mc.Relay != nil && l.Hostname == mc.Hostname)
}

func (m *Manager) recordSighting(mc *config.Machine, from netip.Addr, event, detail string) {
	if err := m.st.RecordSighting(store.Sighting{MAC: mc.MAC, At: m.now(), IP: from, Event: event, Detail: detail}); err != nil {
		m.log.Warn("could not record event", "machine", mc.Hostname, "event", event, "err", err)
	}
}

// windowOpen: the states in which a disk install may get its config.
func windowOpen(s store.State) bool {
	switch s {
	case store.StateReady, store.StateInstalling, store.StateReprovision, "":
		return true
	}
	return false
}

// Stage says which config of a machine is asked for.
type Stage string

const (
	StageBoot      Stage = ""          // what its network boot runs (a disk install's installer)
	StageInstalled Stage = "installed" // the installed system's config, which the installer writes to disk
)

// ConfigRequest is one request for a machine's Ignition config.
type ConfigRequest struct {
	MAC   config.MAC
	From  netip.Addr
	Token string
	Stage Stage
	// Pointer asks for the config served over plain HTTP: the token is
	// checked but not spent, and no secret is delivered.
	Pointer bool
}

// Admission is the verdict on a config request and, when it is Serve,
// everything the renderer needs: the profile, the etcd state and the
// per-delivery tokens to write into the config.
type Admission struct {
	Verdict Verdict
	Reason  string
	// Refused says why a Refuse was given, as one of the Refused* codes
	// (for metrics: a bounded set; Reason has the words).
	Refused string
	Machine *config.Machine

	Profile      string // "" for the machine's own, or ignition.InstallerProfile
	ClusterState string // ETCD_INITIAL_CLUSTER_STATE of a server: new or existing
	Boot         ignition.BootSecrets

	req    ConfigRequest
	issued time.Time // the boot token's issue time (StageBoot)
	nonce  string    // the delivery this config belongs to
}

// Why a config request was refused, as a code (Admission.Refused).
const (
	RefusedAddress   = "address"   // not from the machine's own address
	RefusedWindow    = "window"    // its install window is closed
	RefusedToken     = "token"     // no token, or one unknown, spent or expired
	RefusedStage     = "stage"     // a stage the machine has no config for
	RefusedRunning   = "member"    // its etcd member still runs and is healthy
	RefusedCancelled = "cancelled" // its reprovision was cancelled meanwhile
)

// RefusedCodes are all of them.
var RefusedCodes = []string{RefusedAddress, RefusedWindow, RefusedToken, RefusedStage, RefusedRunning, RefusedCancelled}

// AdmitConfig decides a config request. It changes nothing but, for an etcd
// member that must be rebuilt, the rebuild slot and the membership (in the
// background: the node waits with 503 meanwhile). A Serve admission must be
// followed by Delivered before the config is sent.
func (m *Manager) AdmitConfig(req ConfigRequest) Admission {
	req.From = req.From.Unmap()
	mc, ok := m.cfg.MachineByMAC(req.MAC)
	if !ok {
		return Admission{Verdict: Unknown, Reason: "not in the config", req: req}
	}
	a := Admission{Machine: mc, req: req}
	what := "ignition"
	if req.Pointer {
		what = "ignition pointer"
	}
	refuse := func(code, reason string) Admission {
		m.refuse(mc, req.From, what, reason)
		a.Verdict, a.Reason, a.Refused = Refuse, reason, code
		return a
	}
	wait := func(reason string, err error) Admission {
		if err != nil {
			m.log.Error("cannot decide a config request; failing closed", "machine", mc.Hostname, "err", err)
		}
		a.Verdict, a.Reason = Wait, reason
		return a
	}
	rec, err := m.machine(req.MAC)
	if err != nil {
		return wait("flint cannot read its state; retry", err)
	}
	reason, err := m.ownAddress(mc, rec, req.From, false)
	if err != nil {
		return wait("flint cannot read its state; retry", err)
	}
	if reason != "" {
		return refuse(RefusedAddress, reason)
	}
	disk := m.cfg.InstallModeOf(mc) == config.InstallDisk
	live := !disk
	now := m.now()

	// The install window (before the token: the answer an installed machine
	// needs is that its window is closed).
	if disk && !windowOpen(rec.State) {
		return refuse(RefusedWindow, fmt.Sprintf("%s is %s: its install window is closed; run `flint reprovision %s` to reinstall it", mc.Hostname, rec.State, mc.Hostname))
	}

	// The token.
	if !ValidToken(req.Token) {
		return refuse(RefusedToken, "no valid boot token: fetch the config with the URL of the machine's iPXE script (/machines/MAC/boot.ipxe)")
	}
	switch req.Stage {
	case StageBoot:
		issued, ok := m.checkBootToken(req.Token, mc.HW, req.From, now)
		if !ok {
			reason := "the boot token is unknown, used or expired: boot the machine from the network again for a new one"
			if m.cfg.DHCP.Mode == config.ModeOff {
				reason = "the boot token is unknown or expired, or its script went to another address: boot the machine from the network again for a new one"
			}
			return refuse(RefusedToken, reason)
		}
		if !issued.After(rec.Boot.SpentBefore) {
			return refuse(RefusedToken, "the boot token is unknown, used or expired: boot the machine from the network again for a new one")
		}
		a.issued = issued
		a.nonce = newToken()
	case StageInstalled:
		if req.Pointer || !disk {
			return refuse(RefusedStage, "only a disk install has an installed-system config")
		}
		exp := rec.Boot.Delivered.Add(m.cfg.Security.TokenTTL.Duration)
		if rec.Boot.Nonce == "" || rec.Boot.InstalledSpent || !now.Before(exp) ||
			!equalToken(req.Token, m.derive(purposeInstalled, mc.HW, rec.Boot.Nonce)) {
			return refuse(RefusedToken, "the installed-config token is unknown, used or expired: reinstall the machine (boot it from the network again)")
		}
		if m.cfg.DHCP.Mode == config.ModeOff && rec.Boot.DeliveredTo != req.From {
			return refuse(RefusedAddress, fmt.Sprintf("request from %s, but the installer's config went to %s", req.From, rec.Boot.DeliveredTo))
		}
		a.nonce = rec.Boot.Nonce
	default:
		return refuse(RefusedStage, fmt.Sprintf("unknown stage %q", req.Stage))
	}

	if req.Pointer {
		a.Verdict = Serve
		return a
	}
	// Instances that disagree on the site would hand machines configs (and
	// etcd membership changes) that do not fit together: none goes out.
	if m.agreed != nil {
		if ok, why := m.agreed(); !ok {
			return wait(why, nil)
		}
	}

	// An etcd member comes back only into a cluster that expects it.
	if mc.Role == config.RoleServer {
		if live && rec.State == store.StateInstalled {
			// A live server runs from RAM: each boot after the first is a
			// rebuild of its member, one server at a time. A member etcd just
			// found healthy is not armed again until RetryRejoin has passed.
			if f, ok := m.recentFailure(mc.HW); ok && f.refuse {
				a.Verdict, a.Reason, a.Refused = Refuse, f.msg, RefusedRunning
				return a
			}
			armed, v, reason := m.armLiveRebuild(mc, req.From)
			if v != Serve {
				a.Verdict, a.Reason = v, reason
				return a
			}
			rec = armed
		}
		if rec.State == store.StateReprovision && !rec.EtcdRejoin {
			if !m.hasOtherServers(mc) {
				// No member to rejoin or to copy data from: it starts the
				// cluster anew (the plan said so before anyone armed it).
				m.record(mc.HW, req.From, "etcd starts anew", mc.Hostname+" is the config's only etcd member: it starts an empty cluster")
			} else {
				a.Verdict, a.Reason, a.Refused = m.rejoin(mc, req.From)
				return a
			}
		}
	}

	a.Verdict = Serve
	if rec.EtcdRejoin {
		a.ClusterState = ignition.ClusterStateExisting
	} else {
		a.ClusterState = ignition.ClusterStateNew
	}
	if disk && req.Stage == StageBoot {
		a.Profile = ignition.InstallerProfile
		a.Boot.InstalledToken = m.derive(purposeInstalled, mc.HW, a.nonce)
	}
	a.Boot.ReportToken = m.derive(purposeReport, mc.HW, a.nonce)
	return a
}

// ErrSpent means the token was used by a concurrent request between
// AdmitConfig and Delivered.
var ErrSpent = errors.New("the token was used by another request just now")

// Delivered spends what admitted a secret config and moves the machine into
// installing, in one transaction, before the config is sent: of two requests
// racing with one token only one gets it. Every boot token issued before it
// is spent: one boot, one delivery.
func (m *Manager) Delivered(a Admission, detail string) error {
	if a.Verdict != Serve || a.Machine == nil || a.req.Pointer {
		return errors.New("lifecycle: Delivered called without a served secret config")
	}
	mc := a.Machine
	now := m.now()
	event := "ignition served"
	if detail != "" {
		detail = ", " + detail
	}
	_, err := m.st.Record(store.Sighting{MAC: mc.MAC, At: now, IP: a.req.From, Event: event, Detail: "over TLS" + detail}, func(r *store.Machine) error {
		switch a.req.Stage {
		case StageBoot:
			if !a.issued.After(r.Boot.SpentBefore) {
				return ErrSpent
			}
			spent := now
			if a.issued.After(spent) {
				spent = a.issued // a clock stepped back: the token must still count as spent
			}
			r.Boot = store.Boot{SpentBefore: spent, Nonce: a.nonce, Delivered: now, DeliveredTo: a.req.From}
		case StageInstalled:
			if r.Boot.Nonce != a.nonce || r.Boot.InstalledSpent {
				return ErrSpent
			}
			r.Boot.InstalledSpent = true
		}
		switch r.State {
		case store.StateReady, store.StateReprovision, "":
			r.State, r.StateChanged, r.Stuck = store.StateInstalling, now, false
		case store.StateInstalling:
			// Delivered again (the node retried): the install clock of
			// cluster.install_timeout starts over.
			r.StateChanged, r.Stuck = now, false
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrSpent) {
		m.log.Error("cannot record the delivery; the config is not sent", "machine", mc.Hostname, "err", err)
	}
	return err
}

// MAC is the machine the request named.
func (a Admission) MAC() config.MAC { return a.req.MAC }

// From is the requester's address.
func (a Admission) From() netip.Addr { return a.req.From }

// Pointer says whether the request was for the pointer config.
func (a Admission) Pointer() bool { return a.req.Pointer }
