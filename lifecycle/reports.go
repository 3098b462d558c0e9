package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// Errors of NodeEvent.
var (
	// ErrRefused is a node report flint does not accept (wrong token or address).
	ErrRefused = errors.New("event refused")
	// ErrUnknownMachine is a report about a MAC that is not in the config.
	ErrUnknownMachine = errors.New("not a machine of flint's config")
	// ErrUnavailable means flint cannot read or write its state now.
	ErrUnavailable = errors.New("flint cannot record the event now")
)

// NodeReport is a node's progress report.
type NodeReport struct {
	MAC    config.MAC
	From   netip.Addr
	Token  string // the report token its config carried
	Event  string
	Detail string
}

// NodeEvent applies a node's progress report and puts it on its timeline, in
// one transaction. It must carry the report token of the machine's last
// config delivery; in full DHCP mode it must also come from the machine's
// reserved address (an installed system keeps it statically).
func (m *Manager) NodeEvent(r NodeReport) error {
	mc, ok := m.cfg.MachineByMAC(r.MAC)
	if !ok {
		return ErrUnknownMachine
	}
	from := r.From.Unmap()
	rec, err := m.machine(r.MAC)
	if err != nil {
		m.log.Error("cannot read machine state for a node report", "machine", mc.Hostname, "err", err)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	refuse := func(reason string) error {
		m.refuse(mc, from, "node report", reason)
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	if rec.Boot.Nonce == "" || !ValidToken(r.Token) || !equalToken(r.Token, m.derive(purposeReport, mc.HW, rec.Boot.Nonce)) {
		return refuse("the report token is missing or not the one of " + mc.Hostname + "'s last config")
	}
	if m.cfg.DHCP.Mode == config.ModeFull && from != mc.IPAddr {
		return refuse(fmt.Sprintf("report from %s, but %s's address is %s", from, mc.Hostname, mc.IPAddr))
	}
	disk := m.cfg.InstallModeOf(mc) == config.InstallDisk
	now := m.now()
	sg := store.Sighting{MAC: mc.MAC, At: now, IP: from, Event: "node " + r.Event, Detail: r.Detail}
	if r.Event == EventEtcdHealthy {
		_, err = m.st.ReleaseRebuild(mc.MAC, func(rec *store.Machine) error {
			rec.Rebuilding = false
			return nil
		})
		if err == nil {
			err = m.st.RecordSighting(sg)
		}
	} else {
		_, err = m.st.Record(sg, func(rec *store.Machine) error {
			install := r.Event == EventInstallFinished || (r.Event == EventConfigApplied && !disk)
			if install && rec.State == store.StateInstalling {
				rec.State, rec.StateChanged = store.StateInstalled, now
			}
			return nil
		})
	}
	if err != nil {
		m.log.Error("cannot record a node report", "machine", mc.Hostname, "event", r.Event, "err", err)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.log.Info("node event", "machine", mc.Hostname, "event", r.Event, "from", from)
	return nil
}
