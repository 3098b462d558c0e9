package dhcp

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// handleProxy is proxy mode on the DHCP port: another server hands out
// addresses; flint adds boot information for netboot clients it may boot.
func (s *Server) handleProxy(req *dhcpv4.DHCPv4, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	ci := readClient(req)
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		// A REQUEST that names another server (option 54) is the client taking
		// the real DHCP server's address: an ACK from us, without an address,
		// could win the race and leave it with none. Answer only REQUESTs
		// addressed to flint (some firmware asks for the boot info that way).
		if sid := req.ServerIdentifier(); sid == nil || !sid.Equal(ipOf(s.addr)) {
			s.proxyAddressTaken(req, ci, log)
			return nil, nil
		}
		typ = dhcpv4.MessageTypeAck
	default:
		log.Debug("ignored: proxy mode answers DISCOVER and REQUEST only")
		return nil, nil
	}
	dec, ok := s.proxyDecide(req, ci, log)
	if !ok {
		return nil, nil
	}
	reply := s.proxyReply(req, typ, dec)
	ciaddr, _ := addrOf(req.ClientIPAddr)
	log.Info("proxydhcp "+strings.ToLower(typ.String()), "file", dec.File, "boot", dec.Reason)
	s.record(ci, ciaddr, "dhcp proxy "+typ.String())
	return reply, clientDest(req, peer, false)
}

// handleBootServer is proxy mode on server.proxy_port (4011): UEFI firmware
// that got a proxy offer may ask here again. The ACK goes back to the sender.
func (s *Server) handleBootServer(req *dhcpv4.DHCPv4, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	ci := readClient(req)
	switch req.MessageType() {
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDiscover:
	default:
		log.Debug("ignored: the boot server port answers REQUEST and DISCOVER only")
		return nil, nil
	}
	dec, ok := s.proxyDecide(req, ci, log)
	if !ok {
		return nil, nil
	}
	reply := s.proxyReply(req, dhcpv4.MessageTypeAck, dec)
	dst := clientDest(req, peer, false)
	if peer != nil && peer.IP != nil && !peer.IP.IsUnspecified() {
		dst = &net.UDPAddr{IP: peer.IP, Port: peer.Port}
	}
	ciaddr, _ := addrOf(req.ClientIPAddr)
	log.Info("proxydhcp ack", "file", dec.File, "boot", dec.Reason, "to", dst)
	s.record(ci, ciaddr, "dhcp proxy ACK (boot server)")
	return reply, dst
}

// proxyDecide decides whether to answer in proxy mode at all: only netboot
// clients flint may boot. Other clients are someone else's business and are
// not recorded (a LAN's phones and laptops would flood the machine list).
func (s *Server) proxyDecide(req *dhcpv4.DHCPv4, ci clientInfo, log pktLog) (BootDecision, bool) {
	m, _ := s.machine(ci.MAC)
	dec := s.decide(ci, m)
	if dec.Boots() {
		return dec, true
	}
	if !isNetboot(ci) {
		log.Debug("ignored: "+dec.Reason, "vendor_class", ci.VendorClass)
		return dec, false
	}
	s.complain(log, "proxy ignore "+ci.mac, slog.LevelInfo, "netboot client not answered: "+dec.Reason+" (logged once a minute)", "vendor_class", ci.VendorClass)
	ciaddr, _ := addrOf(req.ClientIPAddr)
	s.record(ci, ciaddr, "dhcp "+req.MessageType().String()+" (ignored: "+dec.Reason+")")
	return dec, false
}

// proxyAddressTaken notes the address a machine takes from the real DHCP
// server: its broadcast REQUEST (SELECTING, INIT-REBOOT or REBINDING) names
// it in option 50, or in ciaddr. Only the config's machines are recorded, so
// the lifecycle knows their addresses; the LAN's other clients (phones,
// laptops) are none of flint's business and must not fill the store. flint
// does not answer.
func (s *Server) proxyAddressTaken(req *dhcpv4.DHCPv4, ci clientInfo, log pktLog) {
	if _, known := s.machine(ci.MAC); !known {
		log.Debug("ignored: REQUEST for another DHCP server")
		return
	}
	ip, ok := addrOf(req.RequestedIPAddress())
	if !ok {
		ip, ok = addrOf(req.ClientIPAddr)
	}
	if !ok || !s.plausibleClientAddr(ip) {
		log.Debug("ignored: REQUEST for another DHCP server, without an address a client could take", "ip", ip)
		return
	}
	to := "another server"
	if sid, ok := addrOf(req.ServerIdentifier()); ok {
		to = sid.String()
	}
	log.Debug("machine takes an address from another DHCP server", "ip", ip, "server", to)
	sg := s.sighting(ci, ip, "dhcp REQUEST to "+to+" for "+ip.String())
	sg.DHCPAddr = true
	s.recordSighting(sg, ci.MAC)
}

// plausibleClientAddr reports whether ip can be an address a DHCP server
// gave a client on flint's network: unicast IPv4, not flint's own, and in
// dhcp.subnet if that is set.
func (s *Server) plausibleClientAddr(ip netip.Addr) bool {
	switch {
	case !ip.Is4(), ip.IsUnspecified(), ip.IsLoopback(), ip.IsMulticast(), ip.IsLinkLocalUnicast(),
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}), ip == s.addr:
		return false
	case s.cfg.DHCP.SubnetPrefix.IsValid():
		p := s.cfg.DHCP.SubnetPrefix
		return p.Contains(ip) && (p.Bits() > 30 || (ip != p.Masked().Addr() && ip != lastAddr(p)))
	}
	return true
}

func isNetboot(ci clientInfo) bool {
	return ci.IPXE || strings.HasPrefix(ci.VendorClass, VendorPXEClient) || strings.HasPrefix(ci.VendorClass, VendorHTTPClient)
}

// proxyReply builds a proxyDHCP OFFER/ACK: no yiaddr, flint as server
// identifier and next-server, option 60 PXEClient (how firmware recognises a
// proxy offer), and option 43 telling it to boot the file without boot-server
// discovery.
func (s *Server) proxyReply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, dec BootDecision) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(s.addr))),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorPXEClient)),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
		withBoot(dec), // replaces option 60 with HTTPClient for UEFI HTTP boot
	}
	if typ == dhcpv4.MessageTypeAck {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	return newReply(req, mods...) // yiaddr stays 0.0.0.0: the other server hands out addresses
}
