package dhcp

import (
	"fmt"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
)

// Option 82 sub-options (RFC 3046).
const (
	subOptCircuitID = 1
	subOptRemoteID  = 2
)

// relayInfo is what a relay agent told flint about a request: its giaddr and
// option 82.
type relayInfo struct {
	GIAddr    netip.Addr // invalid: not relayed
	Option82  bool       // the request carries option 82
	Malformed bool       // option 82 is there but its sub-options do not parse
	CircuitID string     // raw bytes of sub-option 1 ("" if absent)
	RemoteID  string     // raw bytes of sub-option 2
}

// readRelay reads giaddr and option 82. Option 82 counts only in a relayed
// request: a client cannot speak for a relay (RFC 3046 2.1: a relay must
// drop requests with option 82 and no giaddr, so one reaching flint directly
// was forged or mis-relayed).
func readRelay(req *dhcpv4.DHCPv4) relayInfo {
	var ri relayInfo
	ri.GIAddr, _ = addrOf(req.GatewayIPAddr)
	v := req.Options.Get(dhcpv4.OptionRelayAgentInformation)
	if v == nil || !ri.GIAddr.IsValid() {
		return ri
	}
	ri.Option82 = true
	for len(v) > 0 {
		if len(v) < 2 || int(v[1])+2 > len(v) {
			ri.Malformed = true
			ri.CircuitID, ri.RemoteID = "", ""
			return ri
		}
		code, val := v[0], v[2:2+int(v[1])]
		switch code {
		case subOptCircuitID:
			ri.CircuitID = string(val)
		case subOptRemoteID:
			ri.RemoteID = string(val)
		}
		v = v[2+int(v[1]):]
	}
	return ri
}

// detail describes the relay for a machine's timeline and the log:
// `via relay 198.18.1.1, circuit-id "slot7"`; "" when not relayed.
func (ri relayInfo) detail() string {
	if !ri.GIAddr.IsValid() {
		return ""
	}
	s := "via relay " + ri.GIAddr.String()
	switch {
	case ri.Malformed:
		s += ", option 82 malformed"
	case ri.Option82:
		if ri.CircuitID != "" {
			s += fmt.Sprintf(", circuit-id %q", printable([]byte(ri.CircuitID)))
		}
		if ri.RemoteID != "" {
			s += fmt.Sprintf(", remote-id %q", printable([]byte(ri.RemoteID)))
		}
	}
	return s
}

// SubnetQuery is what subnet selection depends on, each subnet already
// looked up by key in the config.
type SubnetQuery struct {
	GIAddr   netip.Addr // the relay's address (invalid: not relayed)
	ByGIAddr int        // the subnet holding GIAddr, -1 for none
	CIAddr   netip.Addr // the client's own address (invalid: none)
	ByCIAddr int        // the subnet holding CIAddr, -1 for none
	Local    int        // the subnet of flint's own segment, -1 for none
}

// SubnetChoice is the subnet that answers a request; Index -1 means none:
// the request is dropped, and Reason says why.
type SubnetChoice struct {
	Index   int
	Relayed bool // the reply goes to the relay (giaddr:67)
	Reason  string
}

// SelectSubnet picks the subnet a request is answered from (RFC 2131 4.3.1):
// a relayed request from the subnet holding the relay's address (giaddr); a
// client that already has an address and talks to flint directly (RENEWING,
// RELEASE, INFORM, possibly through routers) from its address's subnet;
// anything else from flint's own segment. It is pure.
func SelectSubnet(q SubnetQuery) SubnetChoice {
	switch {
	case q.GIAddr.IsValid():
		if q.ByGIAddr < 0 {
			return SubnetChoice{Index: -1, Relayed: true, Reason: fmt.Sprintf("relayed by giaddr %s, which is in no subnet flint serves", q.GIAddr)}
		}
		return SubnetChoice{Index: q.ByGIAddr, Relayed: true, Reason: "relay's subnet (giaddr " + q.GIAddr.String() + ")"}
	case q.CIAddr.IsValid():
		if q.ByCIAddr < 0 {
			return SubnetChoice{Index: -1, Reason: fmt.Sprintf("client address %s is in no subnet flint serves", q.CIAddr)}
		}
		return SubnetChoice{Index: q.ByCIAddr, Reason: "subnet of the client's address (ciaddr " + q.CIAddr.String() + ")"}
	case q.Local < 0:
		return SubnetChoice{Index: -1, Reason: "no subnet holds flint's own address: its own segment is not served"}
	}
	return SubnetChoice{Index: q.Local, Reason: "flint's own segment"}
}

// MachineQuery is what picking the config machine of a request depends on:
// the candidates, each already looked up by key.
type MachineQuery struct {
	ByMAC   *config.Machine // the machine with the request's chaddr
	BySlot  *config.Machine // the machine whose relay port matches option 82 (relayed requests only)
	ByLease *config.Machine // the machine whose reserved address chaddr holds a lease on (a box chosen by its port before, now renewing without option 82)
	Relay   relayInfo       // for messages
	Subnet  netip.Prefix    // the subnet chosen for the request
}

// How a machine was chosen.
const (
	ByMAC   = "mac"
	BySlot  = "relay port"
	ByLease = "lease"
)

// MachineChoice is the config machine a request is answered as. Machine nil
// and Refuse "" is a client the config does not know (pool, discover_unknown);
// Refuse set means no answer at all, for the reason it gives.
type MachineChoice struct {
	Machine *config.Machine
	By      string // ByMAC, BySlot or ByLease
	Refuse  string
}

// SelectMachine decides which machine of the config a request comes from.
// A relay port that names a machine (option 82) wins over an unknown MAC:
// on a bench the slot, not the box in it, is the machine. A MAC that is
// another machine's is a conflict, answered with nothing: one of the two
// boxes is in the wrong slot, or the config is wrong. The chosen machine's
// reservation must lie in the request's subnet: a machine on the wrong
// segment would be handed an address it cannot use. It is pure.
func SelectMachine(q MachineQuery) MachineChoice {
	var c MachineChoice
	switch {
	case q.BySlot != nil && q.ByMAC != nil && q.BySlot != q.ByMAC:
		return MachineChoice{Refuse: fmt.Sprintf("its MAC is %s's, but the relay port (%s) is %s's: move the box to its own port or fix the config",
			q.ByMAC.Hostname, slotOf(q.Relay), q.BySlot.Hostname)}
	case q.BySlot != nil:
		c = MachineChoice{Machine: q.BySlot, By: BySlot}
	case q.ByMAC != nil:
		c = MachineChoice{Machine: q.ByMAC, By: ByMAC}
	case q.ByLease != nil && !q.Relay.Option82:
		// Only without option 82: a box that now reports another port is
		// no longer the machine of the port it was chosen by.
		c = MachineChoice{Machine: q.ByLease, By: ByLease}
	default:
		return MachineChoice{}
	}
	if q.Subnet.IsValid() && !q.Subnet.Contains(c.Machine.IPAddr) {
		return MachineChoice{Refuse: fmt.Sprintf("%s's address %s is not in subnet %s, where the request comes from: plug it into its own segment or change its ip",
			c.Machine.Hostname, c.Machine.IPAddr, q.Subnet)}
	}
	return c
}

func slotOf(ri relayInfo) string {
	return config.Relay{CircuitID: printable([]byte(ri.CircuitID)), RemoteID: printable([]byte(ri.RemoteID))}.String()
}
