package dhcp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/flint-boot/flint/store"
)

func fullServer(t *testing.T, poolStart, poolEnd string) (*Server, *memStore, *clock) {
	t.Helper()
	st := newMemStore()
	s, c := newTestServer(t, testConfig(t, cfgOpts{poolStart: poolStart, poolEnd: poolEnd}), st)
	return s, st, c
}

func macN(i int) string { return fmt.Sprintf("02:00:c6:12:01:%02x", i) }

func TestFullKnownMachineGetsReservationAndBootInfo(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")

	offer, dst := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7), withUUID))
	wantType(t, offer, dhcpv4.MessageTypeOffer)
	checkLeaseReply(t, offer, nuc1IP, "nuc1")
	if got := offer.ServerIPAddr.String(); got != "198.18.0.1" {
		t.Errorf("siaddr %s, want 198.18.0.1", got)
	}
	if offer.BootFileName != "ipxe.efi" {
		t.Errorf("file %q, want ipxe.efi", offer.BootFileName)
	}
	if offer.Options.Has(dhcpv4.OptionClassIdentifier) {
		t.Errorf("option 60 %q echoed to a PXE client (firmware then ignores the file field)", offer.ClassIdentifier())
	}
	if offer.Options.Has(dhcpv4.OptionBootfileName) || offer.Options.Has(dhcpv4.OptionTFTPServerName) {
		t.Error("options 66/67 set; boot info belongs in siaddr/file")
	}
	if got := offer.Options.Get(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, testUUID) {
		t.Errorf("option 97 %x, want the client's %x", got, testUUID)
	}
	if dst.String() != "255.255.255.255:68" {
		t.Errorf("OFFER sent to %s, want broadcast 255.255.255.255:68", dst)
	}
	if _, ok := st.lease(nuc1IP); ok {
		t.Error("a lease was stored for an OFFER")
	}

	ack, dst := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), serverID(flintIP), requested(nuc1IP)))
	wantType(t, ack, dhcpv4.MessageTypeAck)
	checkLeaseReply(t, ack, nuc1IP, "nuc1")
	if ack.BootFileName != "ipxe.efi" || ack.ServerIPAddr.String() != "198.18.0.1" {
		t.Errorf("ACK boot info %s %q, want 198.18.0.1 ipxe.efi", ack.ServerIPAddr, ack.BootFileName)
	}
	if dst.String() != "255.255.255.255:68" {
		t.Errorf("ACK sent to %s, want broadcast", dst)
	}
	l, ok := st.lease(nuc1IP)
	if !ok || l.MAC != nuc1MAC || l.State != store.LeaseBound || l.Hostname != "nuc1" || !l.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("stored lease %+v (found %v), want bound to %s as nuc1 until %s", l, ok, nuc1MAC, t0.Add(time.Hour))
	}

	if got := st.events(nuc1MAC); fmt.Sprint(got) != "[dhcp ACK dhcp OFFER]" {
		t.Errorf("sightings %v, want OFFER and ACK", got)
	}
	for _, sg := range st.sightingsOf(nuc1MAC) {
		if sg.Arch != "x86-64 UEFI" || sg.VendorClass != "PXEClient:Arch:00007:UNDI:003016" || sg.IP != nuc1IP || !sg.At.Equal(t0) {
			t.Errorf("sighting %+v", sg)
		}
	}
}

// checkLeaseReply checks the network options every OFFER/ACK carries.
func checkLeaseReply(t *testing.T, p *dhcpv4.DHCPv4, ip netip.Addr, hostname string) {
	t.Helper()
	if got := yiaddr(p); got != ip {
		t.Errorf("yiaddr %s, want %s", got, ip)
	}
	if got := net.IP(p.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("subnet mask %s", got)
	}
	if got := fmt.Sprint(p.Router()); got != "[198.18.0.254]" {
		t.Errorf("router %s", got)
	}
	if got := fmt.Sprint(p.DNS()); got != "[198.18.0.53 198.18.0.54]" {
		t.Errorf("dns %s", got)
	}
	if got := p.DomainName(); got != "lab.test" {
		t.Errorf("domain %q", got)
	}
	if got := p.HostName(); got != hostname {
		t.Errorf("hostname %q, want %q", got, hostname)
	}
	if got := p.IPAddressLeaseTime(0); got != time.Hour {
		t.Errorf("lease time %s", got)
	}
	if got := p.IPAddressRenewalTime(0); got != 30*time.Minute {
		t.Errorf("T1 %s", got)
	}
	if got := p.IPAddressRebindingTime(0); got != 52*time.Minute+30*time.Second {
		t.Errorf("T2 %s", got)
	}
	if got := p.ServerIdentifier().String(); got != "198.18.0.1" {
		t.Errorf("server identifier %s", got)
	}
}

func TestFullBootFiles(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	tests := []struct {
		name, mac  string
		mods       []dhcpv4.Modifier
		file       string
		httpClient bool
	}{
		{"BIOS", nuc1MAC, []dhcpv4.Modifier{pxe(0)}, "undionly.kpxe", false},
		{"override", nuc2MAC, []dhcpv4.Modifier{pxe(7)}, "snponly.efi", false},
		{"HTTP boot", nuc1MAC, []dhcpv4.Modifier{httpClient(16)}, "http://198.18.0.1:8080/ipxe/ipxe.efi", true},
		{"iPXE BIOS", nuc1MAC, []dhcpv4.Modifier{pxe(0), ipxeUserClass}, "http://198.18.0.1:8080/boot.ipxe", false},
		{"iPXE UEFI override", nuc2MAC, []dhcpv4.Modifier{pxe(7), ipxeUserClass}, "http://198.18.0.1:8080/boot.ipxe", false},
		{"not netboot", nuc1MAC, nil, "", false},
		{"unknown machine gets an address, no boot info", macN(1), []dhcpv4.Modifier{pxe(7)}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offer, _ := exchange(t, s, packet(tc.mac, dhcpv4.MessageTypeDiscover, tc.mods...))
			wantType(t, offer, dhcpv4.MessageTypeOffer)
			if offer.BootFileName != tc.file {
				t.Errorf("file %q, want %q", offer.BootFileName, tc.file)
			}
			wantSiaddr := "198.18.0.1"
			if tc.file == "" {
				wantSiaddr = "0.0.0.0"
			}
			if offer.ServerIPAddr.String() != wantSiaddr {
				t.Errorf("siaddr %s, want %s", offer.ServerIPAddr, wantSiaddr)
			}
			vc := offer.ClassIdentifier()
			if tc.httpClient && vc != "HTTPClient" {
				t.Errorf("option 60 %q, want HTTPClient", vc)
			}
			if !tc.httpClient && vc != "" {
				t.Errorf("option 60 %q, want none", vc)
			}
		})
	}
}

func TestFullUnknownMACsGetDistinctPoolAddresses(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	pool := netip.MustParsePrefix("198.18.0.96/27")
	a := offerFor(t, s, macN(1))
	b := offerFor(t, s, macN(2))
	if a == b {
		t.Fatalf("both MACs offered %s", a)
	}
	for _, ip := range []netip.Addr{a, b} {
		if !s.cfg.DHCP.Pool.Contains(ip) || !pool.Contains(ip) {
			t.Errorf("%s is outside the pool", ip)
		}
	}
	// Asking again gets the held offer, not a new address.
	if again := offerFor(t, s, macN(1)); again != a {
		t.Errorf("second DISCOVER offered %s, first %s", again, a)
	}
}

func offerFor(t *testing.T, s *Server, mac string, mods ...dhcpv4.Modifier) netip.Addr {
	t.Helper()
	offer, _ := exchange(t, s, packet(mac, dhcpv4.MessageTypeDiscover, mods...))
	wantType(t, offer, dhcpv4.MessageTypeOffer)
	return yiaddr(offer)
}

func TestFullConcurrentDiscoversGetDistinctAddresses(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	const n = 20
	var wg sync.WaitGroup
	offered := make([]netip.Addr, n)
	acked := make([]netip.Addr, n)
	start := make(chan struct{})
	// Packets are built up front: building one takes a lock (random xid),
	// which would order the goroutines and hide races from the detector.
	discovers := make([]*dhcpv4.DHCPv4, n)
	requests := make([]*dhcpv4.DHCPv4, n)
	for i := range n {
		discovers[i] = packet(macN(i), dhcpv4.MessageTypeDiscover, pxe(7))
		requests[i] = packet(macN(i), dhcpv4.MessageTypeRequest, serverID(flintIP))
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			reply, _ := s.handle(discovers[i], clientPeer, viaDHCP)
			if reply == nil {
				return
			}
			offered[i] = yiaddr(reply)
			requests[i].UpdateOption(dhcpv4.OptRequestedIPAddress(ipOf(offered[i])))
			ack, _ := s.handle(requests[i], clientPeer, viaDHCP)
			if ack != nil && ack.MessageType() == dhcpv4.MessageTypeAck {
				acked[i] = yiaddr(ack)
			}
		}()
	}
	close(start)
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if !acked[i].IsValid() || acked[i] != offered[i] {
			t.Errorf("client %d: offered %v, acked %v", i, offered[i], acked[i])
			continue
		}
		if j, dup := seen[acked[i]]; dup {
			t.Errorf("clients %d and %d both got %s", j, i, acked[i])
		}
		seen[acked[i]] = i
		if l, ok := st.lease(acked[i]); !ok || l.MAC != macN(i) {
			t.Errorf("client %d: stored lease %+v", i, l)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct addresses for %d clients", len(seen), n)
	}
}

func TestFullHeldOfferIsNotGivenToAnotherMAC(t *testing.T) {
	s, _, c := fullServer(t, "198.18.0.100", "198.18.0.101") // two addresses
	a := offerFor(t, s, macN(1))
	b := offerFor(t, s, macN(2))
	if a == b {
		t.Fatalf("both offered %s", a)
	}
	// Both addresses are held: a third client gets nothing, however hard it asks.
	reply, _ := exchange(t, s, packet(macN(3), dhcpv4.MessageTypeDiscover, requested(a)))
	wantNoReply(t, reply)
	// Nor can it take a held address by REQUESTing it.
	reply, _ = exchange(t, s, packet(macN(3), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(a)))
	wantType(t, reply, dhcpv4.MessageTypeNak)
	// Still held for its client, which can take it.
	reply, _ = exchange(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(a)))
	wantType(t, reply, dhcpv4.MessageTypeAck)

	// Once b's hold ends, the third client gets it.
	c.Advance(31 * time.Second)
	if got := offerFor(t, s, macN(3)); got != b {
		t.Errorf("after the hold ended: offered %s, want %s", got, b)
	}
}

func TestFullClientChoosingAnotherServerFreesOffer(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.100") // one address
	a := offerFor(t, s, macN(1))
	reply, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, serverID(netip.MustParseAddr("198.18.0.2")), requested(netip.MustParseAddr("198.18.0.77"))))
	wantNoReply(t, reply)
	if got := offerFor(t, s, macN(2)); got != a {
		t.Errorf("offered %s, want the released offer %s", got, a)
	}
}

func TestFullRequestForSomeoneElsesAddressIsNAKed(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	a := dora(t, s, macN(1))
	for name, req := range map[string]*dhcpv4.DHCPv4{
		"selecting a leased address":   packet(macN(2), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(a)),
		"renewing a leased address":    packet(macN(2), dhcpv4.MessageTypeRequest, ciaddr(a)),
		"init-reboot a leased address": packet(macN(2), dhcpv4.MessageTypeRequest, requested(a)),
		"init-reboot a reservation":    packet(macN(2), dhcpv4.MessageTypeRequest, requested(nuc1IP)),
		"selecting a reservation":      packet(macN(2), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(nuc1IP)),
		"known machine, pool address":  packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(flintIP), requested(netip.MustParseAddr("198.18.0.150"))),
	} {
		t.Run(name, func(t *testing.T) {
			reply, dst := exchange(t, s, req)
			wantType(t, reply, dhcpv4.MessageTypeNak)
			if yiaddr(reply).IsValid() && !yiaddr(reply).IsUnspecified() {
				t.Errorf("NAK with yiaddr %s", yiaddr(reply))
			}
			if reply.ServerIdentifier().String() != "198.18.0.1" {
				t.Errorf("NAK server id %s", reply.ServerIdentifier())
			}
			if dst.String() != "255.255.255.255:68" {
				t.Errorf("NAK sent to %s, want broadcast", dst)
			}
		})
	}
	if l, _ := st.lease(a); l.MAC != macN(1) {
		t.Errorf("lease of %s now %+v", a, l)
	}
}

func TestFullInitReboot(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	mine := dora(t, s, macN(1))
	free := netip.MustParseAddr("198.18.0.150")

	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want dhcpv4.MessageType // MessageTypeNone: silence
	}{
		{"own lease", packet(macN(1), dhcpv4.MessageTypeRequest, requested(mine)), dhcpv4.MessageTypeAck},
		{"known machine, its reservation", packet(nuc1MAC, dhcpv4.MessageTypeRequest, requested(nuc1IP)), dhcpv4.MessageTypeAck},
		{"known machine, wrong address", packet(nuc1MAC, dhcpv4.MessageTypeRequest, requested(free)), dhcpv4.MessageTypeNak},
		{"leased client, other address", packet(macN(1), dhcpv4.MessageTypeRequest, requested(free)), dhcpv4.MessageTypeNak},
		{"wrong subnet", packet(macN(2), dhcpv4.MessageTypeRequest, requested(netip.MustParseAddr("198.19.0.5"))), dhcpv4.MessageTypeNak},
		{"someone else's lease", packet(macN(2), dhcpv4.MessageTypeRequest, requested(mine)), dhcpv4.MessageTypeNak},
		{"flint's own address", packet(macN(2), dhcpv4.MessageTypeRequest, requested(flintIP)), dhcpv4.MessageTypeNak},
		{"no record, in subnet", packet(macN(2), dhcpv4.MessageTypeRequest, requested(free)), dhcpv4.MessageTypeNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply, _ := exchange(t, s, tc.req)
			if tc.want == dhcpv4.MessageTypeNone {
				wantNoReply(t, reply)
				return
			}
			wantType(t, reply, tc.want)
			if tc.want == dhcpv4.MessageTypeAck {
				if got, want := yiaddr(reply), ipFrom(tc.req.RequestedIPAddress()); got != want {
					t.Errorf("ACK for %s, want %s", got, want)
				}
			}
		})
	}
}

func ipFrom(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

func TestFullRenewExtendsLease(t *testing.T) {
	s, st, c := fullServer(t, "198.18.0.100", "198.18.0.199")
	ip := dora(t, s, macN(1))
	if l, _ := st.lease(ip); !l.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("first lease expires %s", l.Expires)
	}
	c.Advance(30 * time.Minute)
	peer := &net.UDPAddr{IP: ipOf(ip), Port: 68}
	ack, dst := exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, ciaddr(ip)), peer, viaDHCP)
	wantType(t, ack, dhcpv4.MessageTypeAck)
	if got := yiaddr(ack); got != ip {
		t.Errorf("renew ACK yiaddr %s, want %s", got, ip)
	}
	if got := ipFrom(ack.ClientIPAddr); got != ip {
		t.Errorf("renew ACK ciaddr %s, want %s", got, ip)
	}
	if want := ip.String() + ":68"; dst.String() != want {
		t.Errorf("renew ACK sent to %s, want unicast %s", dst, want)
	}
	want := t0.Add(30*time.Minute + time.Hour)
	if l, _ := st.lease(ip); !l.Expires.Equal(want) {
		t.Errorf("renewed lease expires %s, want %s", l.Expires, want)
	}
	// Even after expiry, nobody took it: renewing still works.
	c.Advance(2 * time.Hour)
	ack, _ = exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, ciaddr(ip)), peer, viaDHCP)
	wantType(t, ack, dhcpv4.MessageTypeAck)
}

// TestFullRelease: a RELEASE frees a lease only when it comes from the lease
// holder: sent from the leased address (or forwarded by its relay), with the
// holder's chaddr. A spoofed one keeps the lease, in the store (which the
// lifecycle checks) and in the allocator (nobody else is offered the address).
// A config machine's reservation is never dropped.
func TestFullRelease(t *testing.T) {
	pool := netip.MustParseAddr("198.18.0.100") // the pool's only address
	relay := netip.MustParseAddr("198.18.0.2")
	other := netip.MustParseAddr("198.18.0.66")
	from := func(ip netip.Addr) *net.UDPAddr { return &net.UDPAddr{IP: ipOf(ip), Port: 68} }
	zero := netip.IPv4Unspecified()
	tests := []struct {
		name     string
		holder   string // who took the lease: macN(1) (pool) or nuc1 (reservation)
		chaddr   string // who the RELEASE says it is from
		peer     *net.UDPAddr
		relayed  bool // giaddr = relay
		released bool
	}{
		{"holder, from its address", macN(1), macN(1), from(pool), false, true},
		{"holder, through its relay", macN(1), macN(1), from(relay), true, true},
		{"spoofed, from another address", macN(1), macN(1), from(other), false, false},
		{"spoofed, from 0.0.0.0", macN(1), macN(1), from(zero), false, false},
		{"spoofed, giaddr set, not from the relay", macN(1), macN(1), from(other), true, false},
		{"wrong chaddr, from the address", macN(1), macN(2), from(pool), false, false},
		{"no known sender", macN(1), macN(1), nil, false, false},
		{"reservation, from another address", nuc1MAC, nuc1MAC, from(other), false, false},
		{"reservation, from 0.0.0.0", nuc1MAC, nuc1MAC, from(zero), false, false},
		{"reservation, from its own address (kept: it is the machine's alone)", nuc1MAC, nuc1MAC, from(nuc1IP), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.100")
			ip := dora(t, s, tc.holder)
			mods := []dhcpv4.Modifier{ciaddr(ip), serverID(flintIP)}
			if tc.relayed {
				mods = append(mods, func(p *dhcpv4.DHCPv4) { p.GatewayIPAddr = ipOf(relay); p.HopCount = 1 })
			}
			reply, _ := exchangeVia(t, s, packet(tc.chaddr, dhcpv4.MessageTypeRelease, mods...), tc.peer, viaDHCP)
			wantNoReply(t, reply)

			l, stored := st.lease(ip)
			_, inMemory := s.allocs[0].leaseFor(tc.holder)
			if tc.released {
				if stored || inMemory {
					t.Fatalf("lease kept after the holder's RELEASE: stored %v (%+v), in memory %v", stored, l, inMemory)
				}
				if got := offerFor(t, s, macN(3)); got != pool {
					t.Errorf("after RELEASE offered %s, want the freed %s", got, pool)
				}
				return
			}
			if !stored || l.MAC != tc.holder || l.State != store.LeaseBound {
				t.Errorf("stored lease %+v (found %v), want still bound to %s", l, stored, tc.holder)
			}
			if !inMemory {
				t.Error("the allocator forgot the lease")
			}
			if tc.holder == macN(1) {
				reply, _ := exchange(t, s, packet(macN(3), dhcpv4.MessageTypeDiscover))
				wantNoReply(t, reply) // the only address is still leased
			}
			// The holder keeps using its address.
			ack, _ := exchangeVia(t, s, packet(tc.holder, dhcpv4.MessageTypeRequest, ciaddr(ip)), from(ip), viaDHCP)
			wantType(t, ack, dhcpv4.MessageTypeAck)
		})
	}
}

// TestFullDecline: a DECLINE quarantines a pool address only if it names an
// address offered or leased to its chaddr and comes from a client without an
// address (0.0.0.0), from the declined address, or through the relay.
func TestFullDecline(t *testing.T) {
	relay := netip.MustParseAddr("198.18.0.2")
	other := netip.MustParseAddr("198.18.0.66")
	from := func(ip netip.Addr) *net.UDPAddr { return &net.UDPAddr{IP: ipOf(ip), Port: 68} }
	tests := []struct {
		name        string
		chaddr      string
		peer        func(offered netip.Addr) *net.UDPAddr
		relayed     bool
		quarantined bool
	}{
		{"from 0.0.0.0", macN(1), func(netip.Addr) *net.UDPAddr { return clientPeer }, false, true},
		{"from the declined address", macN(1), func(ip netip.Addr) *net.UDPAddr { return from(ip) }, false, true},
		{"through the relay", macN(1), func(netip.Addr) *net.UDPAddr { return from(relay) }, true, true},
		{"from another host's address", macN(1), func(netip.Addr) *net.UDPAddr { return from(other) }, false, false},
		{"giaddr set, not from the relay", macN(1), func(netip.Addr) *net.UDPAddr { return from(other) }, true, false},
		{"another chaddr", macN(2), func(netip.Addr) *net.UDPAddr { return clientPeer }, false, false},
		{"no known sender", macN(1), func(netip.Addr) *net.UDPAddr { return nil }, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.101")
			bad := offerFor(t, s, macN(1))
			mods := []dhcpv4.Modifier{requested(bad), serverID(flintIP)}
			if tc.relayed {
				mods = append(mods, func(p *dhcpv4.DHCPv4) { p.GatewayIPAddr = ipOf(relay); p.HopCount = 1 })
			}
			reply, _ := exchangeVia(t, s, packet(tc.chaddr, dhcpv4.MessageTypeDecline, mods...), tc.peer(bad), viaDHCP)
			wantNoReply(t, reply)
			l, stored := st.lease(bad)
			again := offerFor(t, s, macN(1))
			if tc.quarantined {
				if !stored || l.State != store.LeaseDeclined {
					t.Errorf("no quarantine record: %+v (found %v)", l, stored)
				}
				if again == bad {
					t.Errorf("declined address %s offered again", bad)
				}
				return
			}
			if stored {
				t.Errorf("DECLINE stored %+v", l)
			}
			if again != bad {
				t.Errorf("offered %s after an ignored DECLINE, want the held %s", again, bad)
			}
		})
	}
}

func TestFullDeclineQuarantinesAddress(t *testing.T) {
	s, st, c := fullServer(t, "198.18.0.100", "198.18.0.101")
	bad := offerFor(t, s, macN(1))
	reply, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeDecline, requested(bad), serverID(flintIP)))
	wantNoReply(t, reply)
	l, ok := st.lease(bad)
	if !ok || l.State != store.LeaseDeclined || l.MAC != "" || !l.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("quarantine record %+v (found %v)", l, ok)
	}
	other := offerFor(t, s, macN(1))
	if other == bad {
		t.Fatalf("declined address %s offered again", bad)
	}
	// The other address is held for macN(1), the declined one quarantined.
	reply, _ = exchange(t, s, packet(macN(2), dhcpv4.MessageTypeDiscover))
	wantNoReply(t, reply)
	reply, _ = exchange(t, s, packet(macN(2), dhcpv4.MessageTypeRequest, requested(bad)))
	wantType(t, reply, dhcpv4.MessageTypeNak)

	c.Advance(10*time.Minute + time.Second)
	if got := offerFor(t, s, macN(2), requested(bad)); got != bad {
		t.Errorf("after the quarantine offered %s, want %s", got, bad)
	}
}

func TestFullDeclineByStrangerIsIgnored(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	ip := dora(t, s, macN(1))
	reply, _ := exchange(t, s, packet(macN(2), dhcpv4.MessageTypeDecline, requested(ip)))
	wantNoReply(t, reply)
	if l, _ := st.lease(ip); l.State != store.LeaseBound || l.MAC != macN(1) {
		t.Errorf("a stranger's DECLINE changed the lease: %+v", l)
	}
}

func TestFullInform(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	ip := netip.MustParseAddr("198.18.0.42")
	peer := &net.UDPAddr{IP: ipOf(ip), Port: 68}
	ack, dst := exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeInform, ciaddr(ip)), peer, viaDHCP)
	wantType(t, ack, dhcpv4.MessageTypeAck)
	if !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("INFORM ACK yiaddr %s, want 0.0.0.0", ack.YourIPAddr)
	}
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue} {
		if ack.Options.Has(o) {
			t.Errorf("INFORM ACK carries %s", o)
		}
	}
	if fmt.Sprint(ack.Router()) != "[198.18.0.254]" || net.IP(ack.SubnetMask()).String() != "255.255.255.0" {
		t.Errorf("INFORM ACK options: router %v mask %v", ack.Router(), net.IP(ack.SubnetMask()))
	}
	if want := "198.18.0.42:68"; dst.String() != want {
		t.Errorf("INFORM ACK sent to %s, want %s", dst, want)
	}
	if leases, _ := st.Leases(); len(leases) != 0 {
		t.Errorf("INFORM stored leases %+v", leases)
	}
}

func TestFullRelayAddressing(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	relay := netip.MustParseAddr("198.18.0.2")
	agentInfo := dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 4, 'p', 'o', 'r', 't'})
	relayed := func(p *dhcpv4.DHCPv4) {
		p.GatewayIPAddr = ipOf(relay)
		p.HopCount = 1
		p.UpdateOption(agentInfo)
	}
	relayPeer := &net.UDPAddr{IP: ipOf(relay), Port: 67}
	offer, dst := exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeDiscover, relayed), relayPeer, viaDHCP)
	wantType(t, offer, dhcpv4.MessageTypeOffer)
	if dst.String() != "198.18.0.2:67" {
		t.Errorf("relayed OFFER sent to %s, want 198.18.0.2:67", dst)
	}
	if !bytes.Equal(offer.Options.Get(dhcpv4.OptionRelayAgentInformation), agentInfo.Value.ToBytes()) {
		t.Errorf("option 82 not echoed: %x", offer.Options.Get(dhcpv4.OptionRelayAgentInformation))
	}
	if got := ipFrom(offer.GatewayIPAddr); got != relay {
		t.Errorf("giaddr %s", got)
	}

	nak, dst := exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, relayed, requested(nuc1IP)), relayPeer, viaDHCP)
	wantType(t, nak, dhcpv4.MessageTypeNak)
	if dst.String() != "198.18.0.2:67" || !nak.IsBroadcast() {
		t.Errorf("relayed NAK to %s broadcast=%v, want the relay with the broadcast flag", dst, nak.IsBroadcast())
	}

	// A relay on a subnet flint does not serve gets no answer.
	far := func(p *dhcpv4.DHCPv4) { p.GatewayIPAddr = net.ParseIP("198.19.0.1").To4() }
	reply, _ := exchangeVia(t, s, packet(macN(2), dhcpv4.MessageTypeDiscover, far), relayPeer, viaDHCP)
	wantNoReply(t, reply)
}

func TestFullLeasesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.199"})
	st, err := store.OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, cfg, st)
	first := dora(t, s, macN(1))
	second := dora(t, s, macN(2))
	st.Close()

	st, err = store.OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, _ = newTestServer(t, testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.199"}), st)
	// A newcomer must not get either address, even though the scan starts over.
	if got := offerFor(t, s, macN(3)); got == first || got == second {
		t.Errorf("newcomer offered %s, leased before the restart", got)
	}
	if got := offerFor(t, s, macN(2)); got != second {
		t.Errorf("after restart %s offered %s, want %s", macN(2), got, second)
	}
	if got := dora(t, s, macN(1)); got != first {
		t.Errorf("after restart %s got %s, want %s", macN(1), got, first)
	}
	// Renewing across the restart works too.
	ack, _ := exchange(t, s, packet(macN(2), dhcpv4.MessageTypeRequest, ciaddr(second)))
	wantType(t, ack, dhcpv4.MessageTypeAck)
}

func TestFullExpiredLeasesAreDroppedOnLoad(t *testing.T) {
	st := newMemStore()
	old := netip.MustParseAddr("198.18.0.100")
	st.leases[old] = store.Lease{IP: old, MAC: macN(9), State: store.LeaseBound, Start: t0.Add(-3 * time.Hour), Expires: t0.Add(-2 * time.Hour)}
	cfg := testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.100"})
	s, err := newServer(cfg, st, nil, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := s.allocs[0].leaseFor(macN(9)); ok {
		t.Errorf("expired lease loaded: %+v", l)
	}
	if got := offerFor(t, s, macN(1)); got != old {
		t.Errorf("offered %s, want the expired lease's %s", got, old)
	}
}

func TestFullNoPoolUnknownMACGetsNothing(t *testing.T) {
	s, st, _ := fullServer(t, "", "")
	reply, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeDiscover, pxe(7)))
	wantNoReply(t, reply)
	reply, _ = exchange(t, s, packet(macN(1), dhcpv4.MessageTypeDiscover, pxe(7)))
	wantNoReply(t, reply)
	ev := st.events(macN(1))
	if len(ev) != 2 || ev[0] != "dhcp DISCOVER (ignored: unknown machine, no pool)" {
		t.Errorf("sightings %q: unknown MACs must be recorded as discovered", ev)
	}
	sg := st.sightingsOf(macN(1))[0]
	if sg.Arch != "x86-64 UEFI" || sg.VendorClass == "" {
		t.Errorf("sighting %+v lacks arch/vendor class", sg)
	}
	// Known machines are still served.
	offer, _ := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover))
	wantType(t, offer, dhcpv4.MessageTypeOffer)
}

func TestFullNoACKUntilLeaseIsDurable(t *testing.T) {
	s, st, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	ip := offerFor(t, s, macN(1))
	st.mu.Lock()
	st.failPut = true
	st.mu.Unlock()
	reply, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(ip)))
	wantNoReply(t, reply)
	if _, ok := s.allocs[0].leaseFor(macN(1)); ok {
		t.Error("lease kept in memory though the store failed")
	}
	// The offer is still held; once the store works the retry is ACKed.
	if got := offerFor(t, s, macN(2)); got == ip {
		t.Errorf("address %s offered to another MAC after a failed write", ip)
	}
	st.mu.Lock()
	st.failPut = false
	st.mu.Unlock()
	reply, _ = exchange(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(ip)))
	wantType(t, reply, dhcpv4.MessageTypeAck)
}

func TestFullMovedClientLosesOldLease(t *testing.T) {
	st := newMemStore()
	s, _ := newTestServer(t, testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.199"}), st)
	old := dora(t, s, macN(1))
	// The pool moves (config change and restart): the client gets a new
	// address and its old record goes, instead of blocking the old address.
	s, _ = newTestServer(t, testConfig(t, cfgOpts{poolStart: "198.18.0.150", poolEnd: "198.18.0.199"}), st)
	moved := dora(t, s, macN(1))
	if moved == old || !s.cfg.DHCP.Pool.Contains(moved) {
		t.Fatalf("got %s, had %s", moved, old)
	}
	if l, ok := st.lease(old); ok {
		t.Errorf("old lease still stored: %+v", l)
	}
	if l, ok := s.allocs[0].leaseFor(macN(1)); !ok || l.IP != moved {
		t.Errorf("in-memory lease %+v", l)
	}
}

func TestIgnoredPackets(t *testing.T) {
	s, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	reply := packet(macN(1), dhcpv4.MessageTypeDiscover)
	reply.OpCode = dhcpv4.OpcodeBootReply
	tokenRing := packet(macN(1), dhcpv4.MessageTypeDiscover)
	tokenRing.HWType = iana.HWTypeIEEE802
	shortMAC := packet(macN(1), dhcpv4.MessageTypeDiscover)
	shortMAC.ClientHWAddr = shortMAC.ClientHWAddr[:4]
	bootp := packet(macN(1), dhcpv4.MessageTypeDiscover)
	bootp.Options.Del(dhcpv4.OptionDHCPMessageType)
	offerFromClient := packet(macN(1), dhcpv4.MessageTypeOffer)
	for name, p := range map[string]*dhcpv4.DHCPv4{
		"BOOTREPLY": reply, "non-Ethernet": tokenRing, "short MAC": shortMAC, "no message type": bootp, "OFFER": offerFromClient,
	} {
		if r, _ := s.handle(p, clientPeer, viaDHCP); r != nil {
			t.Errorf("%s: answered with %s", name, r.MessageType())
		}
	}
}

// TestMalformedPacketsDoNotPanic throws truncated and bit-flipped packets at
// the whole path (parse + handle) in every mode.
func TestMalformedPacketsDoNotPanic(t *testing.T) {
	full, _, _ := fullServer(t, "198.18.0.100", "198.18.0.199")
	proxy, _, _ := proxyServer(t, true)
	good := packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), ipxeUserClass, withUUID, serverID(flintIP), requested(nuc1IP)).ToBytes()
	seed := uint32(1)
	next := func() uint32 { seed = seed*1664525 + 1013904223; return seed }
	for i := range 5000 {
		b := append([]byte(nil), good...)
		switch i % 3 {
		case 0:
			b = b[:next()%uint32(len(b))]
		case 1:
			for range 1 + next()%8 {
				b[240+next()%uint32(len(b)-240)] = byte(next())
			}
		case 2:
			b[next()%uint32(len(b))] = byte(next())
		}
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			continue
		}
		for _, s := range []*Server{full, proxy} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic on packet %x: %v", b, r)
					}
				}()
				s.handle(req, clientPeer, viaDHCP)
				s.handle(req, clientPeer, viaProxy)
			}()
		}
	}
}

// TestFullSightingsNameTheAddressTaken: the sighting of an ACK that leases an
// address says so (DHCPAddr), so the lifecycle knows which address the
// machine took; OFFERs, NAKs and INFORMs do not.
func TestFullSightingsNameTheAddressTaken(t *testing.T) {
	s, st, c := fullServer(t, "198.18.0.100", "198.18.0.199")
	from := func(ip netip.Addr) *net.UDPAddr { return &net.UDPAddr{IP: ipOf(ip), Port: 68} }
	pool := netip.MustParseAddr("198.18.0.150")
	steps := []struct {
		name     string
		mac      string
		req      *dhcpv4.DHCPv4
		peer     *net.UDPAddr
		event    string
		ip       netip.Addr
		dhcpAddr bool
	}{
		{"offer", nuc1MAC, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7)), clientPeer, "dhcp OFFER", nuc1IP, false},
		{"ack", nuc1MAC, packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), serverID(flintIP), requested(nuc1IP)), clientPeer, "dhcp ACK", nuc1IP, true},
		{"renewal ack", nuc1MAC, packet(nuc1MAC, dhcpv4.MessageTypeRequest, ciaddr(nuc1IP)), from(nuc1IP), "dhcp ACK", nuc1IP, true},
		{"nak", nuc1MAC, packet(nuc1MAC, dhcpv4.MessageTypeRequest, requested(pool)), clientPeer, "dhcp NAK", netip.Addr{}, false},
		{"inform", nuc2MAC, packet(nuc2MAC, dhcpv4.MessageTypeInform, ciaddr(pool)), from(pool), "dhcp ACK (INFORM)", pool, false},
		{"pool ack", macN(1), packet(macN(1), dhcpv4.MessageTypeRequest, serverID(flintIP), requested(netip.MustParseAddr("198.18.0.100"))), clientPeer, "dhcp ACK", netip.MustParseAddr("198.18.0.100"), true},
	}
	offerFor(t, s, macN(1)) // so that 198.18.0.100 is held for it
	for _, step := range steps {
		c.Advance(time.Second)
		exchangeVia(t, s, step.req, step.peer, viaDHCP)
		sgs := st.sightingsOf(step.mac)
		if len(sgs) == 0 {
			t.Fatalf("%s: nothing recorded", step.name)
		}
		sg := sgs[len(sgs)-1]
		if sg.Event != step.event || sg.IP != step.ip || sg.DHCPAddr != step.dhcpAddr || !sg.At.Equal(c.Now()) {
			t.Errorf("%s: sighting %q ip %v DHCPAddr %v at %s, want %q ip %v DHCPAddr %v now", step.name, sg.Event, sg.IP, sg.DHCPAddr, sg.At, step.event, step.ip, step.dhcpAddr)
		}
	}
}

// TestSpoofedReleaseOfAMachineIsOnItsTimeline: a RELEASE for a machine of the
// config that its holder did not send changes nothing and says so on that
// machine's timeline, once a minute however often it comes.
func TestSpoofedReleaseOfAMachineIsOnItsTimeline(t *testing.T) {
	s, st, clk := fullServer(t, "198.18.0.100", "198.18.0.100")
	ip := dora(t, s, nuc1MAC)
	stranger := &net.UDPAddr{IP: ipOf(netip.MustParseAddr("198.18.0.66")), Port: 68}
	for range 50 {
		exchangeVia(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRelease, ciaddr(ip), serverID(flintIP)), stranger, viaDHCP)
	}
	count := func() int {
		n := 0
		for _, sg := range st.sightingsOf(nuc1MAC) {
			if sg.Event == "dhcp RELEASE ignored" && sg.TimelineOnly && strings.Contains(sg.Detail, "sent from 198.18.0.66") {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d timeline entries for 50 spoofed RELEASEs in a minute, want 1", n)
	}
	clk.Advance(2 * time.Minute)
	exchangeVia(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRelease, ciaddr(ip), serverID(flintIP)), stranger, viaDHCP)
	if n := count(); n != 2 {
		t.Fatalf("after a minute: %d entries, want 2", n)
	}
	if l, ok := st.lease(ip); !ok || l.MAC != nuc1MAC {
		t.Fatalf("nuc1's lease: %+v %v", l, ok)
	}
}
