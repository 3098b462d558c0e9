package dhcp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The seed corpus of FuzzHandleFull and FuzzHandleProxy: packets laid out
// byte for byte as the firmware and clients named send them (option order,
// parameter request lists, vendor classes, padding to the BOOTP minimum).
// Regenerate testdata/fuzz/ after changing them:
//
//	FLINT_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./dhcp/

// rawPkt is a BOOTREQUEST built by hand, independent of the DHCP library.
type rawPkt struct {
	hops                           byte
	xid                            uint32
	secs, flags                    uint16
	ciaddr, yiaddr, siaddr, giaddr netip.Addr
	chaddr                         string
	opts                           [][]byte
}

func (p rawPkt) bytes() []byte {
	b := make([]byte, 236, 576)
	b[0], b[1], b[2], b[3] = 1, 1, 6, p.hops
	binary.BigEndian.PutUint32(b[4:], p.xid)
	binary.BigEndian.PutUint16(b[8:], p.secs)
	binary.BigEndian.PutUint16(b[10:], p.flags)
	for i, a := range []netip.Addr{p.ciaddr, p.yiaddr, p.siaddr, p.giaddr} {
		if a.IsValid() {
			v := a.As4()
			copy(b[12+4*i:], v[:])
		}
	}
	copy(b[28:], mustMAC(p.chaddr))
	b = append(b, 99, 130, 83, 99)
	for _, o := range p.opts {
		b = append(b, o...)
	}
	b = append(b, 255)
	for len(b) < 300 {
		b = append(b, 0)
	}
	return b
}

func opt(code byte, v ...byte) []byte { return append([]byte{code, byte(len(v))}, v...) }
func optS(code byte, v string) []byte { return opt(code, []byte(v)...) }
func optIP(code byte, ip string) []byte {
	a := netip.MustParseAddr(ip).As4()
	return opt(code, a[:]...)
}
func optU16(code byte, v uint16) []byte { return opt(code, byte(v>>8), byte(v)) }

var (
	seedUUID = opt(97, 0, 0x4c, 0x4c, 0x45, 0x44, 0x00, 0x33, 0x10, 0x80, 0x38, 0xb2, 0xc2, 0xc0, 0x4f, 0x4e, 0x32, 0x33)
	// Parameter request lists as sent by the clients named.
	prlIntelPXE = opt(55, 1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135)
	prlEDK2     = opt(55, 1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135)
	prlIPXE     = opt(55, 1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203)
	prlDhclient = opt(55, 1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42)
	prlNetworkd = opt(55, 1, 3, 6, 12, 15, 28, 42, 119, 121, 108)
	prlUdhcpc   = opt(55, 1, 3, 6, 12, 15, 28, 42)
	prlWindows  = opt(55, 1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252)
	// iPXE's option 175: the features it was built with (encapsulated).
	ipxeFeatures = opt(175, 0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0x13, 0x01, 0x01, 0x11, 0x01, 0x01, 0x19, 0x01, 0x01,
		0x1a, 0x01, 0x01, 0x21, 0x01, 0x01, 0x17, 0x01, 0x01, 0x15, 0x01, 0x01, 0x18, 0x01, 0x01, 0x12, 0x01, 0x01, 0xeb, 0x03, 0x01, 0x15, 0x01)
	relayAgent = opt(82, 0x01, 0x06, 'e', 't', 'h', '0', '/', '7', 0x02, 0x06, 0x02, 0x00, 0xc6, 0x12, 0x00, 0x02)
)

func msgType(t dhcpv4.MessageType) []byte { return opt(53, byte(t)) }
func clientID(mac string) []byte          { return opt(61, append([]byte{1}, mustMAC(mac)...)...) }

func pxeBIOS(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), optU16(57, 1260)}
	opts = append(opts, extra...)
	opts = append(opts, prlIntelPXE, seedUUID, opt(94, 1, 2, 1), optU16(93, 0), optS(60, "PXEClient:Arch:00000:UNDI:002001"))
	return rawPkt{xid: 0x2c5e_0a01, secs: 4, flags: 0x8000, chaddr: mac, opts: opts}
}

func pxeUEFI(mac string, arch uint16, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), optU16(57, 1472)}
	opts = append(opts, extra...)
	opts = append(opts, prlEDK2, seedUUID, opt(94, 1, 3, 0), optU16(93, arch), optS(60, fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003000", arch)))
	return rawPkt{xid: 0x7e11_4b02, flags: 0x8000, chaddr: mac, opts: opts}
}

func httpBoot(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), optU16(57, 1472)}
	opts = append(opts, extra...)
	opts = append(opts, prlEDK2, seedUUID, opt(94, 1, 3, 0), optU16(93, 16), optS(60, "HTTPClient:Arch:00016:UNDI:003001"))
	return rawPkt{xid: 0x0bad_cafe, flags: 0x8000, chaddr: mac, opts: opts}
}

func ipxe(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), optU16(57, 1472), optU16(93, 7), opt(94, 1, 3, 16), optS(60, "PXEClient:Arch:00007:UNDI:003010"), optS(77, "iPXE"), prlIPXE, ipxeFeatures, clientID(mac), seedUUID}
	opts = append(opts, extra...)
	return rawPkt{xid: 0x1a2b_3c04, chaddr: mac, opts: opts}
}

func dhclient(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t)}
	opts = append(opts, extra...)
	opts = append(opts, optS(12, "node"), prlDhclient)
	return rawPkt{xid: 0x5eed_0005, chaddr: mac, opts: opts}
}

func networkd(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), optU16(57, 576), opt(61, 0xff, 0x5b, 0x6d, 0xc0, 0x2a, 0x00, 0x02, 0x00, 0x00, 0xab, 0x11, 0x4e, 0x5f, 0x3b, 0x0c, 0x9d, 0x6a, 0x77, 0x21)}
	opts = append(opts, extra...)
	opts = append(opts, optS(12, "flatcar"), prlNetworkd)
	return rawPkt{xid: 0x3f00_0006, chaddr: mac, opts: opts}
}

func udhcpc(mac string, t dhcpv4.MessageType, extra ...[]byte) rawPkt {
	opts := [][]byte{msgType(t), clientID(mac)}
	opts = append(opts, extra...)
	opts = append(opts, optU16(57, 576), optS(60, "udhcp 1.36.1"), optS(12, "box"), prlUdhcpc)
	return rawPkt{xid: 0x0dd0_0007, chaddr: mac, opts: opts}
}

func relayed(p rawPkt) rawPkt {
	p.giaddr, p.hops = netip.MustParseAddr("198.18.0.2"), 1
	p.opts = append(p.opts, relayAgent)
	return p
}

func withCiaddr(p rawPkt, ip string) rawPkt { p.ciaddr = netip.MustParseAddr(ip); return p }

func addrU32(ip string) uint32 {
	a := netip.MustParseAddr(ip).As4()
	return binary.BigEndian.Uint32(a[:])
}

type fuzzSeed struct {
	name string
	pkt  rawPkt
	peer string // sender address
	// later (full mode): seconds before the packet comes again;
	// bootServer (proxy mode): it came to server.proxy_port.
	later      uint16
	bootServer bool
}

// In the full-mode prelude (fullPrelude) 02:00:c6:12:01:01 leased .100,
// 02:00:c6:12:01:02 was offered .101, 02:00:c6:12:01:03 declined .102, and
// nuc1 (02:00:c6:12:00:0a) leased its reservation .10.
func fullSeeds() []fuzzSeed {
	const (
		leased, held, declined, free = "198.18.0.100", "198.18.0.101", "198.18.0.102", "198.18.0.103"
		flint, relay, other          = "198.18.0.1", "198.18.0.2", "198.18.0.66"
		newMAC                       = "02:00:c6:12:01:04"
	)
	sid := func(ip string) []byte { return optIP(54, ip) }
	want := func(ip string) []byte { return optIP(50, ip) }
	return []fuzzSeed{
		{"pxe-bios-discover-known", pxeBIOS(nuc1MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 4, false},
		{"pxe-bios-discover-unknown", pxeBIOS(newMAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 31, false},
		{"pxe-bios-request-known", pxeBIOS(nuc1MAC, dhcpv4.MessageTypeRequest, want("198.18.0.10"), sid(flint)), "0.0.0.0", 0, false},
		{"pxe-uefi-discover-known", pxeUEFI(nuc2MAC, 7, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"pxe-uefi-request-held", pxeUEFI(macN(2), 7, dhcpv4.MessageTypeRequest, sid(flint), want(held)), "0.0.0.0", 3600, false},
		{"pxe-uefi-request-someone-elses", pxeUEFI(newMAC, 7, dhcpv4.MessageTypeRequest, sid(flint), want(leased)), "0.0.0.0", 3601, false},
		{"pxe-arm64-discover", pxeUEFI(newMAC, 11, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"http-boot-discover", httpBoot(nuc1MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"ipxe-discover-known", ipxe(nuc1MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 2, false},
		{"ipxe-request-known", ipxe(nuc1MAC, dhcpv4.MessageTypeRequest, want("198.18.0.10"), sid(flint)), "0.0.0.0", 0, false},
		{"ipxe-request-pool", ipxe(macN(1), dhcpv4.MessageTypeRequest, want(leased), sid(flint)), "0.0.0.0", 1800, false},
		{"dhclient-discover-asks-old-address", dhclient(newMAC, dhcpv4.MessageTypeDiscover, want(declined)), "0.0.0.0", 601, false},
		{"dhclient-request-selecting", dhclient(macN(2), dhcpv4.MessageTypeRequest, sid(flint), want(held)), "0.0.0.0", 0, false},
		{"dhclient-request-other-server", dhclient(macN(2), dhcpv4.MessageTypeRequest, sid(other), want(other)), "0.0.0.0", 0, false},
		{"dhclient-renew", withCiaddr(dhclient(macN(1), dhcpv4.MessageTypeRequest), leased), leased, 7200, false},
		{"dhclient-rebind-someone-elses", withCiaddr(dhclient(newMAC, dhcpv4.MessageTypeRequest), leased), leased, 0, false},
		{"dhclient-init-reboot", dhclient(macN(1), dhcpv4.MessageTypeRequest, want(leased)), "0.0.0.0", 0, false},
		{"dhclient-init-reboot-no-record", dhclient(newMAC, dhcpv4.MessageTypeRequest, want(free)), "0.0.0.0", 0, false},
		{"dhclient-release", withCiaddr(dhclient(macN(1), dhcpv4.MessageTypeRelease, sid(flint)), leased), leased, 5, false},
		{"release-spoofed-other-address", withCiaddr(dhclient(macN(1), dhcpv4.MessageTypeRelease, sid(flint)), leased), other, 5, false},
		{"release-spoofed-reservation", withCiaddr(dhclient(nuc1MAC, dhcpv4.MessageTypeRelease, sid(flint)), "198.18.0.10"), "0.0.0.0", 0, false},
		{"release-reservation-by-holder", withCiaddr(dhclient(nuc1MAC, dhcpv4.MessageTypeRelease, sid(flint)), "198.18.0.10"), "198.18.0.10", 0, false},
		{"dhclient-decline-held", dhclient(macN(2), dhcpv4.MessageTypeDecline, want(held), sid(flint)), "0.0.0.0", 601, false},
		{"decline-spoofed-lease", dhclient(macN(1), dhcpv4.MessageTypeDecline, want(leased), sid(flint)), other, 0, false},
		{"networkd-discover", networkd(nuc2MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"networkd-request-reservation", networkd(nuc2MAC, dhcpv4.MessageTypeRequest, sid(flint), want("198.18.0.11")), "0.0.0.0", 0, false},
		{"udhcpc-discover", udhcpc(newMAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"udhcpc-request-flint-address", udhcpc(newMAC, dhcpv4.MessageTypeRequest, want(flint)), "0.0.0.0", 0, false},
		{"relayed-pxe-discover", relayed(pxeBIOS(newMAC, dhcpv4.MessageTypeDiscover)), relay, 0, false},
		{"relayed-pxe-request", relayed(pxeUEFI(macN(2), 7, dhcpv4.MessageTypeRequest, sid(flint), want(held))), relay, 0, false},
		{"relayed-release", relayed(withCiaddr(dhclient(macN(1), dhcpv4.MessageTypeRelease, sid(flint)), leased)), relay, 0, false},
		{"relayed-far-subnet", func() rawPkt {
			p := relayed(dhclient(newMAC, dhcpv4.MessageTypeDiscover))
			p.giaddr = netip.MustParseAddr("198.19.0.1")
			return p
		}(), "198.19.0.1", 0, false},
		{"windows-inform", withCiaddr(rawPkt{xid: 0x77_0008, chaddr: newMAC, opts: [][]byte{msgType(dhcpv4.MessageTypeInform), clientID(newMAC), optS(12, "DESKTOP-7Q1"), optS(60, "MSFT 5.0"), prlWindows}}, "198.18.0.42"), "198.18.0.42", 0, false},
	}
}

func proxySeeds() []fuzzSeed {
	const (
		flint, realServer, taken, relay = "198.18.0.1", "198.18.0.254", "198.18.0.77", "198.18.0.2"
		phone, newMAC                   = "02:00:c6:12:02:01", "02:00:c6:12:01:04"
	)
	sid := func(ip string) []byte { return optIP(54, ip) }
	want := func(ip string) []byte { return optIP(50, ip) }
	return []fuzzSeed{
		{"pxe-bios-discover-known", pxeBIOS(nuc1MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"pxe-uefi-discover-known", pxeUEFI(nuc2MAC, 7, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"pxe-uefi-discover-unknown", pxeUEFI(newMAC, 7, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"pxe-arm64-discover", pxeUEFI(nuc1MAC, 11, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"pxe-uefi-request-real-server", pxeUEFI(nuc1MAC, 7, dhcpv4.MessageTypeRequest, sid(realServer), want(taken)), "0.0.0.0", 0, false},
		{"pxe-uefi-request-flint", pxeUEFI(nuc1MAC, 7, dhcpv4.MessageTypeRequest, sid(flint), want(taken)), "0.0.0.0", 0, false},
		{"pxe-uefi-request-boot-server", withCiaddr(pxeUEFI(nuc1MAC, 7, dhcpv4.MessageTypeRequest), taken), taken, 0, true},
		{"pxe-bios-discover-boot-server", pxeBIOS(nuc2MAC, dhcpv4.MessageTypeDiscover), taken, 0, true},
		{"http-boot-discover", httpBoot(nuc1MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"ipxe-discover-known", ipxe(nuc2MAC, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"ipxe-request-real-server", ipxe(nuc2MAC, dhcpv4.MessageTypeRequest, sid(realServer), want(taken)), "0.0.0.0", 0, false},
		{"networkd-request-real-server", networkd(nuc1MAC, dhcpv4.MessageTypeRequest, sid(realServer), want(taken)), "0.0.0.0", 0, false},
		{"dhclient-init-reboot-known", dhclient(nuc1MAC, dhcpv4.MessageTypeRequest, want(taken)), "0.0.0.0", 0, false},
		{"dhclient-rebind-known", withCiaddr(dhclient(nuc1MAC, dhcpv4.MessageTypeRequest), taken), taken, 0, false},
		{"phone-request-real-server", udhcpc(phone, dhcpv4.MessageTypeRequest, sid(realServer), want("198.18.0.88")), "0.0.0.0", 0, false},
		{"phone-discover", udhcpc(phone, dhcpv4.MessageTypeDiscover), "0.0.0.0", 0, false},
		{"relayed-pxe-discover", relayed(pxeBIOS(nuc1MAC, dhcpv4.MessageTypeDiscover)), relay, 0, false},
		{"dhclient-release-known", withCiaddr(dhclient(nuc1MAC, dhcpv4.MessageTypeRelease, sid(realServer)), taken), taken, 0, false},
		{"windows-inform", withCiaddr(rawPkt{xid: 0x77_0008, chaddr: newMAC, opts: [][]byte{msgType(dhcpv4.MessageTypeInform), clientID(newMAC), optS(12, "DESKTOP-7Q1"), optS(60, "MSFT 5.0"), prlWindows}}, "198.18.0.42"), "198.18.0.42", 0, true},
	}
}

// corpusFile encodes a seed in the `go test fuzz v1` format.
func corpusFile(pkt []byte, peer uint32, last any) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nuint32(%d)\n%T(%v)\n", pkt, peer, last, last)
}

// seedFiles is the corpus as files: target -> name -> contents.
func seedFiles() map[string]map[string][]byte {
	out := map[string]map[string][]byte{"FuzzHandleFull": {}, "FuzzHandleProxy": {}}
	for _, sd := range fullSeeds() {
		out["FuzzHandleFull"][sd.name] = corpusFile(sd.pkt.bytes(), addrU32(sd.peer), sd.later)
	}
	for _, sd := range proxySeeds() {
		out["FuzzHandleProxy"][sd.name] = corpusFile(sd.pkt.bytes(), addrU32(sd.peer), sd.bootServer)
	}
	return out
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("FLINT_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set FLINT_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz/")
	}
	for target, files := range seedFiles() {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzSeedsAreCurrent: the committed corpus is what the builders above
// make, and every seed is a DHCP packet the server reads (a seed the parser
// rejects would test nothing).
func TestFuzzSeedsAreCurrent(t *testing.T) {
	for _, sd := range append(fullSeeds(), proxySeeds()...) {
		req, err := dhcpv4.FromBytes(sd.pkt.bytes())
		if err != nil {
			t.Errorf("%s does not parse: %v", sd.name, err)
		} else if req.MessageType() == dhcpv4.MessageTypeNone || len(req.ClientHWAddr) != 6 {
			t.Errorf("%s: no message type or chaddr", sd.name)
		}
	}
	for target, files := range seedFiles() {
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("testdata/fuzz/%s/%s is missing or stale (%v): FLINT_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./dhcp/", target, name, err)
			}
		}
	}
}
