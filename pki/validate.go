package pki

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
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
	if !strings.Contains(fqdn, ".") {
		return fmt.Errorf("not a fully qualified name (needs a domain, e.g. nuc1.example.net)")
	}
	return checkDNSName(fqdn)
}

// checkDNSName checks a lower-case DNS name of one or more labels, e.g.
// "localhost" or "flint.rack.example".
func checkDNSName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for _, l := range strings.Split(name, ".") {
		if !hostnameRE.MatchString(l) {
			return fmt.Errorf("label %q is not valid (letters, digits and '-', 1 to 63 characters, no '-' at either end)", l)
		}
	}
	return nil
}

// checkServingSANs validates the names and addresses for flint's serving
// certificate and returns them normalised (names in lower case without a
// trailing dot, IPv4-mapped addresses as IPv4, no duplicates) so that the SANs
// compare equal across calls.
func checkServingSANs(names []string, ips []netip.Addr) ([]string, []netip.Addr, error) {
	if len(names) == 0 && len(ips) == 0 {
		return nil, nil, fmt.Errorf("pki: serving certificate: no DNS name and no IP address given; pass the names and addresses clients reach flint at (e.g. its address, 127.0.0.1 and localhost)")
	}
	var outNames []string
	for _, n := range names {
		name := strings.TrimSuffix(strings.ToLower(n), ".")
		if err := checkDNSName(name); err != nil {
			return nil, nil, fmt.Errorf("pki: serving certificate: DNS name %q: %w", n, err)
		}
		if !slices.Contains(outNames, name) {
			outNames = append(outNames, name)
		}
	}
	var outIPs []netip.Addr
	for _, given := range ips {
		ip := given.Unmap()
		switch {
		case !ip.IsValid():
			return nil, nil, fmt.Errorf("pki: serving certificate: an IP address is missing (zero netip.Addr)")
		case ip.Zone() != "":
			return nil, nil, fmt.Errorf("pki: serving certificate: IP %s has a zone, which a certificate cannot hold; pass it without", given)
		case ip.IsUnspecified():
			return nil, nil, fmt.Errorf("pki: serving certificate: IP %s is the wildcard address flint listens on, not one clients connect to; pass flint's own address", given)
		case ip.IsMulticast(), ip == limitedBroadcast:
			return nil, nil, fmt.Errorf("pki: serving certificate: IP %s cannot be flint's address", given)
		}
		if !slices.Contains(outIPs, ip) {
			outIPs = append(outIPs, ip)
		}
	}
	return outNames, outIPs, nil
}
