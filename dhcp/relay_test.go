package dhcp

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

var (
	a4    = netip.MustParseAddr
	rack1 = a4("198.18.1.1") // the relay's address on the remote segments
	slot  = a4("198.18.2.1")
)

func TestSelectSubnet(t *testing.T) {
	cases := []struct {
		name string
		q    SubnetQuery
		want SubnetChoice
	}{
		{"local client", SubnetQuery{ByGIAddr: -1, ByCIAddr: -1, Local: 0},
			SubnetChoice{Index: 0, Reason: "flint's own segment"}},
		{"relayed", SubnetQuery{GIAddr: rack1, ByGIAddr: 1, ByCIAddr: -1, Local: 0},
			SubnetChoice{Index: 1, Relayed: true, Reason: "relay's subnet (giaddr 198.18.1.1)"}},
		{"relayed from flint's own segment", SubnetQuery{GIAddr: a4("198.18.0.254"), ByGIAddr: 0, ByCIAddr: -1, Local: 0},
			SubnetChoice{Index: 0, Relayed: true, Reason: "relay's subnet (giaddr 198.18.0.254)"}},
		{"relayed from nowhere", SubnetQuery{GIAddr: a4("198.18.9.1"), ByGIAddr: -1, ByCIAddr: -1, Local: 0},
			SubnetChoice{Index: -1, Relayed: true, Reason: "relayed by giaddr 198.18.9.1, which is in no subnet flint serves"}},
		{"giaddr wins over ciaddr", SubnetQuery{GIAddr: rack1, ByGIAddr: 1, CIAddr: a4("198.18.2.17"), ByCIAddr: 2, Local: 0},
			SubnetChoice{Index: 1, Relayed: true, Reason: "relay's subnet (giaddr 198.18.1.1)"}},
		{"remote client renewing directly", SubnetQuery{ByGIAddr: -1, CIAddr: a4("198.18.1.61"), ByCIAddr: 1, Local: 0},
			SubnetChoice{Index: 1, Reason: "subnet of the client's address (ciaddr 198.18.1.61)"}},
		{"client address in no subnet", SubnetQuery{ByGIAddr: -1, CIAddr: a4("198.18.9.9"), ByCIAddr: -1, Local: 0},
			SubnetChoice{Index: -1, Reason: "client address 198.18.9.9 is in no subnet flint serves"}},
		{"no local subnet", SubnetQuery{ByGIAddr: -1, ByCIAddr: -1, Local: -1},
			SubnetChoice{Index: -1, Reason: "no subnet holds flint's own address: its own segment is not served"}},
		{"no local subnet, relayed", SubnetQuery{GIAddr: rack1, ByGIAddr: 1, ByCIAddr: -1, Local: -1},
			SubnetChoice{Index: 1, Relayed: true, Reason: "relay's subnet (giaddr 198.18.1.1)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SelectSubnet(tc.q); got != tc.want {
				t.Errorf("SelectSubnet(%+v)\n got %+v\nwant %+v", tc.q, got, tc.want)
			}
		})
	}
}

func TestSelectMachine(t *testing.T) {
	local := netip.MustParsePrefix("198.18.0.0/24")
	bench := netip.MustParsePrefix("198.18.2.0/25")
	nuc1 := &config.Machine{Hostname: "nuc1", IPAddr: a4("198.18.0.10")}
	bench7 := &config.Machine{Hostname: "bench7", IPAddr: a4("198.18.2.17"), Relay: &config.Relay{CircuitID: "slot7"}}
	port7 := relayInfo{GIAddr: slot, Option82: true, CircuitID: "slot7"}
	cases := []struct {
		name string
		q    MachineQuery
		want MachineChoice
	}{
		{"unknown client", MachineQuery{Subnet: local}, MachineChoice{}},
		{"known by MAC", MachineQuery{ByMAC: nuc1, Subnet: local}, MachineChoice{Machine: nuc1, By: ByMAC}},
		{"chosen by its port, MAC unknown", MachineQuery{BySlot: bench7, Relay: port7, Subnet: bench}, MachineChoice{Machine: bench7, By: BySlot}},
		{"port and MAC agree", MachineQuery{ByMAC: bench7, BySlot: bench7, Relay: port7, Subnet: bench}, MachineChoice{Machine: bench7, By: BySlot}},
		{"port and MAC disagree", MachineQuery{ByMAC: nuc1, BySlot: bench7, Relay: port7, Subnet: bench},
			MachineChoice{Refuse: `its MAC is nuc1's, but the relay port (circuit-id "slot7") is bench7's: move the box to its own port or fix the config`}},
		{"renewing by the lease its port got it", MachineQuery{ByLease: bench7, Subnet: bench}, MachineChoice{Machine: bench7, By: ByLease}},
		{"a lease does not count on another port", MachineQuery{ByLease: bench7, Relay: relayInfo{GIAddr: slot, Option82: true, CircuitID: "slot8"}, Subnet: bench}, MachineChoice{}},
		{"a lease counts through a relay without option 82", MachineQuery{ByLease: bench7, Relay: relayInfo{GIAddr: slot}, Subnet: bench}, MachineChoice{Machine: bench7, By: ByLease}},
		{"the MAC wins over a lease", MachineQuery{ByMAC: nuc1, ByLease: bench7, Subnet: local}, MachineChoice{Machine: nuc1, By: ByMAC}},
		{"machine on the wrong segment", MachineQuery{ByMAC: nuc1, Subnet: bench},
			MachineChoice{Refuse: "nuc1's address 198.18.0.10 is not in subnet 198.18.2.0/25, where the request comes from: plug it into its own segment or change its ip"}},
		{"port of a machine of another subnet", MachineQuery{BySlot: bench7, Relay: port7, Subnet: local},
			MachineChoice{Refuse: "bench7's address 198.18.2.17 is not in subnet 198.18.0.0/24, where the request comes from: plug it into its own segment or change its ip"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SelectMachine(tc.q); got != tc.want {
				t.Errorf("SelectMachine\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// opt82 builds option 82 from sub-options (code, value) pairs.
func opt82(subs ...any) dhcpv4.Modifier {
	var b []byte
	for i := 0; i+1 < len(subs); i += 2 {
		v := subs[i+1].(string)
		b = append(b, byte(subs[i].(int)), byte(len(v)))
		b = append(b, v...)
	}
	return dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, b)
}

func relayedBy(giaddr netip.Addr) dhcpv4.Modifier {
	return func(p *dhcpv4.DHCPv4) { p.GatewayIPAddr = ipOf(giaddr) }
}

func TestReadRelay(t *testing.T) {
	cases := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want relayInfo
		text string
	}{
		{"not relayed", packet(nuc1MAC, dhcpv4.MessageTypeDiscover), relayInfo{}, ""},
		{"option 82 without giaddr is not believed", packet(nuc1MAC, dhcpv4.MessageTypeDiscover, opt82(1, "slot7")), relayInfo{}, ""},
		{"relayed without option 82", packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(rack1)),
			relayInfo{GIAddr: rack1}, "via relay 198.18.1.1"},
		{"circuit and remote id", packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(slot), opt82(1, "slot7", 2, "sw1", 9, "vendor")),
			relayInfo{GIAddr: slot, Option82: true, CircuitID: "slot7", RemoteID: "sw1"}, `via relay 198.18.2.1, circuit-id "slot7", remote-id "sw1"`},
		{"binary circuit id", packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(slot), opt82(1, "\x00\x04\x00\x0a")),
			relayInfo{GIAddr: slot, Option82: true, CircuitID: "\x00\x04\x00\x0a"}, `via relay 198.18.2.1, circuit-id "...."`},
		{"truncated sub-option", packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(slot), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 9, 's', 'l'})),
			relayInfo{GIAddr: slot, Option82: true, Malformed: true}, "via relay 198.18.2.1, option 82 malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := readRelay(tc.req)
			if got != tc.want {
				t.Errorf("readRelay = %+v, want %+v", got, tc.want)
			}
			if d := got.detail(); d != tc.text {
				t.Errorf("detail = %q, want %q", d, tc.text)
			}
		})
	}
}

const relayYAML = `
server:
  address: 198.18.0.1
  http_port: 8080
dhcp:
  mode: full
  domain: lab.test
  lease_time: 1h
  subnets:
    - subnet: 198.18.0.0/24
      router: 198.18.0.254
      dns: [198.18.0.53]
      pool: {start: 198.18.0.100, end: 198.18.0.199}
    - subnet: 198.18.1.0/24
      router: 198.18.1.1
      dns: [198.18.1.53]
      pool: {start: 198.18.1.100, end: 198.18.1.101}
    - subnet: 198.18.2.0/25
      router: 198.18.2.1
machines:
  - {mac: "02:00:c6:12:00:0a", hostname: nuc1, ip: 198.18.0.10, role: server}
  - {mac: "02:00:c6:12:01:0b", hostname: rack1, ip: 198.18.1.11, role: agent}
  - {mac: "02:00:c6:12:02:11", hostname: bench7, ip: 198.18.2.17, role: agent, relay: {circuit_id: slot7}}
cluster: {install_mode: live}
`

// logBuffer collects what the server logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func relayServer(t *testing.T, st *memStore) (*Server, *clock, *logBuffer) {
	t.Helper()
	cfg, err := config.Parse("relay.yaml", []byte(relayYAML))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	c := &clock{t: t0}
	s, err := newServer(cfg, st, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, logs
}

var relayPeer = &net.UDPAddr{IP: net.IPv4(198, 18, 0, 254), Port: 67} // the relay's address on flint's segment

// viaRelay runs one exchange through the relay at giaddr.
func viaRelay(t *testing.T, s *Server, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	t.Helper()
	return exchangeVia(t, s, req, relayPeer, viaDHCP)
}

func wantRemoteLease(t *testing.T, p *dhcpv4.DHCPv4, ip, router netip.Addr, bits int, dns string) {
	t.Helper()
	if got := yiaddr(p); got != ip {
		t.Errorf("yiaddr %s, want %s", got, ip)
	}
	if got := p.Router(); len(got) != 1 || !got[0].Equal(ipOf(router)) {
		t.Errorf("router %v, want %s", got, router)
	}
	if ones, _ := p.SubnetMask().Size(); ones != bits {
		t.Errorf("netmask /%d, want /%d", ones, bits)
	}
	if got := p.DNS(); dns == "" && len(got) != 0 || dns != "" && (len(got) != 1 || got[0].String() != dns) {
		t.Errorf("DNS %v, want %q", got, dns)
	}
	if got := p.ServerIdentifier(); !got.Equal(ipOf(flintIP)) {
		t.Errorf("server identifier %v, want flint's %s", got, flintIP)
	}
}

// A relayed client is answered from the relay's subnet, to the relay, with
// option 82 echoed; its lease is in that subnet's book and survives a
// restart; a local client keeps its own subnet meanwhile.
func TestRelayedFullMode(t *testing.T) {
	st := newMemStore()
	s, _, logs := relayServer(t, st)
	rackMAC := "02:00:c6:12:01:0b"
	o82 := opt82(1, "rack1", 2, "sw1")

	t.Run("known machine behind a relay", func(t *testing.T) {
		offer, dst := viaRelay(t, s, packet(rackMAC, dhcpv4.MessageTypeDiscover, pxe(7), relayedBy(rack1), o82))
		wantType(t, offer, dhcpv4.MessageTypeOffer)
		wantRemoteLease(t, offer, a4("198.18.1.11"), rack1, 24, "198.18.1.53")
		if dst.String() != "198.18.1.1:67" {
			t.Errorf("offer sent to %s, want the relay 198.18.1.1:67", dst)
		}
		if got := offer.GatewayIPAddr; !got.Equal(ipOf(rack1)) {
			t.Errorf("giaddr %v not kept", got)
		}
		if got := offer.Options.Get(dhcpv4.OptionRelayAgentInformation); string(got) != "\x01\x05rack1\x02\x03sw1" {
			t.Errorf("option 82 not echoed as sent (RFC 3046 2.2): %q", got)
		}
		if offer.BootFileName != "ipxe.efi" || !offer.ServerIPAddr.Equal(ipOf(flintIP)) {
			t.Errorf("boot file %q next-server %v", offer.BootFileName, offer.ServerIPAddr)
		}
		ack, dst := viaRelay(t, s, packet(rackMAC, dhcpv4.MessageTypeRequest, pxe(7), relayedBy(rack1), o82, serverID(flintIP), requested(a4("198.18.1.11"))))
		wantType(t, ack, dhcpv4.MessageTypeAck)
		wantRemoteLease(t, ack, a4("198.18.1.11"), rack1, 24, "198.18.1.53")
		if dst.String() != "198.18.1.1:67" {
			t.Errorf("ack sent to %s", dst)
		}
		if l, ok := st.lease(a4("198.18.1.11")); !ok || l.MAC != rackMAC || l.State != store.LeaseBound {
			t.Errorf("lease on record: %+v %v", l, ok)
		}
		var detail string
		for _, sg := range st.sightingsOf(rackMAC) {
			if sg.Event == "dhcp ACK" {
				detail = sg.Detail
			}
		}
		if detail != `via relay 198.18.1.1, circuit-id "rack1", remote-id "sw1"` {
			t.Errorf("timeline detail of the ACK = %q", detail)
		}
	})

	t.Run("unknown client behind a relay gets the relay subnet's pool", func(t *testing.T) {
		ip := func(mac string) netip.Addr {
			offer, _ := viaRelay(t, s, packet(mac, dhcpv4.MessageTypeDiscover, relayedBy(rack1)))
			wantType(t, offer, dhcpv4.MessageTypeOffer)
			wantRemoteLease(t, offer, yiaddr(offer), rack1, 24, "198.18.1.53")
			ack, _ := viaRelay(t, s, packet(mac, dhcpv4.MessageTypeRequest, relayedBy(rack1), serverID(flintIP), requested(yiaddr(offer))))
			wantType(t, ack, dhcpv4.MessageTypeAck)
			return yiaddr(ack)
		}
		a, b := ip("02:00:00:00:01:01"), ip("02:00:00:00:01:02")
		if a == b || a.Compare(a4("198.18.1.100")) < 0 || b.Compare(a4("198.18.1.101")) > 0 {
			t.Errorf("pool addresses %s and %s, want both of 198.18.1.100-101", a, b)
		}
		// That pool is full now; flint's own pool is not touched by it.
		reply, _ := viaRelay(t, s, packet("02:00:00:00:01:03", dhcpv4.MessageTypeDiscover, relayedBy(rack1)))
		wantNoReply(t, reply)
		local := dora(t, s, "02:00:00:00:00:03")
		if !netip.MustParsePrefix("198.18.0.0/24").Contains(local) {
			t.Errorf("local client got %s", local)
		}
		if st := s.PoolStats(); st.Size != 100+2 || st.Bound != 3 {
			t.Errorf("pool stats %+v, want 102 addresses, 3 bound", st)
		}
	})

	t.Run("local machine keeps its own subnet", func(t *testing.T) {
		offer, dst := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(0)))
		wantType(t, offer, dhcpv4.MessageTypeOffer)
		wantRemoteLease(t, offer, nuc1IP, routerIP, 24, "198.18.0.53")
		if dst.String() != "255.255.255.255:68" {
			t.Errorf("local offer sent to %s", dst)
		}
	})

	t.Run("a machine of one subnet asking from another gets nothing", func(t *testing.T) {
		reply, _ := viaRelay(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(rack1)))
		wantNoReply(t, reply)
		if !strings.Contains(logs.String(), "nuc1's address 198.18.0.10 is not in subnet 198.18.1.0/24") {
			t.Errorf("log does not say why:\n%s", logs)
		}
		wantSighting(t, st, nuc1MAC, "dhcp DISCOVER (ignored)", "nuc1's address 198.18.0.10 is not in subnet 198.18.1.0/24, where the request comes from: plug it into its own segment or change its ip; via relay 198.18.1.1")
		// A port's machine asked for on a relay of another subnet: on its timeline too.
		reply, _ = viaRelay(t, s, packet("02:00:00:00:99:07", dhcpv4.MessageTypeDiscover, relayedBy(rack1), opt82(1, "slot7")))
		wantNoReply(t, reply)
		wantSighting(t, st, "02:00:c6:12:02:11", "dhcp DISCOVER (ignored)", "bench7's address 198.18.2.17 is not in subnet 198.18.1.0/24, where the request comes from: plug it into its own segment or change its ip; box 02:00:00:00:99:07, chosen by its relay port; via relay 198.18.1.1, circuit-id \"slot7\"")
	})

	t.Run("giaddr in no subnet: dropped, logged once", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			reply, _ := viaRelay(t, s, packet(rackMAC, dhcpv4.MessageTypeDiscover, relayedBy(a4("198.18.9.1"))))
			wantNoReply(t, reply)
		}
		if n := strings.Count(logs.String(), "relayed by giaddr 198.18.9.1, which is in no subnet flint serves"); n != 1 {
			t.Errorf("%d log lines about giaddr 198.18.9.1, want 1 (rate-limited):\n%s", n, logs)
		}
		if !strings.Contains(logs.String(), "giaddr=198.18.9.1") {
			t.Errorf("the line does not name the giaddr:\n%s", logs)
		}
	})

	t.Run("remote client renews directly, after a restart", func(t *testing.T) {
		s2, _, _ := relayServer(t, st)
		// RENEWING: unicast from its address straight to flint, no relay.
		ack, dst := exchangeVia(t, s2, packet(rackMAC, dhcpv4.MessageTypeRequest, ciaddr(a4("198.18.1.11"))), &net.UDPAddr{IP: net.IPv4(198, 18, 1, 11), Port: 68}, viaDHCP)
		wantType(t, ack, dhcpv4.MessageTypeAck)
		wantRemoteLease(t, ack, a4("198.18.1.11"), rack1, 24, "198.18.1.53")
		if dst.String() != "198.18.1.11:68" {
			t.Errorf("renewal ACK sent to %s", dst)
		}
		// An unknown client's remote lease came back into its subnet's book.
		mac := "02:00:00:00:01:01"
		l, ok := s2.allocs[1].leaseFor(mac)
		if !ok || !netip.MustParsePrefix("198.18.1.0/24").Contains(l.IP) {
			t.Fatalf("after restart, %s's lease = %+v %v", mac, l, ok)
		}
		if _, ok := s2.allocs[0].leaseFor(mac); ok {
			t.Errorf("%s's remote lease also in flint's own subnet's book", mac)
		}
		reboot, _ := viaRelay(t, s2, packet(mac, dhcpv4.MessageTypeRequest, relayedBy(rack1), requested(l.IP)))
		wantType(t, reboot, dhcpv4.MessageTypeAck)
	})
}

// A box whose MAC the config does not know gets the machine of the relay
// port it is plugged into (option 82), keeps it when it renews without the
// relay, and a box whose MAC is another machine's is refused on that port.
func TestRelayPortSelectsMachine(t *testing.T) {
	st := newMemStore()
	s, clk, logs := relayServer(t, st)
	box := "02:00:00:00:99:01" // in no config
	port := opt82(1, "slot7")
	bench7IP := a4("198.18.2.17")

	offer, dst := viaRelay(t, s, packet(box, dhcpv4.MessageTypeDiscover, pxe(7), relayedBy(slot), port))
	wantType(t, offer, dhcpv4.MessageTypeOffer)
	wantRemoteLease(t, offer, bench7IP, slot, 25, "")
	if dst.String() != "198.18.2.1:67" {
		t.Errorf("sent to %s", dst)
	}
	if got := offer.HostName(); got != "bench7" {
		t.Errorf("host name %q, want bench7", got)
	}
	if offer.BootFileName != "ipxe.efi" {
		t.Errorf("boot file %q: the box is a machine of the config", offer.BootFileName)
	}
	ack, _ := viaRelay(t, s, packet(box, dhcpv4.MessageTypeRequest, pxe(7), relayedBy(slot), port, serverID(flintIP), requested(bench7IP)))
	wantType(t, ack, dhcpv4.MessageTypeAck)
	if l, ok := st.lease(bench7IP); !ok || l.MAC != box || l.Hostname != "bench7" {
		t.Errorf("lease %+v %v, want bench7's address leased to the box", l, ok)
	}
	// On bench7's timeline, naming the box and the port.
	var detail string
	for _, sg := range st.sightingsOf("02:00:c6:12:02:11") {
		if sg.Event == "dhcp ACK" {
			detail = sg.Detail
		}
	}
	if want := `box 02:00:00:00:99:01, chosen by its relay port; via relay 198.18.2.1, circuit-id "slot7"`; detail != want {
		t.Errorf("bench7's timeline detail %q, want %q", detail, want)
	}

	// Renewing: unicast, no relay, no option 82: its lease says who it is.
	clk.Advance(30 * time.Minute)
	renew, _ := exchangeVia(t, s, packet(box, dhcpv4.MessageTypeRequest, ciaddr(bench7IP)), &net.UDPAddr{IP: ipOf(bench7IP), Port: 68}, viaDHCP)
	wantType(t, renew, dhcpv4.MessageTypeAck)
	if renew.HostName() != "bench7" {
		t.Errorf("renewal host name %q", renew.HostName())
	}

	// The same box on another port is no machine (and gets no pool: there is none).
	other, _ := viaRelay(t, s, packet(box, dhcpv4.MessageTypeDiscover, relayedBy(slot), opt82(1, "slot8")))
	if other != nil && yiaddr(other) == bench7IP {
		t.Errorf("the box on port slot8 was offered bench7's address")
	}

	// Another box swapped into slot7 takes the slot over; the first box's
	// lease is gone with it.
	box2 := "02:00:00:00:99:02"
	ack2, _ := viaRelay(t, s, packet(box2, dhcpv4.MessageTypeRequest, relayedBy(slot), port, requested(bench7IP)))
	wantType(t, ack2, dhcpv4.MessageTypeAck)
	if l, _ := st.lease(bench7IP); l.MAC != box2 {
		t.Errorf("lease of the slot after the swap: %+v", l)
	}
	if _, ok := s.allocs[2].reservedLease(box, clk.Now()); ok {
		t.Errorf("the swapped-out box still holds the slot's address")
	}
	stale, _ := exchangeVia(t, s, packet(box, dhcpv4.MessageTypeRequest, ciaddr(bench7IP)), &net.UDPAddr{IP: ipOf(bench7IP), Port: 68}, viaDHCP)
	if stale != nil && stale.MessageType() == dhcpv4.MessageTypeAck {
		t.Errorf("the swapped-out box renewed the slot's address")
	}

	// nuc1's box plugged into slot7: MAC and port disagree; nothing, and a reason.
	conflict, _ := viaRelay(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, relayedBy(slot), port))
	wantNoReply(t, conflict)
	if !strings.Contains(logs.String(), `its MAC is nuc1's, but the relay port (circuit-id \"slot7\") is bench7's`) {
		t.Errorf("no reason logged:\n%s", logs)
	}

	// Option 82 sent by a client itself (no relay) selects nothing.
	forged, _ := exchange(t, s, packet("02:00:00:00:99:03", dhcpv4.MessageTypeDiscover, port))
	if forged != nil && yiaddr(forged) == bench7IP {
		t.Errorf("a client's own option 82 chose bench7")
	}
}

// wantSighting finds event with detail among mac's sightings.
func wantSighting(t *testing.T, st *memStore, mac, event, detail string) {
	t.Helper()
	var seen []string
	for _, sg := range st.sightingsOf(mac) {
		if sg.Event == event && sg.Detail == detail {
			return
		}
		seen = append(seen, sg.Event+": "+sg.Detail)
	}
	t.Errorf("%s has no %q with detail %q; it has:\n%s", mac, event, detail, strings.Join(seen, "\n"))
}

// server.address left out of the config is read from the interface at
// start: its subnet is flint's own segment then, and one in no subnet stops
// the DHCP service with a reason.
func TestLocalSubnetResolvedAtStart(t *testing.T) {
	text := strings.Replace(relayYAML, "  address: 198.18.0.1\n", "", 1)
	for _, tc := range []struct {
		addr, banner, err string
	}{
		{"198.18.1.5", "198.18.1.0/24 (own segment)", ""},
		{"198.18.0.1", "198.18.0.0/24 (own segment)", ""},
		{"198.18.7.1", "", "server.address 198.18.7.1 is in none of dhcp.subnets"},
	} {
		cfg, err := config.Parse("relay.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Server.AddressIP = a4(tc.addr) // what ResolveAddress does
		s, err := newServer(cfg, newMemStore(), nil, time.Now)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("address %s: err %v, want %q", tc.addr, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(s.Listening(), " "); !strings.Contains(got, tc.banner) {
			t.Errorf("address %s: banner %q, want %q", tc.addr, got, tc.banner)
		}
	}
}
