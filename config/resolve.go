package config

import (
	"fmt"
	"net"
	"net/netip"
)

// ResolveAddress fills Server.AddressIP from the host's interfaces when the config
// leaves server.address empty: the first IPv4 address of server.interface, or of
// the first interface that is up and not loopback.
func (c *Config) ResolveAddress() error {
	if c.Server.AddressIP.IsValid() {
		return nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list interfaces to find server.address: %w", err)
	}
	for _, ifc := range ifaces {
		if c.Server.Interface != "" && ifc.Name != c.Server.Interface {
			continue
		}
		if c.Server.Interface == "" && (ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ip.Is4() {
				c.Server.AddressIP = ip
				return nil
			}
		}
	}
	if c.Server.Interface != "" {
		return fmt.Errorf("server.address is empty and interface %q has no IPv4 address: set server.address or give the interface an address", c.Server.Interface)
	}
	return fmt.Errorf("server.address is empty and no interface has an IPv4 address: set server.address in the config")
}
