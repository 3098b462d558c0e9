package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestUEFIHTTPBootReplies follows a UEFI HTTP boot client (arch 16, vendor
// class HTTPClient, as Debian's OVMF sends it) through every reply flint
// makes it, in full and proxy mode: each one names ipxe.efi (or the machine's
// EFI override) by a full http:// URL in the file field, carries option 60
// HTTPClient (firmware ignores HTTP boot offers without it), and nothing in
// it points at TFTP. The iPXE that the firmware then runs gets the script.
func TestUEFIHTTPBootReplies(t *testing.T) {
	const ovmfVC = "HTTPClient:Arch:00016:UNDI:003000"
	ovmf := func(p *dhcpv4.DHCPv4) {
		httpClient(16)(p)
		p.UpdateOption(dhcpv4.OptClassIdentifier(ovmfVC))
	}
	const (
		ipxeURL    = "http://198.18.0.1:8080/ipxe/ipxe.efi"
		snponlyURL = "http://198.18.0.1:8080/ipxe/snponly.efi"
		scriptURL  = "http://198.18.0.1:8080/boot.ipxe"
	)
	bootServer := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 10), Port: 68}
	tests := []struct {
		name    string
		mode    string // full or proxy
		mac     string
		typ     dhcpv4.MessageType
		mods    []dhcpv4.Modifier
		via     string
		want    dhcpv4.MessageType
		file    string
		vc      string // option 60 in the reply
		address bool   // yiaddr set (full mode only)
	}{
		{"full DISCOVER", "full", nuc1MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{ovmf}, viaDHCP, dhcpv4.MessageTypeOffer, ipxeURL, "HTTPClient", true},
		{"full REQUEST", "full", nuc1MAC, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{ovmf, serverID(flintIP), requested(nuc1IP)}, viaDHCP, dhcpv4.MessageTypeAck, ipxeURL, "HTTPClient", true},
		{"full DISCOVER, snponly.efi override", "full", nuc2MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{ovmf}, viaDHCP, dhcpv4.MessageTypeOffer, snponlyURL, "HTTPClient", true},
		{"full, then iPXE", "full", nuc1MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{pxe(7), ipxeUserClass}, viaDHCP, dhcpv4.MessageTypeOffer, scriptURL, "", true},
		{"proxy DISCOVER", "proxy", nuc1MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{ovmf}, viaDHCP, dhcpv4.MessageTypeOffer, ipxeURL, "HTTPClient", false},
		{"proxy REQUEST to flint", "proxy", nuc1MAC, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{ovmf, serverID(flintIP)}, viaDHCP, dhcpv4.MessageTypeAck, ipxeURL, "HTTPClient", false},
		{"proxy REQUEST on the boot server port", "proxy", nuc1MAC, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{ovmf, ciaddr(nuc1IP)}, viaProxy, dhcpv4.MessageTypeAck, ipxeURL, "HTTPClient", false},
		{"proxy DISCOVER, snponly.efi override", "proxy", nuc2MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{ovmf}, viaDHCP, dhcpv4.MessageTypeOffer, snponlyURL, "HTTPClient", false},
		{"proxy, then iPXE", "proxy", nuc1MAC, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{pxe(7), ipxeUserClass}, viaDHCP, dhcpv4.MessageTypeOffer, scriptURL, "PXEClient", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, testConfig(t, cfgOpts{mode: tc.mode}), newMemStore())
			peer := clientPeer
			if tc.via == viaProxy {
				peer = bootServer
			}
			if tc.typ == dhcpv4.MessageTypeRequest && tc.mode == "full" {
				// A full-mode REQUEST follows flint's own OFFER.
				exchange(t, s, packet(tc.mac, dhcpv4.MessageTypeDiscover, tc.mods...))
			}
			reply, _ := exchangeVia(t, s, packet(tc.mac, tc.typ, tc.mods...), peer, tc.via)
			wantType(t, reply, tc.want)
			if reply.BootFileName != tc.file {
				t.Errorf("file %q, want %q", reply.BootFileName, tc.file)
			}
			if vc := reply.ClassIdentifier(); vc != tc.vc {
				t.Errorf("option 60 %q, want %q", vc, tc.vc)
			}
			if got := !reply.YourIPAddr.IsUnspecified(); got != tc.address {
				t.Errorf("yiaddr %s: an address %v, want %v", reply.YourIPAddr, got, tc.address)
			}
			// Nothing to fetch over TFTP: no options 66/67 besides the URL.
			for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName} {
				if reply.Options.Has(o) {
					t.Errorf("option %v in a reply to an HTTP boot client", o)
				}
			}
		})
	}
}
