package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dnsmasq's range in the proxy test: the "router" owns these addresses.
const (
	dnsmasqStart = "198.18.0.100"
	dnsmasqEnd   = "198.18.0.150"
)

func inDnsmasqRange(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Compare(netip.MustParseAddr(dnsmasqStart)) >= 0 && a.Compare(netip.MustParseAddr(dnsmasqEnd)) <= 0
}

// startDnsmasq runs dnsmasq as the LAN's DHCP server in its own "router"
// namespace on the bridge, in the foreground, with its lease file in the lab dir.
func (l *Lab) startDnsmasq(t *testing.T) (*Host, *Proc) {
	t.Helper()
	rt := l.AddHost(t, "rt", "02:00:c6:12:00:fe")
	rt.SetAddress(t, routerIP+"/24")
	p := l.Start(t, rt.NS, "dnsmasq", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--dhcp-range="+dnsmasqStart+","+dnsmasqEnd+",255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(l.Dir, "dnsmasq.leases"), "--pid-file="+filepath.Join(l.Dir, "dnsmasq.pid"),
		"--user=root", "--no-ping", "--log-dhcp", "--log-facility=-")
	err := eventually(10*time.Second, 50*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("dnsmasq exited: %v", p.Cmd.ProcessState)
		}
		if !strings.Contains(p.Stderr.String()+p.Stdout.String(), "DHCP, IP range") {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dnsmasq did not start: %v\n%s%s", err, p.Stdout.String(), p.Stderr.String())
	}
	return rt, p
}

// fromFlint splits probe replies into flint's and everybody else's.
func fromFlint(offers []Offer) (flint, others []Offer) {
	for _, o := range offers {
		if o.ServerID == flintIP || strings.HasPrefix(o.From, flintIP+":") {
			flint = append(flint, o)
		} else {
			others = append(others, o)
		}
	}
	return flint, others
}

// wantProxyOffer checks a proxyDHCP reply: no address, flint as next-server
// and server identifier, the boot file, PXEClient and option 43.
func wantProxyOffer(t *testing.T, what string, o Offer, typ, file string) {
	t.Helper()
	checks := []struct{ field, got, want string }{
		{"message type", o.Type, typ},
		{"yiaddr", o.YIAddr, "0.0.0.0"},
		{"siaddr", o.SIAddr, flintIP},
		{"file", o.File, file},
		{"option 54", o.ServerID, flintIP},
		{"option 60", o.VendorClass, "PXEClient"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %s = %q, want %q (%+v)", what, c.field, c.got, c.want, o)
		}
	}
	if _, ok := o.Options["43"]; !ok {
		t.Errorf("%s: no option 43 (PXE vendor options): %+v", what, o)
	} else if o.Option43["6"] != "08" {
		// PXE_DISCOVERY_CONTROL bit 3: boot the file, no boot-server discovery.
		t.Errorf("%s: option 43 = %s, want sub-option 6 (discovery control) = 08", what, o.Options["43"])
	}
}

// TestProxyDHCP: dnsmasq owns the addresses; flint answers only PXE requests
// of its machines with a proxyDHCP offer (no address), and on UDP 4011.
func TestProxyDHCP(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "udhcpc", "dnsmasq", "curl")
	l := NewLab(t)
	_, dnsmasq := l.startDnsmasq(t)
	cfg := l.WriteConfig(t, siteConfig{Mode: "proxy", Machines: []machine{node1, node2}})
	fl := l.StartFlint(t, cfg, filepath.Join(l.Dir, "data"))

	p1 := l.AddHost(t, "p1", node1.MAC)
	p2 := l.AddHost(t, "p2", node2.MAC)
	stranger := l.AddHost(t, "px", "52:54:00:cc:00:09")
	const to = 20 * time.Second

	var dnsmasqIP string
	t.Run("udhcpc-gets-address-from-dnsmasq", func(t *testing.T) {
		lease, r := p1.Udhcpc(t, to)
		if lease == nil {
			t.Fatalf("udhcpc got no lease\n%s\n--- dnsmasq ---\n%s", r, dnsmasq.Stderr.String())
		}
		dnsmasqIP = lease.IP
		if !inDnsmasqRange(lease.IP) || lease.ServerID != routerIP {
			t.Errorf("udhcpc got %s from %s; want an address of dnsmasq's range %s-%s from %s", lease.IP, lease.ServerID, dnsmasqStart, dnsmasqEnd, routerIP)
		}
		// flint gave no address: it has no lease for anyone.
		code, cr := fl.API(l, "/api/v1/leases")
		if code != "200" {
			t.Fatalf("GET /api/v1/leases: status %s\n%s", code, cr)
		}
		if strings.Contains(cr.Stdout, lease.IP) {
			t.Errorf("flint lists a lease for %s in proxy mode:\n%s", lease.IP, cr.Stdout)
		}
	})

	// flint saw p1 ask dnsmasq for its address (the broadcast REQUEST): that
	// address, and only it, is node1's own for scripts and configs.
	t.Run("script-goes-to-the-address-the-machine-took", func(t *testing.T) {
		if dnsmasqIP == "" {
			t.Skip("no address from dnsmasq (see the first step)")
		}
		code, mr := fl.API(l, "/api/v1/machines")
		if code != "200" || !strings.Contains(mr.Stdout, `"dhcp_addr":"`+dnsmasqIP+`"`) {
			t.Fatalf("flint did not record node1's DHCP address %s: %s\n%s", dnsmasqIP, code, mr)
		}
		p1.SetAddress(t, dnsmasqIP+"/24")
		code, r := l.Curl(p1.NS, flintHTTP+"/machines/"+hexhyp(node1.MAC)+"/boot.ipxe")
		if code != "200" || !strings.Contains(r.Stdout, "&token=") {
			t.Errorf("node1's script from its own address: %s\n%s", code, r)
		}
		stranger.SetAddress(t, "198.18.0.61/24")
		code, r = l.Curl(stranger.NS, flintHTTP+"/machines/"+hexhyp(node1.MAC)+"/boot.ipxe")
		if code != "403" || strings.Contains(r.Stdout, "token=") || !strings.Contains(r.Stdout, "last asked its DHCP server for "+dnsmasqIP) {
			t.Errorf("node1's script asked for by a stranger at 198.18.0.61: %s\n%s", code, r)
		}
	})

	t.Run("pxe-discover-known-uefi", func(t *testing.T) {
		offers, r := p1.Probe(t, 15*time.Second, "-arch", "7", "-wait", "3s")
		flint, others := fromFlint(offers)
		if len(flint) == 0 {
			t.Fatalf("no OFFER from flint for known MAC %s\n%s", node1.MAC, r)
		}
		for _, o := range flint {
			wantProxyOffer(t, "flint's proxy OFFER", o, "OFFER", "ipxe.efi")
		}
		// dnsmasq answers the same DISCOVER with an address: both coexist.
		found := false
		for _, o := range others {
			if o.ServerID == routerIP && inDnsmasqRange(o.YIAddr) {
				found = true
			}
		}
		if !found {
			t.Errorf("no address OFFER from dnsmasq (%s) next to flint's: %+v", routerIP, others)
		}
	})

	t.Run("pxe-discover-known-bios-pinned", func(t *testing.T) {
		// node2 pins snponly.efi for UEFI; as a BIOS client it still needs undionly.kpxe.
		offers, r := p2.Probe(t, 15*time.Second, "-arch", "0", "-wait", "2s")
		flint, _ := fromFlint(offers)
		if len(flint) == 0 {
			t.Fatalf("no OFFER from flint for %s\n%s", node2.MAC, r)
		}
		wantProxyOffer(t, "flint's proxy OFFER to a BIOS client", flint[0], "OFFER", "undionly.kpxe")
		offers, r = p2.Probe(t, 15*time.Second, "-arch", "7", "-wait", "2s")
		if flint, _ = fromFlint(offers); len(flint) == 0 {
			t.Fatalf("no OFFER from flint for %s (UEFI)\n%s", node2.MAC, r)
		}
		wantProxyOffer(t, "flint's proxy OFFER to node2 (ipxe_binary snponly.efi)", flint[0], "OFFER", "snponly.efi")
	})

	t.Run("pxe-discover-ipxe-user-class", func(t *testing.T) {
		offers, r := p1.Probe(t, 15*time.Second, "-arch", "7", "-user-class", "iPXE", "-wait", "2s")
		flint, _ := fromFlint(offers)
		if len(flint) == 0 {
			t.Fatalf("no OFFER from flint to iPXE\n%s", r)
		}
		if want := flintHTTP + "/boot.ipxe"; flint[0].File != want {
			t.Errorf("iPXE (user class iPXE) was offered file %q, want %q (anything else loops)", flint[0].File, want)
		}
	})

	t.Run("non-netboot-request-ignored", func(t *testing.T) {
		// A known MAC without PXE options (an installed OS renewing): dnsmasq's business only.
		offers, r := p1.Probe(t, 15*time.Second, "-arch", "-1", "-vendor", "none", "-wait", "2s")
		flint, others := fromFlint(offers)
		if len(flint) > 0 {
			t.Errorf("flint answered a DISCOVER without PXE options in proxy mode: %+v", flint)
		}
		if len(others) == 0 {
			t.Errorf("dnsmasq did not answer either: the probe may not work\n%s", r)
		}
	})

	t.Run("pxe-discover-unknown-mac", func(t *testing.T) {
		offers, r := stranger.Probe(t, 15*time.Second, "-arch", "7", "-wait", "3s")
		flint, others := fromFlint(offers)
		if len(flint) > 0 {
			t.Errorf("flint answered MAC %s that is not in its config (discover_unknown false): %+v", stranger.MAC, flint)
		}
		if len(others) == 0 {
			t.Errorf("dnsmasq did not answer either: the probe may not work\n%s\n--- dnsmasq ---\n%s", r, dnsmasq.Stderr.String())
		}
	})

	t.Run("pxe-boot-server-4011", func(t *testing.T) {
		// Some UEFI firmware asks the boot server on port 4011 once it has its address.
		addr := "198.18.0.60"
		if dnsmasqIP != "" {
			addr = dnsmasqIP
		}
		p1.SetAddress(t, addr+"/24")
		offers, r := p1.Probe(t, 15*time.Second, "-type", "request", "-server", flintIP, "-port", "4011",
			"-ciaddr", addr, "-broadcast=false", "-arch", "7", "-wait", "2s")
		flint, _ := fromFlint(offers)
		if len(flint) == 0 {
			t.Fatalf("no reply from flint on UDP 4011\n%s", r)
		}
		o := flint[0]
		if o.Type != "ACK" || o.File != "ipxe.efi" || o.SIAddr != flintIP {
			t.Errorf("4011 reply: type %s, file %q, siaddr %s; want ACK, ipxe.efi, %s (%+v)", o.Type, o.File, o.SIAddr, flintIP, o)
		}
		if o.YIAddr != "0.0.0.0" {
			t.Errorf("4011 reply carries an address (yiaddr %s); a boot server hands out none", o.YIAddr)
		}
		// A MAC flint does not know gets nothing on 4011 either.
		stranger.SetAddress(t, "198.18.0.61/24")
		offers, r = stranger.Probe(t, 15*time.Second, "-type", "request", "-server", flintIP, "-port", "4011",
			"-ciaddr", "198.18.0.61", "-broadcast=false", "-arch", "7", "-wait", "2s")
		if flint, _ := fromFlint(offers); len(flint) > 0 {
			t.Errorf("flint answered unknown MAC %s on 4011: %+v\n%s", stranger.MAC, flint, r)
		}
	})
}
