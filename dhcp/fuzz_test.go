package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

// The fuzz targets feed arbitrary bytes, parsed as serveOne parses them, to
// Server.handle with the in-memory store. The seed corpus (real packets of PXE
// and iPXE firmware, relays and plain clients) is in testdata/fuzz/; `go test`
// runs it as part of the suite. To fuzz:
//
//	go test -run '^$' -fuzz FuzzHandleFull -fuzztime 30s ./dhcp/
//	go test -run '^$' -fuzz FuzzHandleProxy -fuzztime 30s ./dhcp/

// Full-mode fuzz network: a pool of four addresses that the prelude leaves
// bound, held, quarantined and free.
const (
	fuzzPoolStart = "198.18.0.100"
	fuzzPoolEnd   = "198.18.0.103"
)

// FuzzHandleFull: whatever arrives, handle does not panic, a reply is a
// well-formed BOOTREPLY sent to the relay, ciaddr, the sender or broadcast,
// and no address is ever bound or offered to two MACs.
//
// Each input runs on a fresh server whose prelude leased an address to
// macN(1) and to nuc1 (its reservation), offered one to macN(2) and saw
// macN(3) decline one; the packet arrives from peer, then again `later`
// seconds after.
func FuzzHandleFull(f *testing.F) {
	cfg := testConfig(f, cfgOpts{poolStart: fuzzPoolStart, poolEnd: fuzzPoolEnd})
	f.Fuzz(func(t *testing.T, pkt []byte, peer uint32, later uint16) {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			return
		}
		st := newMemStore()
		s, c := newTestServer(t, cfg, st)
		fullPrelude(t, s)
		from := fuzzPeer(peer, 68)
		for round := range 2 {
			if round == 1 {
				c.Advance(time.Duration(later) * time.Second)
			}
			before := boundLeases(st, c.Now())
			reply, dst := s.handle(req, from, viaDHCP)
			checkReply(t, req, from, reply, dst)
			checkFullReply(t, s, req, reply, c.Now())
			checkFullState(t, s, st, c.Now())
			checkNoLeaseTaken(t, before, st, req, reply)
		}
	})
}

// FuzzHandleProxy: whatever arrives on either proxy-mode port, handle does not
// panic, a reply is a well-formed BOOTREPLY sent to the relay, ciaddr, the
// sender or broadcast, it never hands out an address, and nothing is leased.
func FuzzHandleProxy(f *testing.F) {
	cfg := testConfig(f, cfgOpts{mode: "proxy"})
	f.Fuzz(func(t *testing.T, pkt []byte, peer uint32, bootServer bool) {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			return
		}
		st := newMemStore()
		s, _ := newTestServer(t, cfg, st)
		via, port := viaDHCP, 68
		if bootServer {
			via, port = viaProxy, 4011
		}
		from := fuzzPeer(peer, port)
		reply, dst := s.handle(req, from, via)
		checkReply(t, req, from, reply, dst)
		if reply != nil {
			if !reply.YourIPAddr.IsUnspecified() {
				t.Fatalf("proxy reply hands out %s: the other DHCP server owns addresses", reply.YourIPAddr)
			}
			if reply.MessageType() == dhcpv4.MessageTypeNak {
				t.Fatal("proxy mode NAKed: that is the real DHCP server's call")
			}
		}
		if leases, _ := st.Leases(); len(leases) != 0 {
			t.Fatalf("proxy mode stored leases: %+v", leases)
		}
	})
}

func fuzzPeer(ip uint32, port int) *net.UDPAddr {
	return &net.UDPAddr{IP: binary.BigEndian.AppendUint32(nil, ip), Port: port}
}

// fullPrelude gives the fuzz server a state worth attacking.
func fullPrelude(t *testing.T, s *Server) {
	t.Helper()
	if ip := dora(t, s, macN(1)); ip != netip.MustParseAddr("198.18.0.100") {
		t.Fatalf("prelude: %s leased %s", macN(1), ip)
	}
	if ip := dora(t, s, nuc1MAC, pxe(7)); ip != nuc1IP {
		t.Fatalf("prelude: nuc1 leased %s", ip)
	}
	if ip := offerFor(t, s, macN(2)); ip != netip.MustParseAddr("198.18.0.101") {
		t.Fatalf("prelude: %s offered %s", macN(2), ip)
	}
	bad := offerFor(t, s, macN(3))
	exchange(t, s, packet(macN(3), dhcpv4.MessageTypeDecline, requested(bad), serverID(flintIP)))
}

// checkReply checks what makes a reply well-formed in either mode, and where
// it goes.
func checkReply(t *testing.T, req *dhcpv4.DHCPv4, peer *net.UDPAddr, reply *dhcpv4.DHCPv4, dst *net.UDPAddr) {
	t.Helper()
	if reply == nil {
		return
	}
	wire, err := dhcpv4.FromBytes(reply.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v\n%s", err, reply.Summary())
	}
	switch {
	case wire.OpCode != dhcpv4.OpcodeBootReply:
		t.Fatalf("reply op %s", wire.OpCode)
	case wire.TransactionID != req.TransactionID:
		t.Fatalf("reply xid %s, request %s", wire.TransactionID, req.TransactionID)
	case wire.ClientHWAddr.String() != req.ClientHWAddr.String():
		t.Fatalf("reply chaddr %s, request %s", wire.ClientHWAddr, req.ClientHWAddr)
	case !wire.GatewayIPAddr.Equal(req.GatewayIPAddr):
		t.Fatalf("reply giaddr %s, request %s", wire.GatewayIPAddr, req.GatewayIPAddr)
	case wire.ServerIdentifier().String() != flintIP.String():
		t.Fatalf("reply server identifier %s", wire.ServerIdentifier())
	}
	switch wire.MessageType() {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
	default:
		t.Fatalf("reply type %s", wire.MessageType())
	}
	if dst == nil {
		t.Fatal("a reply without a destination")
	}
	port := peer.Port
	ok := false
	if giaddr, relayed := addrOf(req.GatewayIPAddr); relayed {
		ok = dst.IP.Equal(ipOf(giaddr)) && dst.Port == dhcpv4.ServerPort
	}
	if ciaddr, has := addrOf(req.ClientIPAddr); has && dst.IP.Equal(ipOf(ciaddr)) && dst.Port == port {
		ok = true
	}
	if dst.IP.Equal(peer.IP) && dst.Port == peer.Port {
		ok = true
	}
	if dst.IP.Equal(net.IPv4bcast) && dst.Port == port {
		ok = true
	}
	if !ok {
		t.Fatalf("reply sent to %s: neither the relay, ciaddr, the sender %s nor broadcast\n%s", dst, peer, req.Summary())
	}
}

// checkFullReply: an OFFER or ACK names an address of the subnet that is the
// client's: held for it, leased to it, or its reservation.
func checkFullReply(t *testing.T, s *Server, req, reply *dhcpv4.DHCPv4, now time.Time) {
	t.Helper()
	if reply == nil {
		return
	}
	ip, has := addrOf(reply.YourIPAddr)
	if !has {
		if typ := reply.MessageType(); typ == dhcpv4.MessageTypeOffer || (typ == dhcpv4.MessageTypeAck && req.MessageType() != dhcpv4.MessageTypeInform) {
			t.Fatalf("%s without an address", typ)
		}
		return
	}
	if !s.cfg.DHCP.SubnetPrefix.Contains(ip) {
		t.Fatalf("%s of %s, outside the subnet", reply.MessageType(), ip)
	}
	mac := req.ClientHWAddr.String()
	a := s.allocs[0]
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, reserved := s.machine(req.ClientHWAddr); reserved && ip != m.IPAddr {
		r := m.IPAddr
		t.Fatalf("%s of %s to %s, whose reservation is %s", reply.MessageType(), ip, mac, r)
	}
	_, known := s.machine(req.ClientHWAddr)
	switch reply.MessageType() {
	case dhcpv4.MessageTypeAck:
		if l, ok := a.leases[ip]; !ok || l.State != store.LeaseBound || l.MAC != mac || !l.Expires.After(now) {
			t.Fatalf("ACK of %s to %s, but its lease is %+v", ip, mac, l)
		}
	case dhcpv4.MessageTypeOffer:
		if !known && a.holds[mac].ip != ip {
			t.Fatalf("OFFER of %s to %s, but the hold is %+v", ip, mac, a.holds[mac])
		}
	default:
		t.Fatalf("%s with yiaddr %s", reply.MessageType(), ip)
	}
}

// boundLeases maps each address leased until after now to its MAC.
func boundLeases(st *memStore, now time.Time) map[netip.Addr]string {
	leases, _ := st.Leases()
	out := map[netip.Addr]string{}
	for _, l := range leases {
		if l.State == store.LeaseBound && l.Expires.After(now) {
			out[l.IP] = l.MAC
		}
	}
	return out
}

// checkNoLeaseTaken: an address leased to one MAC (before the packet) is
// neither offered nor acked nor leased to another while the lease runs. Only
// its holder can give it up, so afterwards it is still its lease, or gone.
func checkNoLeaseTaken(t *testing.T, before map[netip.Addr]string, st *memStore, req, reply *dhcpv4.DHCPv4) {
	t.Helper()
	if reply != nil {
		if ip, ok := addrOf(reply.YourIPAddr); ok {
			if holder, leased := before[ip]; leased && holder != req.ClientHWAddr.String() {
				t.Fatalf("%s of %s to %s, leased to %s", reply.MessageType(), ip, req.ClientHWAddr, holder)
			}
		}
	}
	for ip, holder := range before {
		if l, ok := st.lease(ip); ok && l.State == store.LeaseBound && l.MAC != holder {
			t.Fatalf("%s, leased to %s, now leased to %s", ip, holder, l.MAC)
		}
	}
}

// checkFullState: no address is bound or offered to two MACs, reservations
// and flint's own addresses go to nobody else, and the store says what the
// allocator says.
func checkFullState(t *testing.T, s *Server, st *memStore, now time.Time) {
	t.Helper()
	a := s.allocs[0]
	a.mu.Lock()
	defer a.mu.Unlock()
	owner := map[netip.Addr]string{} // unexpired bound leases
	leasedTo := map[string]netip.Addr{}
	for ip, l := range a.leases {
		if l.IP != ip {
			t.Fatalf("lease of %s filed under %s", l.IP, ip)
		}
		if !l.Expires.After(now) {
			continue
		}
		if l.State != store.LeaseBound {
			if l.MAC != "" {
				t.Fatalf("quarantine record of %s names %s", ip, l.MAC)
			}
			continue
		}
		owner[ip] = l.MAC
		if prev, two := leasedTo[l.MAC]; two {
			t.Fatalf("%s holds two leases, %s and %s", l.MAC, prev, ip)
		}
		leasedTo[l.MAC] = ip
		if why := a.excluded[ip]; why != "" {
			t.Fatalf("%s (%s) leased to %s", ip, why, l.MAC)
		}
		if r := a.reservedBy[ip]; r != "" && r != l.MAC {
			t.Fatalf("%s, reserved for %s, leased to %s", ip, r, l.MAC)
		}
		if hw, err := net.ParseMAC(l.MAC); err != nil {
			t.Fatalf("lease of %s names %q", ip, l.MAC)
		} else if m, ok := s.machine(hw); ok && m.IPAddr != ip {
			t.Fatalf("%s, whose reservation is %s, leased %s", l.MAC, m.IPAddr, ip)
		}
	}
	for mac, h := range a.holds {
		if !h.until.After(now) {
			continue
		}
		if a.heldBy[h.ip] != mac {
			t.Fatalf("%s holds %s, which the index gives to %q", mac, h.ip, a.heldBy[h.ip])
		}
		if o, ok := owner[h.ip]; ok && o != mac {
			t.Fatalf("%s offered to %s while leased to %s", h.ip, mac, o)
		}
		if l, ok := a.leases[h.ip]; ok && l.State == store.LeaseDeclined && l.Expires.After(now) {
			t.Fatalf("%s offered to %s while quarantined", h.ip, mac)
		}
		if !a.pool.Contains(h.ip) || a.excluded[h.ip] != "" || a.reservedBy[h.ip] != "" {
			t.Fatalf("%s offered to %s: not a free pool address", h.ip, mac)
		}
	}
	stored, _ := st.Leases()
	if len(stored) != len(a.leases) {
		t.Fatalf("the store has %d leases, the allocator %d:\n%+v\n%+v", len(stored), len(a.leases), stored, a.leases)
	}
	for _, l := range stored {
		if m := a.leases[l.IP]; m != l {
			t.Fatalf("stored lease %+v, in memory %+v", l, m)
		}
	}
}
