package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// handleFull is full mode: flint is the DHCP server of cfg.DHCP.SubnetPrefix
// (RFC 2131).
func (s *Server) handleFull(req *dhcpv4.DHCPv4, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	ci := readClient(req)
	if giaddr, ok := addrOf(req.GatewayIPAddr); ok && !s.cfg.DHCP.SubnetPrefix.Contains(giaddr) {
		// Addresses from our subnet would be useless on the relay's.
		log.Debug("ignored: relayed from a subnet flint does not serve", "giaddr", giaddr)
		return nil, nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return s.fullDiscover(req, ci, peer, log)
	case dhcpv4.MessageTypeRequest:
		return s.fullRequest(req, ci, peer, log)
	case dhcpv4.MessageTypeRelease:
		s.fullRelease(req, ci, peer, log)
	case dhcpv4.MessageTypeDecline:
		s.fullDecline(req, ci, peer, log)
	case dhcpv4.MessageTypeInform:
		return s.fullInform(req, ci, peer, log)
	default:
		log.Debug("ignored: not a message a server answers")
	}
	return nil, nil
}

func (s *Server) fullDiscover(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	now := s.now()
	mac := ci.mac
	m, known := s.machine(ci.MAC)
	var ip netip.Addr
	if known {
		ip = m.IPAddr
	} else {
		if s.cfg.DHCP.Pool == nil {
			s.complain(log, "no pool "+mac, slog.LevelInfo, "no address for an unknown machine: it is not in the config and dhcp.pool is not set (logged once a minute)")
			s.record(ci, netip.Addr{}, "dhcp DISCOVER (ignored: unknown machine, no pool)")
			return nil, nil
		}
		requested, _ := addrOf(req.RequestedIPAddress())
		var ok bool
		if ip, ok = s.alloc.offer(mac, requested, now); !ok {
			s.complain(log, "pool full "+mac, slog.LevelWarn, "no address for an unknown machine: dhcp.pool is exhausted (logged once a minute)", "pool", s.cfg.DHCP.Pool.Start+"-"+s.cfg.DHCP.Pool.End)
			s.record(ci, netip.Addr{}, "dhcp DISCOVER (ignored: pool exhausted)")
			return nil, nil
		}
	}
	dec := s.decide(ci, m)
	reply := s.leaseReply(req, dhcpv4.MessageTypeOffer, ip, m, dec)
	if log.enabled(slog.LevelInfo) { // the arguments alone cost allocations per packet
		log.Info("dhcp offer", "ip", ip, "file", dec.File, "boot", dec.Reason)
	}
	s.record(ci, ip, "dhcp OFFER")
	return reply, clientDest(req, peer, false)
}

// fullRequest tells the client states of RFC 2131 4.3.2 apart by option 54,
// option 50 and ciaddr.
func (s *Server) fullRequest(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	mac := ci.mac
	m, _ := s.machine(ci.MAC)
	serverID, hasServerID := addrOf(req.ServerIdentifier())
	requested, hasRequested := addrOf(req.RequestedIPAddress())
	ciaddr, hasCiaddr := addrOf(req.ClientIPAddr)

	switch {
	case hasServerID && serverID != s.addr:
		// SELECTING another server's offer: ours is free again.
		s.alloc.dropHold(mac)
		log.Debug("client chose another DHCP server", "server", serverID)
		return nil, nil

	case hasServerID: // SELECTING our offer
		ip := requested
		if !hasRequested {
			ip = ciaddr // not allowed by RFC 2131, but seen in the wild
		}
		if !ip.IsValid() {
			log.Debug("ignored: REQUEST for our offer without a requested address")
			return nil, nil
		}
		if !s.alloc.belongsTo(mac, ip, s.now()) {
			return s.nak(req, ci, peer, ip, "address not offered to this client", log)
		}
		return s.ack(req, ci, peer, ip, m, log)

	case hasCiaddr: // RENEWING (unicast) or REBINDING (broadcast)
		if !s.alloc.belongsTo(mac, ciaddr, s.now()) {
			return s.nak(req, ci, peer, ciaddr, "address not leased to this client", log)
		}
		return s.ack(req, ci, peer, ciaddr, m, log)

	case hasRequested: // INIT-REBOOT: the client wants its old address back
		if !s.cfg.DHCP.SubnetPrefix.Contains(requested) {
			return s.nak(req, ci, peer, requested, "address is not in subnet "+s.cfg.DHCP.SubnetPrefix.String(), log)
		}
		switch v, why := s.alloc.judge(mac, requested, s.now()); v {
		case verdictOwned:
			return s.ack(req, ci, peer, requested, m, log)
		case verdictTaken, verdictWrong:
			return s.nak(req, ci, peer, requested, why, log)
		default:
			log.Debug("INIT-REBOOT from a client flint has no record of: staying silent (RFC 2131 4.3.2)", "requested", requested)
			s.record(ci, netip.Addr{}, "dhcp REQUEST (ignored: no record of this client)")
			return nil, nil
		}
	}
	log.Debug("ignored: REQUEST with neither server identifier, requested address nor ciaddr")
	return nil, nil
}

// ack binds ip to the client, makes the lease durable, then answers. If the
// store fails there is no ACK: the client retries and nothing it was told is
// lost in a crash.
func (s *Server) ack(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, ip netip.Addr, m *config.Machine, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	now := s.now()
	mac := ci.mac
	l := store.Lease{IP: ip, MAC: mac, State: store.LeaseBound, Start: now, Expires: now.Add(s.cfg.DHCP.LeaseTime.Duration)}
	if m != nil {
		l.Hostname = m.Hostname
	}
	undo, previous, ok := s.alloc.bind(l, now)
	if !ok { // lost a race since the check: someone else has it now
		return s.nak(req, ci, peer, ip, "address is no longer available", log)
	}
	if err := s.st.PutLease(l); err != nil {
		undo()
		log.Error("lease not saved, no ACK sent (the client will retry)", "ip", ip, "err", err)
		return nil, nil
	}
	if previous.IsValid() {
		if err := s.st.DeleteLease(previous); err != nil {
			log.Warn("delete the client's previous lease", "ip", previous, "err", err)
		} else {
			s.alloc.forget(mac, previous)
		}
	}
	dec := s.decide(ci, m)
	reply := s.leaseReply(req, dhcpv4.MessageTypeAck, ip, m, dec)
	if log.enabled(slog.LevelInfo) {
		log.Info("dhcp ack", "ip", ip, "file", dec.File, "boot", dec.Reason, "expires", l.Expires.Format("15:04:05"))
	}
	// The address the machine took from DHCP: the lifecycle trusts requests
	// from it as the machine's own.
	sg := s.sighting(ci, ip, "dhcp ACK")
	sg.DHCPAddr = true
	s.recordSighting(sg, ci.MAC)
	return reply, clientDest(req, peer, false)
}

// nakMessage is what a NAK tells the client (option 56). It is broadcast, so
// it never names who holds the address; flint's log does.
const nakMessage = "the requested address is not available to this client"

func (s *Server) nak(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, ip netip.Addr, why string, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	reply := newReply(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(s.addr))),
		dhcpv4.WithOption(dhcpv4.OptMessage(nakMessage)),
	)
	if _, relayed := addrOf(req.GatewayIPAddr); relayed {
		reply.SetBroadcast() // the relay must broadcast it: the client's address is wrong
	}
	log.Info("dhcp nak", "ip", ip, "reason", why)
	s.record(ci, netip.Addr{}, "dhcp NAK")
	return reply, clientDest(req, peer, true)
}

// fullRelease frees a client's lease when the client itself says so (RFC
// 2131 4.4.6). Anyone can put any chaddr and ciaddr in a packet, so the
// RELEASE counts only if it was sent from the leased address itself (or
// forwarded by the relay it names): a spoofed RELEASE would otherwise drop a
// machine's lease, and with it the lifecycle's proof of which address the
// machine is at. A config machine's reservation is never dropped at all: the
// address is that machine's alone, and a sender address is easy to forge too.
func (s *Server) fullRelease(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, log pktLog) {
	mac := ci.mac
	ip, ok := addrOf(req.ClientIPAddr)
	if serverID, has := addrOf(req.ServerIdentifier()); has && serverID != s.addr {
		log.Debug("ignored: RELEASE for another server", "server", serverID)
		return
	}
	if !ok || !s.alloc.boundTo(mac, ip) {
		if !s.tampered(log, ci, "RELEASE", fmt.Sprintf("of %s from %s, which it does not hold", ip, peerAddr(peer)), "ip", ip, "peer", peer) {
			log.Debug("ignored: RELEASE of an address not leased to this client", "ip", ip, "peer", peer)
		}
		return
	}
	if !sentFrom(req, peer, ip, false) {
		if !s.tampered(log, ci, "RELEASE", fmt.Sprintf("of %s sent from %s, not from the leased address", ip, peerAddr(peer)), "ip", ip, "peer", peer) {
			s.complain(log, "release spoofed "+mac, slog.LevelWarn, "ignored: RELEASE of a lease not sent from the leased address (spoofed?); lease kept (logged once a minute)",
				"ip", ip, "peer", peer)
		}
		return
	}
	if s.alloc.isReservation(mac, ip) {
		log.Info("dhcp release of a reserved address: lease kept (the address is the machine's alone)", "ip", ip)
		s.record(ci, ip, "dhcp RELEASE (reserved address kept)")
		return
	}
	if err := s.st.DeleteLease(ip); err != nil {
		log.Warn("delete released lease", "ip", ip, "err", err)
		return
	}
	s.alloc.forget(mac, ip)
	log.Info("dhcp release", "ip", ip)
	s.record(ci, ip, "dhcp RELEASE")
}

// fullDecline quarantines a pool address a client found in use by another
// host (RFC 2131 4.4.4). It counts only for an address offered or leased to
// that chaddr, and only if sent by a client without an address (0.0.0.0, as
// RFC 2131 has it), from the declined address itself, or by the relay it
// names: not from some other host's address.
func (s *Server) fullDecline(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, log pktLog) {
	ip, ok := addrOf(req.RequestedIPAddress())
	if !ok {
		log.Debug("ignored: DECLINE without a requested address (option 50)")
		return
	}
	if !sentFrom(req, peer, ip, true) {
		if !s.tampered(log, ci, "DECLINE", fmt.Sprintf("of %s sent from %s, another host's address", ip, peerAddr(peer)), "ip", ip, "peer", peer) {
			s.complain(log, "decline spoofed "+ci.mac, slog.LevelWarn, "ignored: DECLINE sent from another host's address (spoofed?) (logged once a minute)",
				"ip", ip, "peer", peer)
		}
		return
	}
	if m, known := s.machine(ci.MAC); known && ip == m.IPAddr {
		// A reservation only ever goes to this machine: quarantining it helps
		// nobody. Someone has to find the host squatting on it.
		log.Warn("a machine's reserved address is in use by another host (DECLINE): find and reconfigure that host",
			"ip", ip, "hostname", m.Hostname)
		s.record(ci, ip, "dhcp DECLINE (reserved address in use by another host)")
		return
	}
	l, ok := s.alloc.decline(ci.mac, ip, s.now())
	if !ok {
		log.Debug("ignored: DECLINE of an address not offered or leased to this client", "ip", ip)
		return
	}
	if err := s.st.PutLease(l); err != nil {
		log.Warn("persist declined address (it stays quarantined until restart)", "ip", ip, "err", err)
	}
	log.Warn("address declined: another host uses it; quarantined", "ip", ip, "until", l.Expires.Format("15:04:05"))
	s.record(ci, netip.Addr{}, "dhcp DECLINE")
}

// sentFrom reports whether a packet about ip came from ip itself, from the
// relay it names (giaddr, which forwards from its own address), or, with
// unaddressed, from a client without an address (0.0.0.0). No known sender
// (peer nil) is no.
func sentFrom(req *dhcpv4.DHCPv4, peer *net.UDPAddr, ip netip.Addr, unaddressed bool) bool {
	if peer == nil {
		return false
	}
	src, ok := netip.AddrFromSlice(peer.IP.To4())
	if !ok {
		return false
	}
	if src == ip {
		return true
	}
	if giaddr, relayed := addrOf(req.GatewayIPAddr); relayed && src == giaddr {
		return true
	}
	return unaddressed && src.IsUnspecified()
}

// fullInform answers a client that configured its address itself: options
// only, no address and no lease (RFC 2131 3.4).
func (s *Server) fullInform(req *dhcpv4.DHCPv4, ci clientInfo, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	ciaddr, ok := addrOf(req.ClientIPAddr)
	_, relayed := addrOf(req.GatewayIPAddr)
	if !ok || (!relayed && !s.cfg.DHCP.SubnetPrefix.Contains(ciaddr)) {
		log.Debug("ignored: INFORM without an address in our subnet", "ciaddr", ciaddr)
		return nil, nil
	}
	m, _ := s.machine(ci.MAC)
	dec := s.decide(ci, m)
	reply := s.leaseReply(req, dhcpv4.MessageTypeAck, netip.Addr{}, m, dec)
	log.Info("dhcp ack (inform)", "ip", ciaddr, "file", dec.File)
	s.record(ci, ciaddr, "dhcp ACK (INFORM)")
	return reply, clientDest(req, peer, false)
}

// leaseReply builds a full-mode OFFER or ACK. Without yiaddr (INFORM) it
// carries no lease times.
func (s *Server) leaseReply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr netip.Addr, m *config.Machine, dec BootDecision) *dhcpv4.DHCPv4 {
	reply := newReply(req)
	reply.YourIPAddr = ipOf(yiaddr)
	opts := &s.replyOpts
	switch typ {
	case dhcpv4.MessageTypeOffer:
		setOptions(reply, opts.offer)
	case dhcpv4.MessageTypeAck:
		setOptions(reply, opts.ack)
		reply.ClientIPAddr = req.ClientIPAddr
	default:
		reply.UpdateOption(dhcpv4.OptMessageType(typ))
	}
	setOptions(reply, opts.common...)
	if m != nil && m.Hostname != "" {
		reply.UpdateOption(dhcpv4.OptHostName(m.Hostname))
	}
	if yiaddr.IsValid() {
		setOptions(reply, opts.times...)
	}
	if dec.Boots() {
		// PXE firmware expects its UUID (option 97) back.
		withBoot(dec)(reply)
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier)(reply)
	}
	return reply
}

func peerAddr(p *net.UDPAddr) string {
	if p == nil {
		return "an unknown address"
	}
	return p.IP.String()
}
