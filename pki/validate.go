package pki

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// hostnameRE is one DNS label, lower case, like config's machine hostnames. It
// also keeps names safe to use in file names.
var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func checkHostname(field, name string) error {
	if !hostnameRE.MatchString(name) {
		return fmt.Errorf("pki: %s %q is not a valid hostname (lower-case letters, digits and '-', 1 to 63 characters, no '-' at either end)", field, name)
	}
	return nil
}

// checkNode validates n and returns it with FQDN normalised (lower case, no
// trailing dot) so the certificate's SANs compare equal across calls.
func checkNode(n Node) (Node, error) {
	if err := checkHostname("node Name", n.Name); err != nil {
		return n, err
	}
	if n.FQDN != "" {
		fqdn := strings.TrimSuffix(strings.ToLower(n.FQDN), ".")
		if err := checkFQDN(fqdn); err != nil {
			return n, fmt.Errorf("pki: node %s: FQDN %q: %w", n.Name, n.FQDN, err)
		}
		n.FQDN = fqdn
	}
	switch ip := n.IP; {
	case !ip.IsValid():
		return n, fmt.Errorf("pki: node %s: IP is missing", n.Name)
	case !ip.Is4():
		return n, fmt.Errorf("pki: node %s: IP %s is not an IPv4 address", n.Name, ip)
	case ip.IsUnspecified(), ip.IsLoopback(), ip.IsMulticast(), ip == limitedBroadcast:
		return n, fmt.Errorf("pki: node %s: IP %s cannot be a node's address", n.Name, ip)
	}
	return n, nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func checkFQDN(fqdn string) error {
	if len(fqdn) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	labels := strings.Split(fqdn, ".")
	if len(labels) < 2 {
		return fmt.Errorf("not a fully qualified name (needs a domain, e.g. nuc1.example.net)")
	}
	for _, l := range labels {
		if !hostnameRE.MatchString(l) {
			return fmt.Errorf("label %q is not valid (letters, digits and '-', 1 to 63 characters, no '-' at either end)", l)
		}
	}
	return nil
}
