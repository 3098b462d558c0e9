package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// clientInfo is what flint reads from a request besides the message type.
type clientInfo struct {
	MAC         net.HardwareAddr
	mac         string // MAC.String(), formatted once per packet
	Arch        uint16
	HasArch     bool
	VendorClass string
	UserClass   string // for records: "iPXE", or the printable raw option
	IPXE        bool
}

func readClient(req *dhcpv4.DHCPv4) clientInfo {
	ci := clientInfo{MAC: req.ClientHWAddr, mac: req.ClientHWAddr.String()}
	// Option 93 is a list of 16-bit codes; the first is the one that asks.
	if v := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(v) >= 2 {
		ci.Arch, ci.HasArch = binary.BigEndian.Uint16(v), true
	}
	ci.VendorClass = printable(req.Options.Get(dhcpv4.OptionClassIdentifier))
	uc := req.Options.Get(dhcpv4.OptionUserClassInformation)
	ci.IPXE = isIPXEUserClass(uc)
	if ci.IPXE {
		ci.UserClass = "iPXE"
	} else {
		ci.UserClass = printable(uc)
	}
	return ci
}

// isIPXEUserClass accepts iPXE's raw "iPXE" and the RFC 3004 framing
// (length-prefixed strings) some builds and other clients use.
func isIPXEUserClass(b []byte) bool {
	if string(b) == "iPXE" {
		return true
	}
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || n+1 > len(b) {
			return false
		}
		if string(b[1:n+1]) == "iPXE" {
			return true
		}
		b = b[n+1:]
	}
	return false
}

// printable makes option bytes safe for logs and machine records.
func printable(b []byte) string {
	const max = 96
	if len(b) > max {
		b = b[:max]
	}
	s := strings.TrimRight(string(b), "\x00")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, s)
}

// addrOf converts a packet IP field; ok is false for a missing or 0.0.0.0 address.
func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a, true
}

func ipOf(a netip.Addr) net.IP {
	if !a.IsValid() {
		return net.IPv4zero
	}
	b := a.As4()
	return net.IP(b[:])
}

// pxeDiscoveryControl is option 43 carrying PXE sub-option 6 (discovery
// control) = 0x08: no boot-server discovery, boot the file in this reply.
var pxeDiscoveryControl = []byte{6, 1, 0x08, 255}

// withBoot puts a boot decision into a reply: siaddr and the BOOTP file field
// (not options 66/67, which some firmware ignores), and option 60 HTTPClient
// for UEFI HTTP boot only (some PXE firmware ignores `file` when 60 is echoed).
func withBoot(d BootDecision) dhcpv4.Modifier {
	return func(p *dhcpv4.DHCPv4) {
		if !d.Boots() {
			return
		}
		p.ServerIPAddr = ipOf(d.NextServer)
		p.BootFileName = d.File
		if d.HTTPClient {
			p.UpdateOption(dhcpv4.OptClassIdentifier(VendorHTTPClient))
		}
	}
}

// withLeaseTimes adds options 51, 58 (T1 = 50%) and 59 (T2 = 87.5%).
func withLeaseTimes(lease time.Duration) dhcpv4.Modifier {
	return func(p *dhcpv4.DHCPv4) {
		p.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		p.UpdateOption(dhcpv4.OptRenewTimeValue(lease / 2))
		p.UpdateOption(dhcpv4.OptRebindingTimeValue(lease * 7 / 8))
	}
}

// newReply starts a reply to req: BOOTREPLY with the client's xid, chaddr,
// flags and giaddr, echoing relay agent information (option 82, RFC 3046) and
// the client identifier (option 61, RFC 6842). Unlike
// dhcpv4.NewReplyFromRequest it does not draw a random xid only to overwrite
// it, so it cannot fail and costs no syscall per reply.
func newReply(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientHWAddr:  req.ClientHWAddr,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		Options:       dhcpv4.Options{},
	}
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			p.Options.Update(dhcpv4.OptGeneric(code, v))
		}
	}
	for _, m := range mods {
		m(p)
	}
	return p
}
