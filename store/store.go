// Package store keeps flint's durable state: DHCP leases and machine records.
// The Store interface hides the backend: bbolt (Bolt) or etcd (Etcd).
package store

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrLocked means another flint process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another flint process")

// ErrClosed is returned by writes after Close: shutdown raced a request.
var ErrClosed = errors.New("flint's state store is closed (flint is shutting down)")

// ErrRebuildBusy means another machine holds the one rebuild slot; errors.As
// with *BusyError names it.
var ErrRebuildBusy = errors.New("another etcd member is still being rebuilt")

// BusyError says which machine holds the rebuild slot.
type BusyError struct {
	Holder Machine
}

func (e *BusyError) Error() string {
	name := e.Holder.Hostname
	if name == "" {
		name = e.Holder.MAC
	}
	return fmt.Sprintf("%v: %s", ErrRebuildBusy, name)
}

func (e *BusyError) Unwrap() error { return ErrRebuildBusy }

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
	LastEvent  string     `json:"last_event,omitempty"` // e.g. "dhcp ACK", "tftp ipxe.efi", "http script"
	Events     int        `json:"events"`               // how many exchanges were recorded

	// Lifecycle (see package lifecycle): State, when it last changed, and
	// whether the machine is an etcd member being rebuilt into the cluster.
	State        State     `json:"state,omitempty"`
	StateChanged time.Time `json:"state_changed,omitzero"`
	EtcdRejoin   bool      `json:"etcd_rejoin,omitempty"` // render ETCD_INITIAL_CLUSTER_STATE=existing
	Rebuilding   bool      `json:"rebuilding,omitempty"`  // etcd membership changed, node not yet healthy
	// Stuck: installing for longer than cluster.install_timeout with no
	// report (flint serve checks every minute; see lifecycle.MarkStuck).
	Stuck bool `json:"stuck,omitempty"`

	// Discovered is when flint recorded the MAC as not in the config; the
	// discovered records beyond Limits.Discovered are evicted in this order.
	Discovered time.Time `json:"discovered,omitzero"`

	// From the config flint serves with (SyncConfig); empty for discovered machines.
	Known      bool       `json:"known"`
	Hostname   string     `json:"hostname,omitempty"`
	Role       string     `json:"role,omitempty"`
	ReservedIP netip.Addr `json:"reserved_ip,omitzero"`

	// Boot is what flint issued for the machine's network boots (package
	// lifecycle): token hashes only, never a token.
	Boot Boot `json:"boot,omitzero"`
}

// Boot is what flint keeps of a machine's network boots (package
// lifecycle). Boot tokens carry their own proof (an HMAC and their issue
// time), so nothing of them is stored: only when they stop counting.
type Boot struct {
	// SpentBefore: boot tokens issued at or before it are spent (the first
	// config delivered in a boot spends every token of that boot; arming a
	// reprovision voids those issued before).
	SpentBefore time.Time `json:"spent_before,omitzero"`
	// Nonce identifies the last delivery of the machine's secret config; the
	// node's report token and (for a disk install) its installed-config token
	// are derived from it.
	Nonce string `json:"nonce,omitempty"`
	// Delivered is when that config went out, and to which address.
	Delivered   time.Time  `json:"delivered,omitzero"`
	DeliveredTo netip.Addr `json:"delivered_to,omitzero"`
	// InstalledSpent says the installed-system config of that delivery was
	// fetched (it is fetched once).
	InstalledSpent bool `json:"installed_spent,omitempty"`
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
	// By is the flint instance that saw it (Event.By).
	By string
}

// Event is one entry of a machine's boot timeline.
type Event struct {
	At     time.Time  `json:"at"`
	MAC    string     `json:"mac"`
	Event  string     `json:"event"`
	IP     netip.Addr `json:"ip,omitzero"`
	Detail string     `json:"detail,omitempty"`
	// By names the flint instance that recorded it when several share the
	// store (its announced ID, the HTTP base URL); empty with one.
	By string `json:"by,omitempty"`
}

// Default bounds, used unless OpenBolt is given Limits.
const (
	// MaxEventsPerMachine bounds each machine's timeline; the oldest entries go first.
	MaxEventsPerMachine = 500
	// MaxDiscovered bounds the records of MACs that are not in the config.
	MaxDiscovered = 1000
)

// Limits bound what hostile input can make the store hold. Known machines
// (in the config) are never evicted.
type Limits struct {
	// Discovered caps discovered machine records; a new one beyond it evicts
	// the one first seen longest ago, with its timeline.
	Discovered int
	// Events caps each machine's timeline (trimmed in steps of 64, so it may
	// briefly hold up to 63 more).
	Events int
}

// Store is flint's state. Implementations must make every write durable before
// returning (a crash right after a call loses nothing it reported written) and
// must be safe for concurrent use.
type Store interface {
	// Version grows with every committed write and with nothing else: a
	// watcher (the dashboard's stream) compares it, cheaply, to learn that
	// something changed. Bolt counts its write transactions since it was
	// opened; Etcd follows the etcd revision of the changes under its
	// prefix, other flint instances' included.
	Version() uint64
	// PutLease creates or replaces the lease of l.IP.
	PutLease(l Lease) error
	// DeleteLease forgets the lease of ip (no error if there is none).
	DeleteLease(ip netip.Addr) error
	// Leases returns all leases, expired ones included, ordered by IP.
	Leases() ([]Lease, error)
	// Lease returns the lease of ip; ok is false when there is none.
	Lease(ip netip.Addr) (l Lease, ok bool, err error)

	// RecordSighting updates (or creates) the machine record of s.MAC and
	// appends the exchange to its timeline.
	RecordSighting(s Sighting) error
	// RecordSightings records many sightings in one transaction, each
	// machine's record read and written once (the timeline gets every event).
	RecordSightings(ss []Sighting) error
	// Record is RecordSighting and UpdateMachine in one transaction: the
	// sighting is folded in, then fn runs on the record (an error from fn
	// changes nothing), then the event goes on the timeline. A TimelineOnly
	// sighting leaves the record alone but fn still applies.
	Record(s Sighting, fn func(m *Machine) error) (Machine, error)
	// Events returns a machine's timeline, oldest first.
	Events(mac string) ([]Event, error)
	// Machines returns all machine records, ordered by MAC.
	Machines() ([]Machine, error)
	// Machine returns the record of mac; ok is false when there is none.
	Machine(mac string) (m Machine, ok bool, err error)
	// UpdateMachine applies fn to the record of mac in one transaction (a
	// record is created if none exists); an error from fn changes nothing.
	UpdateMachine(mac string, fn func(m *Machine) error) (Machine, error)
	// SyncConfig marks exactly the given machines as known (creating records for
	// those never seen) and every other record as discovered.
	SyncConfig(known []KnownMachine) error

	// ClaimRebuild gives mac the one rebuild slot and applies fn to its
	// record, in one transaction. While another machine holds the slot and
	// its record still says it is rebuilding (Rebuilding or state
	// reprovision), it fails with a *BusyError and changes nothing; a stale
	// claim is taken over. Re-claiming by the holder succeeds.
	ClaimRebuild(mac string, fn func(m *Machine) error) (Machine, error)
	// ReleaseRebuild frees the slot if mac holds it and applies fn to mac's
	// record, in one transaction.
	ReleaseRebuild(mac string, fn func(m *Machine) error) (Machine, error)

	Close() error
}

// Public is the record as flint shows it (admin API, flint machines): the
// boot record's token hashes and nonce stay inside flint.
func (m Machine) Public() Machine {
	m.Boot = Boot{}
	return m
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
