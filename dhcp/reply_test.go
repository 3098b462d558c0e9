package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
)

// modifierReply is a lease reply built the plain way, with dhcpv4's
// modifiers encoding every option per packet: leaseReply's options encoded
// once must give the same bytes.
func modifierReply(s *Server, req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr netip.Addr, m *config.Machine, dec BootDecision) *dhcpv4.DHCPv4 {
	d := &s.cfg.DHCP
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(ipOf(yiaddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(s.addr))),
		dhcpv4.WithNetmask(net.CIDRMask(d.SubnetPrefix.Bits(), 32)),
	}
	if typ == dhcpv4.MessageTypeAck {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if d.RouterIP.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(ipOf(d.RouterIP))))
	}
	if len(d.DNSIPs) > 0 {
		var dns []net.IP
		for _, a := range d.DNSIPs {
			dns = append(dns, ipOf(a))
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
	}
	if d.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(d.Domain)))
	}
	if m != nil && m.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(m.Hostname)))
	}
	if yiaddr.IsValid() {
		mods = append(mods, withLeaseTimes(d.LeaseTime.Duration))
	}
	if dec.Boots() {
		mods = append(mods, withBoot(dec), dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier))
	}
	return newReply(req, mods...)
}

func TestLeaseReplyEncodedOnce(t *testing.T) {
	s, _ := newTestServer(t, testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.200"}), newMemStore())
	nuc1, _ := s.machine(mustMAC(nuc1MAC))
	reqs := map[string]*dhcpv4.DHCPv4{
		"pxe":         packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), withUUID, ciaddr(nuc1IP)),
		"ipxe":        packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7), ipxeUserClass),
		"http-client": packet("02:00:00:00:00:01", dhcpv4.MessageTypeDiscover, httpClient(16)),
		"plain":       packet("02:00:00:00:00:02", dhcpv4.MessageTypeRequest),
	}
	for name, req := range reqs {
		for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak} {
			for _, m := range []*config.Machine{nil, nuc1} {
				for _, yi := range []netip.Addr{{}, nuc1IP} {
					dec := s.decide(readClient(req), m)
					r := &fullReq{req: req, m: m, opts: &s.replyOpts[0]}
					got := s.leaseReply(r, typ, yi, dec).ToBytes()
					want := modifierReply(s, req, typ, yi, m, dec).ToBytes()
					if !bytes.Equal(got, want) {
						t.Errorf("%s %s machine %v yiaddr %v:\n got %x\nwant %x", name, typ, m != nil, yi, got, want)
					}
				}
			}
		}
	}
}
