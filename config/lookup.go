package config

import (
	"net"
	"net/netip"
)

// Answers the config gives on a request path: machines looked up by key
// (MAC, address, name), and what follows for one machine from its own
// settings and the cluster's (URLs, install mode, Secure Boot, FQDN).

// machineIndex finds machines by key: request paths never scan the list.
type machineIndex struct {
	byMAC  map[MAC]int
	byName map[string]int
	byIP   map[netip.Addr]int
}

// index returns the lookup tables Parse built. A Config assembled by hand (in
// tests) has none and gets a fresh one per call. Machines must not change once
// the config is in use.
func (c *Config) index() *machineIndex {
	if c.idx != nil {
		return c.idx
	}
	return buildIndex(c.Machines)
}

func buildIndex(machines []Machine) *machineIndex {
	ix := &machineIndex{byMAC: make(map[MAC]int, len(machines)), byName: make(map[string]int, len(machines)), byIP: make(map[netip.Addr]int, len(machines))}
	for i := range machines {
		m := &machines[i]
		if !m.HW.IsZero() {
			if _, dup := ix.byMAC[m.HW]; !dup {
				ix.byMAC[m.HW] = i
			}
		}
		if _, dup := ix.byName[m.Hostname]; !dup && m.Hostname != "" {
			ix.byName[m.Hostname] = i
		}
		if _, dup := ix.byIP[m.IPAddr]; !dup && m.IPAddr.IsValid() {
			ix.byIP[m.IPAddr] = i
		}
	}
	return ix
}

// MachineByMAC finds a configured machine; ok is false for unknown MACs.
func (c *Config) MachineByMAC(mac MAC) (*Machine, bool) {
	i, ok := c.index().byMAC[mac]
	if !ok {
		return nil, false
	}
	return &c.Machines[i], true
}

// MachineByIP finds the machine an address is reserved for.
func (c *Config) MachineByIP(ip netip.Addr) (*Machine, bool) {
	i, ok := c.index().byIP[ip]
	if !ok {
		return nil, false
	}
	return &c.Machines[i], true
}

// MachineByName finds a configured machine by hostname.
func (c *Config) MachineByName(name string) (*Machine, bool) {
	i, ok := c.index().byName[name]
	if !ok {
		return nil, false
	}
	return &c.Machines[i], true
}

// MachineByNameOrMAC finds a machine by hostname or by MAC in either form.
func (c *Config) MachineByNameOrMAC(s string) (*Machine, bool) {
	if m, ok := c.MachineByName(s); ok {
		return m, true
	}
	if mac, err := ParseMAC(s); err == nil {
		return c.MachineByMAC(mac)
	}
	return nil, false
}

// HTTPBaseURL is the URL machines use to reach flint's HTTP server.
func (c *Config) HTTPBaseURL() string {
	host := c.Server.AddressIP.String()
	if c.Server.HTTPPort == 80 {
		return "http://" + host
	}
	return "http://" + net.JoinHostPort(host, itoa(c.Server.HTTPPort))
}

// HTTPSBaseURL is the URL machines use to reach flint's HTTPS server.
func (c *Config) HTTPSBaseURL() string {
	host := c.Server.AddressIP.String()
	if c.Server.HTTPSPort == 443 {
		return "https://" + host
	}
	return "https://" + net.JoinHostPort(host, itoa(c.Server.HTTPSPort))
}

// Install modes.
const (
	InstallDisk = "disk"
	InstallLive = "live"
)

// SecureBootOf reports whether m boots the signed chain (Shim, GRUB) instead
// of iPXE: its own secure_boot, else boot.secure_boot.
func (c *Config) SecureBootOf(m *Machine) bool {
	if m.SecureBoot != nil {
		return *m.SecureBoot
	}
	return c.Boot.SecureBoot
}

// UsesSecureBoot reports whether any machine boots the signed chain.
func (c *Config) UsesSecureBoot() bool {
	for i := range c.Machines {
		if c.SecureBootOf(&c.Machines[i]) {
			return true
		}
	}
	return false
}

// InstallModeOf is the machine's install mode (its own, else the cluster's).
func (c *Config) InstallModeOf(m *Machine) string {
	if m.InstallMode != "" {
		return m.InstallMode
	}
	return c.Cluster.InstallMode
}

// InstallDiskOf is the disk a disk-mode machine installs to.
func (c *Config) InstallDiskOf(m *Machine) string {
	if m.InstallDisk != "" {
		return m.InstallDisk
	}
	return c.Cluster.InstallDisk
}

// FQDN is the machine's fully qualified name, or its hostname when no domain is set.
func (c *Config) FQDN(m *Machine) string {
	if c.Cluster.Domain == "" {
		return m.Hostname
	}
	return m.Hostname + "." + c.Cluster.Domain
}

// Servers returns the machines with role server, in config order.
func (c *Config) Servers() []Machine {
	var out []Machine
	for _, m := range c.Machines {
		if m.Role == RoleServer {
			out = append(out, m)
		}
	}
	return out
}
