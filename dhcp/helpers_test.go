package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// Test network: everything lives in 198.18.0.0/15 (RFC 2544 benchmarking).
var (
	flintIP  = netip.MustParseAddr("198.18.0.1")
	routerIP = netip.MustParseAddr("198.18.0.254")
	nuc1MAC  = "02:00:c6:12:00:0a"
	nuc1IP   = netip.MustParseAddr("198.18.0.10")
	nuc2MAC  = "02:00:c6:12:00:0b" // pinned to snponly.efi
	nuc2IP   = netip.MustParseAddr("198.18.0.11")
)

const baseYAML = `
server:
  address: 198.18.0.1
  http_port: 8080
dhcp:
  mode: MODE
  subnet: 198.18.0.0/24
  router: 198.18.0.254
  dns: [198.18.0.53, 198.18.0.54]
  domain: lab.test
POOL
  lease_time: 1h
  offer_hold: 30s
  decline_hold: 10m
  discover_unknown: UNKNOWN
cluster: {install_mode: live}
machines:
  - {mac: "02:00:c6:12:00:0a", hostname: nuc1, ip: 198.18.0.10, role: server}
  - {mac: "02:00:c6:12:00:0b", hostname: nuc2, ip: 198.18.0.11, role: agent, ipxe_binary: snponly.efi}
`

type cfgOpts struct {
	mode            string // default full
	poolStart       string // "" with poolEnd "": no pool
	poolEnd         string
	discoverUnknown bool
	dhcpPort        int
	proxyPort       int
}

func testConfig(t testing.TB, o cfgOpts) *config.Config {
	t.Helper()
	if o.mode == "" {
		o.mode = config.ModeFull
	}
	pool := ""
	if o.poolStart != "" {
		pool = "  pool: {start: " + o.poolStart + ", end: " + o.poolEnd + "}"
	}
	y := strings.NewReplacer("MODE", o.mode, "POOL", pool, "UNKNOWN", map[bool]string{true: "true", false: "false"}[o.discoverUnknown]).Replace(baseYAML)
	if o.dhcpPort != 0 {
		y = strings.Replace(y, "http_port: 8080", "http_port: 8080\n  dhcp_port: "+strconv.Itoa(o.dhcpPort)+"\n  proxy_port: "+strconv.Itoa(o.proxyPort), 1)
	}
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	if cfg.Server.AddressIP != flintIP {
		t.Fatalf("test config: address %v", cfg.Server.AddressIP)
	}
	return cfg
}

// memStore is an in-memory store.Store that can be told to fail lease writes.
type memStore struct {
	mu        sync.Mutex
	leases    map[netip.Addr]store.Lease
	sightings []store.Sighting
	failPut   bool
}

func newMemStore() *memStore { return &memStore{leases: map[netip.Addr]store.Lease{}} }

func (m *memStore) PutLease(l store.Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut {
		return errors.New("disk on fire")
	}
	m.leases[l.IP] = l
	return nil
}

func (m *memStore) DeleteLease(ip netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, ip)
	return nil
}

func (m *memStore) Leases() ([]store.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Lease
	for _, l := range m.leases {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}

func (m *memStore) lease(ip netip.Addr) (store.Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.leases[ip]
	return l, ok
}

func (m *memStore) RecordSighting(s store.Sighting) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sightings = append(m.sightings, s)
	return nil
}

// UpdateMachine implements store.Store (lifecycle is not the DHCP server's business).
func (m *memStore) UpdateMachine(mac string, fn func(*store.Machine) error) (store.Machine, error) {
	rec := store.Machine{MAC: mac}
	err := fn(&rec)
	return rec, err
}

// Events implements store.Store (the timeline is not needed by these tests).
func (m *memStore) Events(mac string) ([]store.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Event
	for _, s := range m.sightings {
		if s.MAC == mac && s.Event != "" {
			out = append(out, store.Event{At: s.At, MAC: s.MAC, Event: s.Event, IP: s.IP, Detail: s.Detail})
		}
	}
	return out, nil
}

// events lists the sighting events of one MAC, in no particular order.
func (m *memStore) events(mac string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.sightings {
		if s.MAC == mac {
			out = append(out, s.Event)
		}
	}
	sort.Strings(out)
	return out
}

func (m *memStore) sightingsOf(mac string) []store.Sighting {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Sighting
	for _, s := range m.sightings {
		if s.MAC == mac {
			out = append(out, s)
		}
	}
	return out
}

func (m *memStore) Machines() ([]store.Machine, error)          { return nil, nil }
func (m *memStore) SyncConfig(known []store.KnownMachine) error { return nil }
func (m *memStore) Version() uint64                             { return 0 }
func (m *memStore) Close() error                                { return nil }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestServer(t *testing.T, cfg *config.Config, st store.Store) (*Server, *clock) {
	t.Helper()
	c := &clock{t: t0}
	s, err := newServer(cfg, st, nil, c.Now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, c
}

// Packet building.

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func packet(mac string, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	base := []dhcpv4.Modifier{dhcpv4.WithHwAddr(mustMAC(mac)), dhcpv4.WithMessageType(typ)}
	p, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		panic(err)
	}
	// Through the wire format, as the server would see it.
	q, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		panic(err)
	}
	return q
}

func pxe(arch uint16) dhcpv4.Modifier {
	return func(p *dhcpv4.DHCPv4) {
		p.UpdateOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003016", arch)))
		p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, binary.BigEndian.AppendUint16(nil, arch)))
	}
}

func httpClient(arch uint16) dhcpv4.Modifier {
	return func(p *dhcpv4.DHCPv4) {
		p.UpdateOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", arch)))
		p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, binary.BigEndian.AppendUint16(nil, arch)))
	}
}

func ipxeUserClass(p *dhcpv4.DHCPv4) {
	p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
}

var testUUID = append([]byte{0}, []byte("0123456789abcdef")...)

func withUUID(p *dhcpv4.DHCPv4) {
	p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, testUUID))
}

func requested(ip netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipOf(ip)))
}

func serverID(ip netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(ip)))
}

func ciaddr(ip netip.Addr) dhcpv4.Modifier { return dhcpv4.WithClientIP(ipOf(ip)) }

var clientPeer = &net.UDPAddr{IP: net.IPv4zero, Port: 68}

// exchange sends req through handle and returns the reply as it would look
// on the wire.
func exchange(t *testing.T, s *Server, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	t.Helper()
	return exchangeVia(t, s, req, clientPeer, viaDHCP)
}

func exchangeVia(t *testing.T, s *Server, req *dhcpv4.DHCPv4, peer *net.UDPAddr, via string) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	t.Helper()
	reply, dst := s.handle(req, peer, via)
	if reply == nil {
		return nil, dst
	}
	wire, err := dhcpv4.FromBytes(reply.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if wire.TransactionID != req.TransactionID {
		t.Fatalf("reply xid %s, request %s", wire.TransactionID, req.TransactionID)
	}
	if wire.ClientHWAddr.String() != req.ClientHWAddr.String() {
		t.Fatalf("reply chaddr %s, request %s", wire.ClientHWAddr, req.ClientHWAddr)
	}
	return wire, dst
}

func yiaddr(p *dhcpv4.DHCPv4) netip.Addr {
	a, _ := netip.AddrFromSlice(p.YourIPAddr.To4())
	return a
}

// dora runs DISCOVER, OFFER, REQUEST, ACK and returns the acked address.
func dora(t *testing.T, s *Server, mac string, mods ...dhcpv4.Modifier) netip.Addr {
	t.Helper()
	offer, _ := exchange(t, s, packet(mac, dhcpv4.MessageTypeDiscover, mods...))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("%s: DISCOVER got %v, want OFFER", mac, offer)
	}
	ip := yiaddr(offer)
	ack, _ := exchange(t, s, packet(mac, dhcpv4.MessageTypeRequest, append(mods, serverID(flintIP), requested(ip))...))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("%s: REQUEST %s got %v, want ACK", mac, ip, ack)
	}
	if got := yiaddr(ack); got != ip {
		t.Fatalf("%s: ACK for %s, offered %s", mac, got, ip)
	}
	return ip
}

func wantType(t *testing.T, p *dhcpv4.DHCPv4, want dhcpv4.MessageType) {
	t.Helper()
	if p == nil {
		t.Fatalf("no reply, want %s", want)
	}
	if got := p.MessageType(); got != want {
		t.Fatalf("reply %s, want %s (message %q)", got, want, p.Message())
	}
}

func wantNoReply(t *testing.T, p *dhcpv4.DHCPv4) {
	t.Helper()
	if p != nil {
		t.Fatalf("got %s, want no reply:\n%s", p.MessageType(), p.Summary())
	}
}
