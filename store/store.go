// Package store keeps flint's durable state: DHCP leases and machine records.
// The Store interface hides the backend (bbolt today, a distributed one later).
package store

import (
	"errors"
	"net/netip"
	"time"
)

// ErrLocked means another flint process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another flint process")

// LeaseState says what an address record means.
type LeaseState string

const (
	LeaseBound    LeaseState = "bound"    // ACKed to MAC until Expires
	LeaseDeclined LeaseState = "declined" // a client found it in use; quarantined until Expires
)

// Lease is one address flint handed out (or quarantined) in full DHCP mode.
type Lease struct {
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"` // empty for declined addresses
	State    LeaseState `json:"state"`
	Hostname string     `json:"hostname,omitempty"`
	Start    time.Time  `json:"start"`
	Expires  time.Time  `json:"expires"`
}

// Machine is what flint has seen of one MAC on the wire.
type Machine struct {
	MAC         string     `json:"mac"`
	FirstSeen   time.Time  `json:"first_seen"`
	LastSeen    time.Time  `json:"last_seen"`
	Arch        string     `json:"arch,omitempty"`         // client architecture from option 93, e.g. "x86-64 UEFI"
	VendorClass string     `json:"vendor_class,omitempty"` // option 60
	UserClass   string     `json:"user_class,omitempty"`   // option 77 ("iPXE" once iPXE runs)
	IP          netip.Addr `json:"ip,omitzero"`            // last address offered, acked or seen
	// DHCPAddr is the address the machine last took from DHCP: flint's ACK in
	// full mode, or in proxy mode the address it asked another server for
	// (option 50 of its broadcast REQUEST). Requests from that address are the
	// machine's own; DHCPAddrAt says when it was seen.
	DHCPAddr   netip.Addr `json:"dhcp_addr,omitzero"`
	DHCPAddrAt time.Time  `json:"dhcp_addr_at,omitzero"`
	LastEvent   string     `json:"last_event,omitempty"`   // e.g. "dhcp ACK", "tftp ipxe.efi", "http script"
	Events      int        `json:"events"`                 // how many exchanges were recorded

	// Lifecycle (see package lifecycle): State, when it last changed, and
	// whether the machine is an etcd member being rebuilt into the cluster.
	State        State     `json:"state,omitempty"`
	StateChanged time.Time `json:"state_changed,omitzero"`
	EtcdRejoin   bool      `json:"etcd_rejoin,omitempty"` // render ETCD_INITIAL_CLUSTER_STATE=existing
	Rebuilding   bool      `json:"rebuilding,omitempty"`  // etcd membership changed, node not yet healthy

	// From the config flint serves with (SyncConfig); empty for discovered machines.
	Known      bool       `json:"known"`
	Hostname   string     `json:"hostname,omitempty"`
	Role       string     `json:"role,omitempty"`
	ReservedIP netip.Addr `json:"reserved_ip,omitzero"`
}

// State is where a machine is in its lifecycle.
type State string

const (
	StateDiscovered  State = "discovered"  // an unknown MAC asked flint something
	StateReady       State = "ready"       // known, never installed
	StateInstalling  State = "installing"  // its config was served; install in progress
	StateInstalled   State = "installed"   // the node reported the install done
	StateReprovision State = "reprovision" // armed by an operator: the next boot reinstalls it
)

// KnownMachine is a machine listed in the config.
type KnownMachine struct {
	MAC        string
	Hostname   string
	Role       string
	ReservedIP netip.Addr
}

// Sighting is one exchange with a machine; RecordSighting folds it into the Machine.
type Sighting struct {
	MAC         string
	At          time.Time
	Arch        string
	VendorClass string
	UserClass   string
	IP          netip.Addr
	Event       string
	Detail      string // free text for the timeline, e.g. "850528 bytes in 310ms"
	// TimelineOnly adds the event to the timeline without touching the
	// machine record: a refused request from another address must not make
	// the machine look like it is at that address.
	TimelineOnly bool
	// DHCPAddr says IP is the address the machine took from DHCP (see
	// Machine.DHCPAddr).
	DHCPAddr bool
}

// Event is one entry of a machine's boot timeline.
type Event struct {
	At     time.Time  `json:"at"`
	MAC    string     `json:"mac"`
	Event  string     `json:"event"`
	IP     netip.Addr `json:"ip,omitzero"`
	Detail string     `json:"detail,omitempty"`
}

// MaxEventsPerMachine bounds each machine's timeline; the oldest entries go first.
const MaxEventsPerMachine = 500

// Store is flint's state. Implementations must make every write durable before
// returning (a crash right after a call loses nothing it reported written) and
// must be safe for concurrent use.
type Store interface {
	// PutLease creates or replaces the lease of l.IP.
	PutLease(l Lease) error
	// DeleteLease forgets the lease of ip (no error if there is none).
	DeleteLease(ip netip.Addr) error
	// Leases returns all leases, expired ones included, ordered by IP.
	Leases() ([]Lease, error)

	// RecordSighting updates (or creates) the machine record of s.MAC and
	// appends the exchange to its timeline.
	RecordSighting(s Sighting) error
	// Events returns a machine's timeline, oldest first.
	Events(mac string) ([]Event, error)
	// Machines returns all machine records, ordered by MAC.
	Machines() ([]Machine, error)
	// UpdateMachine applies fn to the record of mac in one transaction (a
	// record is created if none exists); an error from fn changes nothing.
	UpdateMachine(mac string, fn func(m *Machine) error) (Machine, error)
	// SyncConfig marks exactly the given machines as known (creating records for
	// those never seen) and every other record as discovered.
	SyncConfig(known []KnownMachine) error

	Close() error
}

// Apply folds a sighting into a machine record.
func (m *Machine) Apply(s Sighting) {
	if m.MAC == "" {
		m.MAC = s.MAC
	}
	if m.FirstSeen.IsZero() || s.At.Before(m.FirstSeen) {
		m.FirstSeen = s.At
	}
	if s.At.After(m.LastSeen) {
		m.LastSeen = s.At
	}
	if s.Arch != "" {
		m.Arch = s.Arch
	}
	if s.VendorClass != "" {
		m.VendorClass = s.VendorClass
	}
	if s.UserClass != "" {
		m.UserClass = s.UserClass
	}
	if s.IP.IsValid() && !s.IP.IsUnspecified() {
		m.IP = s.IP
		if s.DHCPAddr && !s.At.Before(m.DHCPAddrAt) {
			m.DHCPAddr, m.DHCPAddrAt = s.IP, s.At
		}
	}
	if s.Event != "" {
		m.LastEvent = s.Event
	}
	m.Events++
}
