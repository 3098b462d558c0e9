package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

// handleFull is full mode: flint is the DHCP server of the subnets in
// cfg.DHCP.Networks (RFC 2131), its own segment's and those behind relays.
func (s *Server) handleFull(req *dhcpv4.DHCPv4, peer *net.UDPAddr, log pktLog) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	var r fullReq // on the stack: no allocation per packet
	if !s.fullRequestOf(&r, req, peer, log) {
		return nil, nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return s.fullDiscover(&r)
	case dhcpv4.MessageTypeRequest:
		return s.fullRequest(&r)
	case dhcpv4.MessageTypeRelease:
		s.fullRelease(&r)
	case dhcpv4.MessageTypeDecline:
		s.fullDecline(&r)
	case dhcpv4.MessageTypeInform:
		return s.fullInform(&r)
	default:
		log.Debug("ignored: not a message a server answers")
	}
	return nil, nil
}

func (s *Server) fullDiscover(r *fullReq) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	now := s.now()
	ci, log, m := r.ci, r.log, r.m
	mac := ci.mac
	var ip netip.Addr
	if m != nil {
		ip = m.IPAddr
	} else {
		pool := r.sub.Pool
		if pool == nil {
			s.complain(log, "no pool "+mac, slog.LevelInfo, "no address for an unknown machine: it is not in the config and its subnet has no pool (logged once a minute)", "subnet", r.sub.Prefix)
			s.note(r, netip.Addr{}, "dhcp DISCOVER (ignored: unknown machine, no pool)")
			return nil, nil
		}
		requested, _ := addrOf(r.req.RequestedIPAddress())
		var ok bool
		if ip, ok = s.offerClaimed(r, requested, now); !ok {
			return nil, nil
		}
	}
	dec := s.decide(ci, m)
	reply := s.leaseReply(r, dhcpv4.MessageTypeOffer, ip, dec)
	if log.enabled(slog.LevelInfo) { // the arguments alone cost allocations per packet
		log.Info("dhcp offer", "ip", ip, "file", dec.File, "boot", dec.Reason, "relay", r.relay.detail())
	}
	s.note(r, ip, "dhcp OFFER")
	return reply, clientDest(r.req, r.peer, false)
}

// fullRequest tells the client states of RFC 2131 4.3.2 apart by option 54,
// option 50 and ciaddr.
func (s *Server) fullRequest(r *fullReq) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	req, log, mac, res := r.req, r.log, r.ci.mac, r.res()
	serverID, hasServerID := addrOf(req.ServerIdentifier())
	requested, hasRequested := addrOf(req.RequestedIPAddress())
	ciaddr, hasCiaddr := addrOf(req.ClientIPAddr)

	switch {
	case hasServerID && serverID != s.addr:
		// SELECTING another server's offer: ours is free again.
		s.dropOffer(r, requested)
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
		if !r.a.belongsTo(mac, ip, res, s.now()) {
			return s.nak(r, ip, "address not offered to this client")
		}
		return s.ack(r, ip)

	case hasCiaddr: // RENEWING (unicast) or REBINDING (broadcast)
		s.learn(r, ciaddr)
		if !r.a.belongsTo(mac, ciaddr, res, s.now()) {
			return s.nak(r, ciaddr, "address not leased to this client")
		}
		return s.ack(r, ciaddr)

	case hasRequested: // INIT-REBOOT: the client wants its old address back
		if !r.sub.Prefix.Contains(requested) {
			return s.nak(r, requested, "address is not in subnet "+r.sub.Prefix.String())
		}
		s.learn(r, requested)
		switch v, why := r.a.judge(mac, requested, res, s.now()); v {
		case verdictOwned:
			return s.ack(r, requested)
		case verdictTaken, verdictWrong:
			return s.nak(r, requested, why)
		default:
			log.Debug("INIT-REBOOT from a client flint has no record of: staying silent (RFC 2131 4.3.2)", "requested", requested)
			s.note(r, netip.Addr{}, "dhcp REQUEST (ignored: no record of this client)")
			return nil, nil
		}
	}
	log.Debug("ignored: REQUEST with neither server identifier, requested address nor ciaddr")
	return nil, nil
}

// ack binds ip to the client, makes the lease durable, then answers. If the
// store fails there is no ACK: the client retries and nothing it was told is
// lost in a crash.
func (s *Server) ack(r *fullReq, ip netip.Addr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	now := s.now()
	ci, log, m := r.ci, r.log, r.m
	mac := ci.mac
	l := store.Lease{IP: ip, MAC: mac, State: store.LeaseBound, Start: now, Expires: now.Add(s.cfg.DHCP.LeaseTime.Duration)}
	if m != nil {
		l.Hostname = m.Hostname
	}
	until, renewal := r.a.boundUntil(mac, ip, now)
	undo, previous, ok := r.a.bind(l, r.res(), now)
	if !ok { // lost a race since the check: someone else has it now
		return s.nak(r, ip, "address is no longer available")
	}
	reply, dest, done, fromCache := s.persistLease(r, l, renewal, undo)
	if done {
		return reply, dest
	}
	if fromCache {
		// Not committed: the client keeps what the store holds, until the
		// lease it had; never longer, or another instance could hand the
		// address out once the store answers again.
		l.Expires = until
	}
	if previous.IsValid() {
		if err := s.st.DeleteLease(previous); err != nil {
			log.Warn("delete the client's previous lease", "ip", previous, "err", err)
		} else {
			r.a.forget(mac, previous)
		}
	}
	dec := s.decide(ci, m)
	reply = s.leaseReply(r, dhcpv4.MessageTypeAck, ip, dec)
	if fromCache {
		withLeaseTime(reply, until.Sub(now))
	}
	if log.enabled(slog.LevelInfo) {
		log.Info("dhcp ack", "ip", ip, "file", dec.File, "boot", dec.Reason, "expires", l.Expires.Format("15:04:05"), "relay", r.relay.detail())
	}
	// The address the machine took from DHCP: the lifecycle trusts requests
	// from it as the machine's own.
	sg := s.sighting(ci, ip, "dhcp ACK")
	sg.DHCPAddr = true
	s.recordFull(r, sg)
	return reply, clientDest(r.req, r.peer, false)
}

// nakMessage is what a NAK tells the client (option 56). It is broadcast, so
// it never names who holds the address; flint's log does.
const nakMessage = "the requested address is not available to this client"

func (s *Server) nak(r *fullReq, ip netip.Addr, why string) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	req := r.req
	reply := newReply(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(s.addr))),
		dhcpv4.WithOption(dhcpv4.OptMessage(nakMessage)),
	)
	if _, relayed := addrOf(req.GatewayIPAddr); relayed {
		reply.SetBroadcast() // the relay must broadcast it: the client's address is wrong
	}
	r.log.Info("dhcp nak", "ip", ip, "reason", why, "relay", r.relay.detail())
	s.note(r, netip.Addr{}, "dhcp NAK")
	return reply, clientDest(req, r.peer, true)
}

// fullRelease frees a client's lease when the client itself says so (RFC
// 2131 4.4.6). Anyone can put any chaddr and ciaddr in a packet, so the
// RELEASE counts only if it was sent from the leased address itself (or
// forwarded by the relay it names): a spoofed RELEASE would otherwise drop a
// machine's lease, and with it the lifecycle's proof of which address the
// machine is at. A config machine's reservation is never dropped at all: the
// address is that machine's alone, and a sender address is easy to forge too.
func (s *Server) fullRelease(r *fullReq) {
	req, ci, peer, log := r.req, r.ci, r.peer, r.log
	mac := ci.mac
	ip, ok := addrOf(req.ClientIPAddr)
	if serverID, has := addrOf(req.ServerIdentifier()); has && serverID != s.addr {
		log.Debug("ignored: RELEASE for another server", "server", serverID)
		return
	}
	if !ok || !r.a.boundTo(mac, ip) {
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
	if ip == r.res() {
		log.Info("dhcp release of a reserved address: lease kept (the address is the machine's alone)", "ip", ip)
		s.note(r, ip, "dhcp RELEASE (reserved address kept)")
		return
	}
	if err := s.st.DeleteLease(ip); err != nil {
		log.Warn("delete released lease", "ip", ip, "err", err)
		return
	}
	r.a.forget(mac, ip)
	log.Info("dhcp release", "ip", ip)
	s.note(r, ip, "dhcp RELEASE")
}

// fullDecline quarantines a pool address a client found in use by another
// host (RFC 2131 4.4.4). It counts only for an address offered or leased to
// that chaddr, and only if sent by a client without an address (0.0.0.0, as
// RFC 2131 has it), from the declined address itself, or by the relay it
// names: not from some other host's address.
func (s *Server) fullDecline(r *fullReq) {
	req, ci, peer, log := r.req, r.ci, r.peer, r.log
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
	if m := r.m; m != nil && ip == m.IPAddr {
		// A reservation only ever goes to this machine: quarantining it helps
		// nobody. Someone has to find the host squatting on it.
		log.Warn("a machine's reserved address is in use by another host (DECLINE): find and reconfigure that host",
			"ip", ip, "hostname", m.Hostname)
		s.note(r, ip, "dhcp DECLINE (reserved address in use by another host)")
		return
	}
	l, ok := r.a.decline(ci.mac, ip, r.res(), s.now())
	if !ok {
		log.Debug("ignored: DECLINE of an address not offered or leased to this client", "ip", ip)
		return
	}
	if err := s.st.PutLease(l); err != nil {
		log.Warn("persist declined address (it stays quarantined until restart)", "ip", ip, "err", err)
	}
	log.Warn("address declined: another host uses it; quarantined", "ip", ip, "until", l.Expires.Format("15:04:05"))
	s.note(r, netip.Addr{}, "dhcp DECLINE")
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
func (s *Server) fullInform(r *fullReq) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	ciaddr, ok := addrOf(r.req.ClientIPAddr)
	if !ok || (!r.relay.GIAddr.IsValid() && !r.sub.Prefix.Contains(ciaddr)) {
		r.log.Debug("ignored: INFORM without an address in our subnet", "ciaddr", ciaddr)
		return nil, nil
	}
	dec := s.decide(r.ci, r.m)
	reply := s.leaseReply(r, dhcpv4.MessageTypeAck, netip.Addr{}, dec)
	r.log.Info("dhcp ack (inform)", "ip", ciaddr, "file", dec.File)
	s.note(r, ciaddr, "dhcp ACK (INFORM)")
	return reply, clientDest(r.req, r.peer, false)
}

// leaseReply builds a full-mode OFFER or ACK. Without yiaddr (INFORM) it
// carries no lease times.
func (s *Server) leaseReply(r *fullReq, typ dhcpv4.MessageType, yiaddr netip.Addr, dec BootDecision) *dhcpv4.DHCPv4 {
	req, m := r.req, r.m
	reply := newReply(req)
	reply.YourIPAddr = ipOf(yiaddr)
	opts := r.opts
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
