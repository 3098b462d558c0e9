package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Subnet is one network flint hands out addresses in (full mode): flint's
// own segment, or one behind a DHCP relay. Its reservations are the
// addresses of the config's machines that lie in it.
type Subnet struct {
	Subnet string   `yaml:"subnet"`
	Pool   *Pool    `yaml:"pool"`
	Router string   `yaml:"router"`
	DNS    []string `yaml:"dns"`

	// Parsed forms, filled by Validate.
	Prefix   netip.Prefix `yaml:"-"`
	RouterIP netip.Addr   `yaml:"-"`
	DNSIPs   []netip.Addr `yaml:"-"`
	// Field is where the subnet is written: "dhcp" (the single dhcp.subnet
	// form) or "dhcp.subnets[N]".
	Field string `yaml:"-"`
	// Local: it holds flint's own address (server.address), so it serves the
	// requests that come without a relay (giaddr 0.0.0.0).
	Local bool `yaml:"-"`
}

// Relay identifies a machine by the switch port it is plugged into, as a
// DHCP relay reports it in option 82 (RFC 3046): the circuit id and/or the
// remote id. Both given: both must match.
type Relay struct {
	CircuitID string `yaml:"circuit_id"`
	RemoteID  string `yaml:"remote_id"`
}

// IsZero reports whether no relay identity is set.
func (r Relay) IsZero() bool { return r.CircuitID == "" && r.RemoteID == "" }

// String is the identity as people read it in logs and messages.
func (r Relay) String() string {
	var parts []string
	if r.CircuitID != "" {
		parts = append(parts, fmt.Sprintf("circuit-id %q", r.CircuitID))
	}
	if r.RemoteID != "" {
		parts = append(parts, fmt.Sprintf("remote-id %q", r.RemoteID))
	}
	return strings.Join(parts, " ")
}

// maxRelayID is the longest option 82 sub-option value (one length byte).
const maxRelayID = 255

// subnetIndex finds the subnet of an address by key: the address masked to
// each prefix length in use (a handful at most), never a scan of the list.
type subnetIndex struct {
	byPrefix map[netip.Prefix]int
	bits     []int // distinct prefix lengths, longest first
	local    int   // -1: none
	bySlot   map[Relay]int
}

func buildSubnetIndex(nets []Subnet, machines []Machine) *subnetIndex {
	ix := &subnetIndex{byPrefix: map[netip.Prefix]int{}, local: -1, bySlot: map[Relay]int{}}
	seen := map[int]bool{}
	for i := range nets {
		p := nets[i].Prefix
		if !p.IsValid() {
			continue
		}
		if _, dup := ix.byPrefix[p]; !dup {
			ix.byPrefix[p] = i
		}
		if !seen[p.Bits()] {
			seen[p.Bits()] = true
			ix.bits = append(ix.bits, p.Bits())
		}
		if nets[i].Local && ix.local < 0 {
			ix.local = i
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ix.bits)))
	for i := range machines {
		if r := machines[i].Relay; r != nil && !r.IsZero() {
			if _, dup := ix.bySlot[*r]; !dup {
				ix.bySlot[*r] = i
			}
		}
	}
	return ix
}

func (c *Config) subnets() *subnetIndex {
	if c.snx != nil {
		return c.snx
	}
	return buildSubnetIndex(c.DHCP.Networks, c.Machines)
}

// SubnetOf finds the served subnet that contains ip.
func (c *Config) SubnetOf(ip netip.Addr) (*Subnet, bool) {
	i, ok := c.SubnetIndexOf(ip)
	if !ok {
		return nil, false
	}
	return &c.DHCP.Networks[i], true
}

// SubnetIndexOf is SubnetOf as an index into DHCP.Networks.
func (c *Config) SubnetIndexOf(ip netip.Addr) (int, bool) {
	if !ip.Is4() {
		return -1, false
	}
	return c.subnets().find(ip)
}

// LocalSubnet is the index of the subnet of flint's own segment (the one
// holding server.address): it serves requests that come without a relay.
func (c *Config) LocalSubnet() (int, bool) {
	if i := c.subnets().local; i >= 0 {
		return i, true
	}
	// server.address resolved after Parse (from the interface): look again.
	if i, ok := c.SubnetIndexOf(c.Server.AddressIP); ok {
		return i, true
	}
	return -1, false
}

// MachineBySlot finds the machine whose relay identity matches what a relay
// reported in option 82: circuit and remote id together first, then the
// circuit id alone, then the remote id alone (three lookups by key).
func (c *Config) MachineBySlot(circuitID, remoteID string) (*Machine, bool) {
	if circuitID == "" && remoteID == "" {
		return nil, false
	}
	ix := c.subnets()
	for _, k := range []Relay{{circuitID, remoteID}, {CircuitID: circuitID}, {RemoteID: remoteID}} {
		if k.IsZero() {
			continue
		}
		if i, ok := ix.bySlot[k]; ok {
			return &c.Machines[i], true
		}
	}
	return nil, false
}

// HasPool reports whether any served subnet has a pool.
func (d *DHCP) HasPool() bool {
	for i := range d.Networks {
		if d.Networks[i].Pool != nil {
			return true
		}
	}
	return false
}

// validateNetworks checks the subnets flint serves: dhcp.subnets, or the
// single dhcp.subnet with dhcp.pool, dhcp.router and dhcp.dns. It fills
// DHCP.Networks with the parsed subnets.
func (cfg *Config) validateNetworks(c *checker) {
	d := &cfg.DHCP
	s := &cfg.Server
	single := d.Subnet != "" || d.Pool != nil || d.Router != "" || len(d.DNS) > 0
	if len(d.Subnets) > 0 {
		if d.Mode != ModeFull {
			c.fail("dhcp.subnets", "only full mode hands out addresses in several subnets; mode is %s (use dhcp.subnet, or mode: full)", d.Mode)
		}
		for _, f := range []struct {
			field string
			set   bool
		}{{"dhcp.subnet", d.Subnet != ""}, {"dhcp.pool", d.Pool != nil}, {"dhcp.router", d.Router != ""}, {"dhcp.dns", len(d.DNS) > 0}} {
			if f.set {
				c.fail(f.field, "is given next to dhcp.subnets: move it into the entry of dhcp.subnets it belongs to (one form or the other)")
			}
		}
		d.Networks = d.Subnets
		for i := range d.Networks {
			n := &d.Networks[i]
			n.Field = fmt.Sprintf("dhcp.subnets[%d]", i)
			if n.Subnet == "" {
				c.fail(n.Field+".subnet", "missing: every entry of dhcp.subnets needs its subnet in CIDR form (like 198.18.1.0/24)")
			}
			c.network(n)
		}
		cfg.checkOverlaps(c)
		cfg.pickLocal(c)
		return
	}
	if d.Subnet == "" {
		if d.Mode == ModeFull {
			c.fail("dhcp.subnet", "full mode needs the subnet flint is authoritative for (or dhcp.subnets)")
		}
		if !single {
			return
		}
	}
	n := Subnet{Subnet: d.Subnet, Pool: d.Pool, Router: d.Router, DNS: d.DNS, Field: "dhcp"}
	c.network(&n)
	d.SubnetPrefix, d.RouterIP, d.DNSIPs = n.Prefix, n.RouterIP, n.DNSIPs
	if d.Mode == ModeFull && s.AddressIP.IsValid() && n.Prefix.IsValid() && !n.Prefix.Contains(s.AddressIP) {
		c.fail("server.address", "%s is outside subnet %s: machines could not reach flint", s.AddressIP, n.Prefix)
	}
	if n.Pool.Contains(s.AddressIP) {
		c.fail("server.address", "%s is inside the pool: flint could hand its own address to a machine", s.AddressIP)
	}
	n.Local = n.Prefix.IsValid()
	if n.Prefix.IsValid() {
		d.Networks = []Subnet{n}
	}
}

// network parses and checks one subnet's fields, named under n.Field.
func (c *checker) network(n *Subnet) {
	f := n.Field
	if n.Subnet != "" {
		p, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
		if err != nil || !p.Addr().Is4() {
			c.fail(f+".subnet", "%q is not an IPv4 subnet in CIDR form (like 198.18.0.0/24)", n.Subnet)
		} else {
			n.Prefix = p.Masked()
		}
	}
	if n.Router != "" {
		n.RouterIP = c.ip(f+".router", n.Router)
		if n.RouterIP.IsValid() && n.Prefix.IsValid() && !n.Prefix.Contains(n.RouterIP) {
			c.fail(f+".router", "%s is outside subnet %s", n.RouterIP, n.Prefix)
		}
	}
	for i, s := range n.DNS {
		if a := c.ip(fmt.Sprintf("%s.dns[%d]", f, i), s); a.IsValid() {
			n.DNSIPs = append(n.DNSIPs, a)
		}
	}
	if p := n.Pool; p != nil {
		p.StartIP = c.ip(f+".pool.start", p.Start)
		p.EndIP = c.ip(f+".pool.end", p.End)
		if p.StartIP.IsValid() && p.EndIP.IsValid() {
			if p.EndIP.Less(p.StartIP) {
				c.fail(f+".pool", "pool end %s is before its start %s", p.EndIP, p.StartIP)
			}
			if n.Prefix.IsValid() {
				for _, e := range []struct {
					name string
					ip   netip.Addr
				}{{f + ".pool.start", p.StartIP}, {f + ".pool.end", p.EndIP}} {
					if !n.Prefix.Contains(e.ip) {
						c.fail(e.name, "%s is outside subnet %s", e.ip, n.Prefix)
					}
				}
			}
		}
		if p.Contains(n.RouterIP) {
			c.fail(f+".pool", "the pool contains the router %s: leave it out of the pool", n.RouterIP)
		}
	}
}

// checkOverlaps rejects subnets that share addresses: a relay's giaddr
// must pick exactly one.
func (cfg *Config) checkOverlaps(c *checker) {
	nets := cfg.DHCP.Networks
	for j := range nets {
		for i := 0; i < j; i++ { // config time, a handful of subnets
			a, b := nets[i].Prefix, nets[j].Prefix
			if a.IsValid() && b.IsValid() && a.Overlaps(b) {
				c.fail(nets[j].Field+".subnet", "%s overlaps %s (%s): a relay's address (giaddr) must lie in exactly one subnet", b, nets[i].Field, a)
			}
		}
	}
}

// pickLocal marks the subnet of flint's own address: it answers requests
// that come without a relay. Several subnets and none of them holding
// server.address leave flint unable to say which one its own segment is.
func (cfg *Config) pickLocal(c *checker) {
	d := &cfg.DHCP
	s := &cfg.Server
	var names []string
	for i := range d.Networks {
		n := &d.Networks[i]
		names = append(names, n.Prefix.String())
		if n.Prefix.IsValid() && s.AddressIP.IsValid() && n.Prefix.Contains(s.AddressIP) {
			n.Local = true
		}
		if n.Pool.Contains(s.AddressIP) {
			c.fail(n.Field+".pool", "contains flint's own address %s (server.address): flint could hand it to a machine", s.AddressIP)
		}
	}
	if s.AddressIP.IsValid() {
		if _, ok := cfg.localOf(); !ok {
			c.fail("server.address", "%s is in none of dhcp.subnets (%s): requests without a relay (giaddr 0.0.0.0) come from flint's own segment, and flint takes its subnet to be the one holding its address; add that subnet to dhcp.subnets", s.AddressIP, strings.Join(names, ", "))
		}
	}
}

func (cfg *Config) localOf() (int, bool) {
	for i := range cfg.DHCP.Networks {
		if cfg.DHCP.Networks[i].Local {
			return i, true
		}
	}
	return -1, false
}

// validateMachineNetwork checks machine m's reserved address against the
// subnets (nets: their index) and its relay identity. slots maps identities
// to their machines' fields, for duplicates.
func (cfg *Config) validateMachineNetwork(c *checker, nets *subnetIndex, f string, m *Machine, a netip.Addr, slots map[Relay]string) {
	d := &cfg.DHCP
	if a.IsValid() && len(d.Networks) > 0 {
		var n *Subnet
		if i, ok := nets.find(a); ok {
			n = &d.Networks[i]
		}
		switch {
		case n == nil && len(d.Subnets) == 0:
			c.fail(f+".ip", "%s is outside subnet %s", a, d.Networks[0].Prefix)
		case n == nil:
			var names []string
			for _, x := range d.Networks {
				names = append(names, x.Prefix.String())
			}
			c.fail(f+".ip", "%s is in none of dhcp.subnets (%s): flint could never hand it out", a, strings.Join(names, ", "))
		default:
			if n.Pool.Contains(a) {
				c.fail(f+".ip", "%s is inside the pool %s-%s: it could be leased to another machine", a, n.Pool.StartIP, n.Pool.EndIP)
			}
			if a == n.RouterIP {
				c.fail(f+".ip", "%s is the router's address", a)
			}
			if pr := n.Prefix; pr.Bits() <= 30 && (a == pr.Masked().Addr() || a == lastOf(pr)) {
				c.fail(f+".ip", "%s is the network or broadcast address of subnet %s", a, pr)
			}
		}
	}
	if m.Relay == nil {
		return
	}
	r := m.Relay
	switch {
	case r.IsZero():
		c.fail(f+".relay", "names neither circuit_id nor remote_id: give the option 82 value(s) the relay reports for this machine's port")
	case d.Mode != ModeFull:
		c.fail(f+".relay", "selects a machine's address by its switch port, which only full mode hands out; mode is %s", d.Mode)
	}
	for name, v := range map[string]string{f + ".relay.circuit_id": r.CircuitID, f + ".relay.remote_id": r.RemoteID} {
		if len(v) > maxRelayID {
			c.fail(name, "is %d bytes long; option 82 carries at most %d", len(v), maxRelayID)
		}
	}
	if !r.IsZero() {
		if prev, dup := slots[*r]; dup {
			c.fail(f+".relay", "%s is also the port of %s: one port, one machine", r, prev)
		}
		slots[*r] = f
	}
}

// find is SubnetIndexOf on an index.
func (ix *subnetIndex) find(ip netip.Addr) (int, bool) {
	for _, b := range ix.bits {
		if p, err := ip.Prefix(b); err == nil {
			if i, ok := ix.byPrefix[p]; ok {
				return i, true
			}
		}
	}
	return -1, false
}

// lastOf is the highest address of an IPv4 prefix (its broadcast address).
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
