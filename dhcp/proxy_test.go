package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func proxyServer(t *testing.T, discoverUnknown bool) (*Server, *memStore, *clock) {
	t.Helper()
	st := newMemStore()
	s, c := newTestServer(t, testConfig(t, cfgOpts{mode: "proxy", discoverUnknown: discoverUnknown}), st)
	return s, st, c
}

// checkProxyReply checks what makes a reply a proxyDHCP answer.
func checkProxyReply(t *testing.T, p *dhcpv4.DHCPv4, typ dhcpv4.MessageType, file, vendorClass string) {
	t.Helper()
	wantType(t, p, typ)
	if !p.YourIPAddr.IsUnspecified() {
		t.Errorf("yiaddr %s, want 0.0.0.0 (the other server owns addresses)", p.YourIPAddr)
	}
	if p.ServerIPAddr.String() != "198.18.0.1" {
		t.Errorf("siaddr %s", p.ServerIPAddr)
	}
	if p.BootFileName != file {
		t.Errorf("file %q, want %q", p.BootFileName, file)
	}
	if got := p.ClassIdentifier(); got != vendorClass {
		t.Errorf("option 60 %q, want %q", got, vendorClass)
	}
	if got := p.ServerIdentifier().String(); got != "198.18.0.1" {
		t.Errorf("option 54 %s", got)
	}
	if got := p.Options.Get(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, []byte{6, 1, 8, 255}) {
		t.Errorf("option 43 %x, want 060108ff (PXE discovery control: boot the file)", got)
	}
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter} {
		if p.Options.Has(o) {
			t.Errorf("proxy reply carries %s", o)
		}
	}
}

func TestProxyKnownPXEClientGetsOffer(t *testing.T) {
	s, st, _ := proxyServer(t, false)
	offer, dst := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7), withUUID))
	checkProxyReply(t, offer, dhcpv4.MessageTypeOffer, "ipxe.efi", "PXEClient")
	if got := offer.Options.Get(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, testUUID) {
		t.Errorf("option 97 %x, want %x", got, testUUID)
	}
	if dst.String() != "255.255.255.255:68" {
		t.Errorf("sent to %s, want broadcast", dst)
	}

	// Without option 97 (real NIC ROMs) there is none in the reply either.
	offer, _ = exchange(t, s, packet(nuc2MAC, dhcpv4.MessageTypeDiscover, pxe(7)))
	checkProxyReply(t, offer, dhcpv4.MessageTypeOffer, "snponly.efi", "PXEClient")
	if offer.Options.Has(dhcpv4.OptionClientMachineIdentifier) {
		t.Error("option 97 invented")
	}

	// iPXE gets the script.
	offer, _ = exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(0), ipxeUserClass))
	checkProxyReply(t, offer, dhcpv4.MessageTypeOffer, "http://198.18.0.1:8080/boot.ipxe", "PXEClient")

	// UEFI HTTP boot gets a URL and HTTPClient.
	offer, _ = exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeDiscover, httpClient(16)))
	checkProxyReply(t, offer, dhcpv4.MessageTypeOffer, "http://198.18.0.1:8080/ipxe/ipxe.efi", "HTTPClient")

	if ev := st.events(nuc1MAC); len(ev) != 3 || ev[0] != "dhcp proxy OFFER" {
		t.Errorf("sightings %q", ev)
	}
	if leases, _ := st.Leases(); len(leases) != 0 {
		t.Errorf("proxy mode stored leases: %+v", leases)
	}
}

func TestProxyRequestOnDHCPPortGetsAck(t *testing.T) {
	s, st, _ := proxyServer(t, false)
	// The client taking the real server's offer: an address-less ACK from us
	// could win the race and leave it without an address. Silence.
	other := serverID(ipFrom(net.ParseIP("198.18.0.254")))
	reply, _ := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), other, requested(nuc1IP)))
	wantNoReply(t, reply)
	// A REQUEST addressed to flint (some firmware asks for boot info so) gets the ACK.
	ack, dst := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), serverID(flintIP), requested(nuc1IP)))
	checkProxyReply(t, ack, dhcpv4.MessageTypeAck, "ipxe.efi", "PXEClient")
	if dst.String() != "255.255.255.255:68" {
		t.Errorf("sent to %s", dst)
	}
	if leases, _ := st.Leases(); len(leases) != 0 {
		t.Errorf("proxy mode stored leases: %+v", leases)
	}
}

func TestProxyUnknownMACGetsNothingButIsRecorded(t *testing.T) {
	s, st, _ := proxyServer(t, false)
	reply, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeDiscover, pxe(7)))
	wantNoReply(t, reply)
	ev := st.events(macN(1))
	if len(ev) != 1 || ev[0] != "dhcp DISCOVER (ignored: unknown machine and dhcp.discover_unknown is false)" {
		t.Errorf("sightings %q: unknown PXE clients show as discovered", ev)
	}
	if sg := st.sightingsOf(macN(1)); len(sg) == 1 && sg[0].Arch != "x86-64 UEFI" {
		t.Errorf("sighting arch %q", sg[0].Arch)
	}
}

func TestProxyDiscoverUnknown(t *testing.T) {
	s, _, _ := proxyServer(t, true)
	offer, _ := exchange(t, s, packet(macN(1), dhcpv4.MessageTypeDiscover, pxe(0)))
	checkProxyReply(t, offer, dhcpv4.MessageTypeOffer, "undionly.kpxe", "PXEClient")
}

func TestProxyNonPXEClientIsIgnored(t *testing.T) {
	s, st, _ := proxyServer(t, true)
	for _, mac := range []string{nuc1MAC, macN(1)} {
		reply, _ := exchange(t, s, packet(mac, dhcpv4.MessageTypeDiscover))
		wantNoReply(t, reply)
		reply, _ = exchange(t, s, packet(mac, dhcpv4.MessageTypeRequest, requested(nuc1IP)))
		wantNoReply(t, reply)
	}
	if ev := st.events(macN(1)); len(ev) != 0 {
		t.Errorf("a LAN's ordinary DHCP clients were recorded: %q", ev)
	}
}

func TestProxyBootServerPort(t *testing.T) {
	s, st, _ := proxyServer(t, false)
	client := ipFrom(net.ParseIP("198.18.0.77"))
	peer := &net.UDPAddr{IP: ipOf(client), Port: 4011}
	req := packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), withUUID, ciaddr(client))
	ack, dst := exchangeVia(t, s, req, peer, viaProxy)
	checkProxyReply(t, ack, dhcpv4.MessageTypeAck, "ipxe.efi", "PXEClient")
	if dst.String() != "198.18.0.77:4011" {
		t.Errorf("sent to %s, want back to the sender 198.18.0.77:4011", dst)
	}
	if got := ipFrom(ack.ClientIPAddr); got != client {
		t.Errorf("ciaddr %s", got)
	}
	if got := ack.Options.Get(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, testUUID) {
		t.Errorf("option 97 %x", got)
	}

	// Unknown and non-PXE clients get nothing here either.
	reply, _ := exchangeVia(t, s, packet(macN(1), dhcpv4.MessageTypeRequest, pxe(7)), peer, viaProxy)
	wantNoReply(t, reply)
	reply, _ = exchangeVia(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRequest), peer, viaProxy)
	wantNoReply(t, reply)
	reply, _ = exchangeVia(t, s, packet(nuc1MAC, dhcpv4.MessageTypeInform, pxe(7)), peer, viaProxy)
	wantNoReply(t, reply)

	if ev := st.events(nuc1MAC); len(ev) != 1 || ev[0] != "dhcp proxy ACK (boot server)" {
		t.Errorf("sightings %q", ev)
	}
	if leases, _ := st.Leases(); len(leases) != 0 {
		t.Errorf("proxy mode stored leases: %+v", leases)
	}
}

// TestProxyRecordsTheAddressAMachineTakes: flint hears the broadcast REQUEST
// a machine sends to the real DHCP server. For the config's machines it
// records the address (option 50, else ciaddr) as the one taken from DHCP,
// without answering; other clients stay unrecorded.
func TestProxyRecordsTheAddressAMachineTakes(t *testing.T) {
	realServer := netip.MustParseAddr("198.18.0.254")
	taken := netip.MustParseAddr("198.18.0.77")
	tests := []struct {
		name  string
		req   *dhcpv4.DHCPv4
		event string // "": nothing recorded
	}{
		{"selecting another server's offer", packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), serverID(realServer), requested(taken)),
			"dhcp REQUEST to 198.18.0.254 for 198.18.0.77"},
		{"the OS, not netbooting", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer), requested(taken)),
			"dhcp REQUEST to 198.18.0.254 for 198.18.0.77"},
		{"init-reboot (no server identifier)", packet(nuc1MAC, dhcpv4.MessageTypeRequest, requested(taken)),
			"dhcp REQUEST to another server for 198.18.0.77"},
		{"rebinding (ciaddr only)", packet(nuc1MAC, dhcpv4.MessageTypeRequest, ciaddr(taken)),
			"dhcp REQUEST to another server for 198.18.0.77"},
		{"option 50 wins over ciaddr", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer), requested(taken), ciaddr(netip.MustParseAddr("198.18.0.78"))),
			"dhcp REQUEST to 198.18.0.254 for 198.18.0.77"},
		{"no address", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer)), ""},
		{"address outside dhcp.subnet", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer), requested(netip.MustParseAddr("203.0.113.9"))), ""},
		{"flint's own address", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer), requested(flintIP)), ""},
		{"broadcast address", packet(nuc1MAC, dhcpv4.MessageTypeRequest, serverID(realServer), requested(netip.MustParseAddr("198.18.0.255"))), ""},
		{"unknown MAC", packet(macN(1), dhcpv4.MessageTypeRequest, pxe(7), serverID(realServer), requested(taken)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, st, _ := proxyServer(t, true)
			reply, _ := exchange(t, s, tc.req)
			wantNoReply(t, reply)
			sgs := st.sightingsOf(tc.req.ClientHWAddr.String())
			if tc.event == "" {
				if len(sgs) != 0 {
					t.Errorf("recorded %+v", sgs)
				}
				return
			}
			if len(sgs) != 1 {
				t.Fatalf("sightings %+v, want one", sgs)
			}
			if sg := sgs[0]; sg.Event != tc.event || sg.IP != taken || !sg.DHCPAddr || sg.TimelineOnly {
				t.Errorf("sighting %q ip %v DHCPAddr %v, want %q ip %v DHCPAddr true", sg.Event, sg.IP, sg.DHCPAddr, tc.event, taken)
			}
		})
	}

	// A REQUEST to flint itself asks for boot information: answered, and not
	// an address the machine took.
	s, st, _ := proxyServer(t, false)
	ack, _ := exchange(t, s, packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7), serverID(flintIP), ciaddr(taken)))
	wantType(t, ack, dhcpv4.MessageTypeAck)
	if sgs := st.sightingsOf(nuc1MAC); len(sgs) != 1 || sgs[0].Event != "dhcp proxy ACK" || sgs[0].DHCPAddr {
		t.Errorf("sightings %+v, want one proxy ACK without DHCPAddr", sgs)
	}
}
