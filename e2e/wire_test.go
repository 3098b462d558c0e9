package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/e2e/vlab"
)

// captureUDP records the DHCP and TFTP requests on the lab bridge, decoded
// by tcpdump, while the machines boot; its check reads the DHCP exchange of each UEFI HTTP
// boot machine and fails on any TFTP packet.
func captureUDP(t *testing.T, lab *vlab.Lab) func(*testing.T, []*vmRun) {
	t.Helper()
	out := filepath.Join(lab.Dir, "udp.tcpdump.txt")
	// -l: a line at a time, so what SIGTERM interrupts is already written.
	// DHCP, proxyDHCP and TFTP requests: a TFTP transfer starts with a
	// request to port 69 (its data flows between other ports).
	filter := "udp port 67 or udp port 68 or udp port 69 or udp port 4011"
	p, err := vlab.Start("tcpdump", lab.Net.Command("tcpdump", "-i", vlab.Bridge, "-n", "-l", "-vv", "-s", "0", filter), out, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(3 * time.Second) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(out), "listening on") {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("tcpdump does not listen on %s (%s): %s", vlab.Bridge, p.State(), readFile(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func(t *testing.T, runs []*vmRun) {
		if err := p.Stop(3 * time.Second); err != nil {
			t.Errorf("stop tcpdump: %v", err)
		}
		packets := udpPackets(readFile(out))
		t.Run("TFTP on the wire", func(t *testing.T) { checkTFTP(t, runs, packets) })
		for _, r := range runs {
			if r.HTTPBoot {
				t.Run(r.Name+" DHCP on the wire", func(t *testing.T) { checkHTTPBootDHCP(t, r, packets, lab.ProxyDHCP) })
			}
		}
	}
}

// udpPacket is one packet of tcpdump's -vv text: its header line and the
// indented lines that decode it.
type udpPacket struct {
	header string
	body   string
}

func udpPackets(text string) []udpPacket {
	var ps []udpPacket
	for _, line := range strings.Split(text, "\n") {
		switch {
		case line == "":
		case line[0] == ' ' || line[0] == '\t':
			if len(ps) > 0 {
				ps[len(ps)-1].body += strings.TrimSpace(line) + "\n"
			}
		case strings.Contains(line, " IP "):
			ps = append(ps, udpPacket{header: line})
		}
	}
	return ps
}

// addressLine is the line that names the packet's endpoints:
// "198.18.0.1.67 > 255.255.255.255.68: [udp sum ok] BOOTP/DHCP, Reply, ...".
func (p udpPacket) addressLine() string {
	first, _, _ := strings.Cut(p.body, "\n")
	return first
}

func (p udpPacket) String() string {
	return p.header + "\n    " + strings.ReplaceAll(p.body, "\n", "\n    ")
}

// checkTFTP: every TFTP read request on the wire (to UDP port 69) came
// from a machine that boots over TFTP (OVMF's own PXE), none from a UEFI HTTP
// boot machine; a machine that boots over TFTP shows its requests, so the
// capture does see TFTP when there is some; and the capture holds the boot's DHCP.
func checkTFTP(t *testing.T, runs []*vmRun, packets []udpPacket) {
	byIP := map[string]*vmRun{}
	for _, r := range runs {
		byIP[r.IP] = r
	}
	dhcp := 0
	tftp := map[string]int{}
	for _, p := range packets {
		a := p.addressLine()
		if strings.Contains(a, "BOOTP/DHCP") {
			dhcp++
		}
		from, to, _ := strings.Cut(a, " > ")
		to, _, _ = strings.Cut(to, ":")
		if !strings.HasSuffix(to, ".69") {
			continue
		}
		ip := from[:strings.LastIndexByte(from, '.')]
		tftp[ip]++
		if r := byIP[ip]; r == nil || r.TFTPFile() == "" {
			t.Errorf("a TFTP packet on the wire from %s, which must not use TFTP:\n%s", ip, p)
		}
	}
	for _, r := range runs {
		switch {
		case r.TFTPFile() != "" && tftp[r.IP] == 0:
			t.Errorf("%s boots over TFTP, but the capture shows no TFTP request from %s", r.Name, r.IP)
		case r.TFTPFile() != "":
			t.Logf("%s (%s): %d TFTP packets to port 69 on the wire", r.Name, r.IP, tftp[r.IP])
		case r.HTTPBoot:
			t.Logf("%s (%s): no TFTP packet on the wire", r.Name, r.IP)
		}
	}
	if dhcp < 4*len(runs) {
		t.Errorf("the capture holds %d DHCP packets of %d UDP packets, want the boot's DHCP exchanges", dhcp, len(packets))
	}
	t.Logf("capture: %d UDP packets, %d of them DHCP", len(packets), dhcp)
}

// checkHTTPBootDHCP: the firmware asked as a UEFI HTTP boot client (arch 16,
// vendor class HTTPClient), and flint's OFFER and ACK to it carried the
// http:// URL of ipxe.efi in the file field and option 60 HTTPClient. In
// proxy mode flint's OFFER carries them without an address, and the ACK with
// the address comes from the LAN's DHCP server (dnsmasq), not from flint.
func checkHTTPBootDHCP(t *testing.T, r *vmRun, packets []udpPacket, proxy bool) {
	mac := "Client-Ethernet-Address " + r.MAC
	url := fmt.Sprintf("file %q", vlab.FlintURL+r.HTTPFile())
	asked, leased := false, false
	answered := map[string]bool{"Offer": false, "ACK": false}
	if proxy {
		delete(answered, "ACK")
	}
	for _, p := range packets {
		if !strings.Contains(p.body, mac) {
			continue
		}
		// Debian's OVMF sends "HTTPClient:Arch:00016:UNDI:003000".
		if strings.Contains(p.body, "ARCH (93), length 2: 16\n") && strings.Contains(p.body, `: "HTTPClient:Arch:00016:`) {
			if !asked {
				t.Logf("the firmware's request on the wire:\n%s", p)
			}
			asked = true
		}
		if proxy && strings.HasPrefix(p.addressLine(), vlab.RouterIP+".67 > ") && strings.Contains(p.body, "Your-IP "+r.IP+"\n") &&
			strings.Contains(p.body, "DHCP-Message (53), length 1: ACK\n") && !leased {
			t.Logf("the LAN's DHCP server's ACK on the wire:\n%s", p)
			leased = true
		}
		if !strings.HasPrefix(p.addressLine(), vlab.FlintIP+".67 > ") || !strings.Contains(p.body, url) {
			continue
		}
		for typ := range answered {
			if strings.Contains(p.body, "DHCP-Message (53), length 1: "+typ+"\n") {
				if !strings.Contains(p.body, `Vendor-Class (60), length 10: "HTTPClient"`) {
					t.Errorf("flint's %s with %s lacks option 60 HTTPClient:\n%s", typ, url, p)
				}
				if proxy && strings.Contains(p.body, "Your-IP ") {
					t.Errorf("flint's proxy %s hands out an address:\n%s", typ, p)
				}
				if !answered[typ] {
					t.Logf("flint's %s on the wire:\n%s", typ, p)
				}
				answered[typ] = true
			}
		}
	}
	if !asked {
		t.Errorf("no DHCP request from %s with vendor class HTTPClient:Arch:00016 on the wire", r.MAC)
	}
	for typ, ok := range answered {
		if !ok {
			t.Errorf("no DHCP %s from flint to %s with %s on the wire", typ, r.MAC, url)
		}
	}
	if proxy && !leased {
		t.Errorf("no DHCP ACK from the LAN's DHCP server %s giving %s its address %s", vlab.RouterIP, r.MAC, r.IP)
	}
}
