package dhcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

// FuzzHandleRelayed is FuzzHandleFull on several subnets (relayYAML): three
// subnets, a machine chosen by its relay port. Whatever arrives, a reply is
// well-formed and sent to the relay, ciaddr, the sender or broadcast; an
// address handed out lies in the subnet the request is answered from and is
// the client's (its reservation, or its port's); every subnet's book stays
// its own and agrees with the store.
//
//	go test -run '^$' -fuzz FuzzHandleRelayed -fuzztime 30s ./dhcp/
//
// The prelude leased the rack pool's first address through the relay at
// 198.18.1.1 to macN(1), rack1's reservation to its box, bench7's to a box
// in port slot7 (02:00:00:00:99:01), and a local pool address to macN(2).
func FuzzHandleRelayed(f *testing.F) {
	for _, sd := range relaySeeds() {
		f.Add(sd.pkt.bytes(), addrU32(sd.peer), sd.later)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, peer uint32, later uint16) {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			return
		}
		st := newMemStore()
		s, c, _ := relayServer(t, st)
		relayPrelude(t, s)
		from := fuzzPeer(peer, 68)
		for round := range 2 {
			if round == 1 {
				c.Advance(time.Duration(later) * time.Second)
			}
			reply, dst := s.handle(req, from, viaDHCP)
			checkReply(t, req, from, reply, dst)
			checkRelayedReply(t, s, req, reply)
			checkBooks(t, s, st, c.Now())
		}
	})
}

const slotBox = "02:00:00:00:99:01"

func relayPrelude(t *testing.T, s *Server) {
	t.Helper()
	rackGW, slotGW := a4("198.18.1.1"), a4("198.18.2.1")
	doraVia := func(mac string, giaddr netip.Addr, mods ...dhcpv4.Modifier) netip.Addr {
		mods = append(mods, relayedBy(giaddr))
		offer, _ := viaRelay(t, s, packet(mac, dhcpv4.MessageTypeDiscover, mods...))
		wantType(t, offer, dhcpv4.MessageTypeOffer)
		ack, _ := viaRelay(t, s, packet(mac, dhcpv4.MessageTypeRequest, append(mods, serverID(flintIP), requested(yiaddr(offer)))...))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		return yiaddr(ack)
	}
	if ip := doraVia(macN(1), rackGW); ip != a4("198.18.1.100") {
		t.Fatalf("prelude: %s got %s", macN(1), ip)
	}
	if ip := doraVia("02:00:c6:12:01:0b", rackGW, opt82(1, "rack1")); ip != a4("198.18.1.11") {
		t.Fatalf("prelude: rack1 got %s", ip)
	}
	if ip := doraVia(slotBox, slotGW, opt82(1, "slot7")); ip != a4("198.18.2.17") {
		t.Fatalf("prelude: the box in slot7 got %s", ip)
	}
	if ip := dora(t, s, macN(2)); ip != a4("198.18.0.100") {
		t.Fatalf("prelude: %s got %s", macN(2), ip)
	}
}

// checkRelayedReply: an OFFER or ACK hands out an address of the subnet the
// request is answered from, and a machine of the config only its own.
func checkRelayedReply(t *testing.T, s *Server, req, reply *dhcpv4.DHCPv4) {
	t.Helper()
	if reply == nil {
		return
	}
	ip, has := addrOf(reply.YourIPAddr)
	if !has {
		return
	}
	var from netip.Addr
	if g, ok := addrOf(req.GatewayIPAddr); ok {
		from = g
	} else if c, ok := addrOf(req.ClientIPAddr); ok {
		from = c
	} else {
		from = flintIP
	}
	want, _ := s.cfg.SubnetIndexOf(from)
	if got, ok := s.cfg.SubnetIndexOf(ip); !ok || got != want {
		t.Fatalf("%s of %s, answering a request from the subnet of %s", reply.MessageType(), ip, from)
	}
	if m, known := s.machine(req.ClientHWAddr); known && ip != m.IPAddr {
		t.Fatalf("%s of %s to %s, whose reservation is %s", reply.MessageType(), ip, m.Hostname, m.IPAddr)
	}
	if m, reserved := s.cfg.MachineByIP(ip); reserved {
		if _, known := s.machine(req.ClientHWAddr); !known && m.Relay == nil {
			t.Fatalf("%s of %s (reserved for %s) to a stranger %s", reply.MessageType(), ip, m.Hostname, req.ClientHWAddr)
		}
	}
}

// checkBooks: each subnet's book holds only its own addresses, no address is
// bound to two MACs, a reservation is bound only as its machine, and the
// store holds what the books hold.
func checkBooks(t *testing.T, s *Server, st *memStore, now time.Time) {
	t.Helper()
	total := 0
	for i, a := range s.allocs {
		prefix := s.cfg.DHCP.Networks[i].Prefix
		a.mu.Lock()
		for ip, l := range a.leases {
			total++
			if !prefix.Contains(ip) || l.IP != ip {
				a.mu.Unlock()
				t.Fatalf("subnet %s's book holds a lease of %s under %s", prefix, l.IP, ip)
			}
			if m, reserved := s.cfg.MachineByIP(ip); reserved && l.State == store.LeaseBound && l.Expires.After(now) &&
				l.MAC != m.MAC && (m.Relay == nil || l.Hostname != m.Hostname) {
				a.mu.Unlock()
				t.Fatalf("%s, reserved for %s, bound to %s (%+v)", ip, m.Hostname, l.MAC, l)
			}
			if stored, ok := st.lease(ip); !ok || stored != l {
				a.mu.Unlock()
				t.Fatalf("book has %+v, store %+v", l, stored)
			}
		}
		for mac, ip := range a.leaseOf {
			if l := a.leases[ip]; l.MAC != mac || l.State != store.LeaseBound {
				a.mu.Unlock()
				t.Fatalf("subnet %s: %s indexed at %s, which is %+v", prefix, mac, ip, l)
			}
		}
		a.mu.Unlock()
	}
	if stored, _ := st.Leases(); len(stored) != total {
		t.Fatalf("the store has %d leases, the books %d", len(stored), total)
	}
}

// relaySeeds: packets as relays and clients behind them send them, against
// the prelude of FuzzHandleRelayed.
func relaySeeds() []fuzzSeed {
	const (
		flint, rackGW, slotGW, strayGW = "198.18.0.1", "198.18.1.1", "198.18.2.1", "198.18.9.1"
		rackIP, benchIP, pooled        = "198.18.1.11", "198.18.2.17", "198.18.1.100"
		newMAC                         = "02:00:c6:12:01:04"
	)
	sid := func(ip string) []byte { return optIP(54, ip) }
	want := func(ip string) []byte { return optIP(50, ip) }
	via := func(p rawPkt, giaddr string, o82 ...byte) rawPkt {
		p.giaddr, p.hops = netip.MustParseAddr(giaddr), 1
		if o82 != nil {
			p.opts = append(p.opts, opt(82, o82...))
		}
		return p
	}
	port := func(name string) []byte { return append([]byte{1, byte(len(name))}, name...) }
	return []fuzzSeed{
		{"rack-known-discover", via(pxeUEFI("02:00:c6:12:01:0b", 7, dhcpv4.MessageTypeDiscover), rackGW, port("rack1")...), flint, 0, false},
		{"rack-known-request", via(pxeUEFI("02:00:c6:12:01:0b", 7, dhcpv4.MessageTypeRequest, sid(flint), want(rackIP)), rackGW, port("rack1")...), flint, 0, false},
		{"rack-unknown-discover", via(dhclient(newMAC, dhcpv4.MessageTypeDiscover), rackGW), flint, 0, false},
		{"rack-unknown-asks-bench7", via(dhclient(newMAC, dhcpv4.MessageTypeRequest, want(benchIP)), rackGW), flint, 0, false},
		{"rack-pool-renew-direct", withCiaddr(dhclient(macN(1), dhcpv4.MessageTypeRequest), pooled), pooled, 3000, false},
		{"slot-box-discover", via(pxeUEFI(slotBox, 7, dhcpv4.MessageTypeDiscover), slotGW, port("slot7")...), flint, 0, false},
		{"slot-new-box-request", via(pxeUEFI(newMAC, 7, dhcpv4.MessageTypeRequest, want(benchIP)), slotGW, port("slot7")...), flint, 0, false},
		{"slot-box-renew-direct", withCiaddr(dhclient(slotBox, dhcpv4.MessageTypeRequest), benchIP), benchIP, 3601, false},
		{"slot-box-other-port", via(dhclient(slotBox, dhcpv4.MessageTypeDiscover), slotGW, port("slot8")...), flint, 0, false},
		{"slot-known-mac-conflict", via(pxeBIOS(nuc1MAC, dhcpv4.MessageTypeDiscover), slotGW, port("slot7")...), flint, 0, false},
		{"slot-box-release", withCiaddr(dhclient(slotBox, dhcpv4.MessageTypeRelease, sid(flint)), benchIP), benchIP, 0, false},
		{"slot-box-decline", via(dhclient(slotBox, dhcpv4.MessageTypeDecline, want(benchIP), sid(flint)), slotGW, port("slot7")...), slotGW, 0, false},
		{"forged-option-82-no-giaddr", func() rawPkt {
			p := pxeUEFI(newMAC, 7, dhcpv4.MessageTypeDiscover)
			p.opts = append(p.opts, opt(82, port("slot7")...))
			return p
		}(), "0.0.0.0", 0, false},
		{"malformed-option-82", via(dhclient(newMAC, dhcpv4.MessageTypeDiscover), slotGW, 1, 9, 's'), flint, 0, false},
		{"stray-relay", via(dhclient(newMAC, dhcpv4.MessageTypeDiscover), strayGW), flint, 0, false},
		{"local-request-for-rack-address", dhclient(newMAC, dhcpv4.MessageTypeRequest, want(pooled)), "0.0.0.0", 0, false},
		{"inform-remote", withCiaddr(dhclient(newMAC, dhcpv4.MessageTypeInform), "198.18.1.42"), "198.18.1.42", 0, false},
	}
}
