package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// fullReq is one full-mode request with what it is answered as: the subnet
// (and its address book) and the machine of the config, if any.
type fullReq struct {
	req   *dhcpv4.DHCPv4
	ci    clientInfo
	peer  *net.UDPAddr
	log   pktLog
	relay relayInfo
	sub   *config.Subnet
	opts  *replyOptions
	a     *allocator
	m     *config.Machine // nil: a client the config does not know
	by    string          // how m was chosen: ByMAC, BySlot, ByLease
}

// res is the reservation of the request's machine (invalid for a client the
// config does not know).
func (r *fullReq) res() netip.Addr {
	if r.m == nil {
		return netip.Addr{}
	}
	return r.m.IPAddr
}

// fullRequestOf picks the subnet and the machine a request is answered as
// (SelectSubnet, SelectMachine), each candidate looked up by key, into r;
// false: no answer.
func (s *Server) fullRequestOf(r *fullReq, req *dhcpv4.DHCPv4, peer *net.UDPAddr, log pktLog) bool {
	*r = fullReq{req: req, ci: readClient(req), peer: peer, log: log, relay: readRelay(req)}
	q := SubnetQuery{GIAddr: r.relay.GIAddr, ByGIAddr: -1, ByCIAddr: -1, Local: -1}
	if r.relay.GIAddr.IsValid() {
		q.ByGIAddr, _ = s.cfg.SubnetIndexOf(r.relay.GIAddr)
	} else if ciaddr, ok := addrOf(req.ClientIPAddr); ok {
		q.CIAddr = ciaddr
		q.ByCIAddr, _ = s.cfg.SubnetIndexOf(ciaddr)
	}
	q.Local, _ = s.cfg.LocalSubnet()
	sc := SelectSubnet(q)
	if sc.Index < 0 {
		if sc.Relayed {
			// A relay flint has no subnet for: addresses from another subnet
			// would be useless there. Every packet of it would say so.
			s.complain(log, "giaddr "+r.relay.GIAddr.String(), slog.LevelWarn,
				"ignored: "+sc.Reason+": add the relay's subnet to dhcp.subnets, or point the relay elsewhere (logged once a minute per relay)",
				"giaddr", r.relay.GIAddr)
		} else {
			log.Debug("ignored: " + sc.Reason)
		}
		return false
	}
	r.sub, r.opts, r.a = &s.cfg.DHCP.Networks[sc.Index], &s.replyOpts[sc.Index], s.allocs[sc.Index]

	mq := MachineQuery{Relay: r.relay, Subnet: r.sub.Prefix}
	mq.ByMAC, _ = s.machine(r.ci.MAC)
	if r.relay.Option82 {
		mq.BySlot, _ = s.cfg.MachineBySlot(r.relay.CircuitID, r.relay.RemoteID)
	}
	if mq.ByMAC == nil && mq.BySlot == nil {
		if ip, ok := r.a.reservedLease(r.ci.mac, s.now()); ok {
			mq.ByLease, _ = s.cfg.MachineByIP(ip)
		}
	}
	mc := SelectMachine(mq)
	if mc.Refuse != "" {
		s.complain(log, "refuse "+r.ci.mac, slog.LevelWarn, "ignored: "+mc.Refuse+" (logged once a minute)", "relay", r.relay.detail())
		// On the timeline of the machine it is about: its MAC's, else its port's.
		if r.m, r.by = mq.ByMAC, ByMAC; r.m == nil {
			r.m, r.by = mq.BySlot, BySlot
		}
		if r.m != nil {
			s.note(r, netip.Addr{}, "dhcp "+req.MessageType().String()+" (ignored)", mc.Refuse)
		}
		return false
	}
	r.m, r.by = mc.Machine, mc.By
	return true
}

// note puts an exchange on the timeline of the request's machine: the
// config machine it was answered as (whichever box it was, the box's MAC in
// the detail), else the client's MAC. A relayed request notes its relay and
// option 82.
func (s *Server) note(r *fullReq, ip netip.Addr, event string, detail ...string) {
	s.recordFull(r, s.sighting(r.ci, ip, event), detail...)
}

func (s *Server) recordFull(r *fullReq, sg store.Sighting, detail ...string) {
	parts := detail
	if r.m != nil && r.m.MAC != r.ci.mac {
		sg.MAC = r.m.MAC
		parts = append(parts, fmt.Sprintf("box %s, chosen by its %s", r.ci.mac, r.by))
	}
	if d := r.relay.detail(); d != "" {
		parts = append(parts, d)
	}
	sg.Detail = strings.Join(parts, "; ")
	s.recordSightingOf(sg, r.m != nil || s.known(r.ci.MAC))
}
