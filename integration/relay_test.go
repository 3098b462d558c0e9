package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The relayed lab: a router namespace between flint's segment and remote
// ones, with Debian's dhcrelay on it. All of it inside 198.18.0.0/15.
const (
	relayUpIP   = routerIP     // the router on flint's segment (198.18.0.254)
	rackGW      = "198.18.1.1" // the router on segment rack1 (a bridge: several hosts)
	slotGW      = "198.18.2.1" // the router on port slot7 (one bench slot)
	strayGW     = "198.18.3.1" // a segment flint has no subnet for
	rackPoolLo  = "198.18.1.100"
	rackPoolHi  = "198.18.1.110"
	slotBoxMAC  = "52:54:00:cc:02:99" // the box in slot7: in no config
	rackUnknown = "52:54:00:cc:01:01"
)

var (
	rackNode = machine{MAC: "52:54:00:aa:01:0b", Hostname: "rack1n", IP: "198.18.1.11", Role: "agent"}
	bench7   = machine{MAC: "52:54:00:aa:02:11", Hostname: "bench7", IP: "198.18.2.17", Role: "agent"}
)

func relayConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by flint's integration tests (relay)
server:
  interface: br0
  address: %s
  http_port: %d
dhcp:
  mode: full
  domain: lab.test
  lease_time: 1h
  subnets:
    - subnet: %s
      router: %s
      dns: [%s]
      pool: {start: %s, end: %s}
    - subnet: 198.18.1.0/24
      router: %s
      dns: [198.18.1.53]
      pool: {start: %s, end: %s}
    - subnet: 198.18.2.0/25
      router: %s
ipxe:
  directory: /usr/lib/ipxe
cluster: {install_mode: live}
machines:
`, flintIP, httpPort, subnet, routerIP, dnsIP, poolStart, poolEnd, rackGW, rackPoolLo, rackPoolHi, slotGW)
	for _, m := range []machine{node1, rackNode} {
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s}\n", m.MAC, m.Hostname, m.IP, m.Role)
	}
	fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s, relay: {circuit_id: slot7}}\n", bench7.MAC, bench7.Hostname, bench7.IP, bench7.Role)
	return b.String()
}

// addRemoteHost puts a host behind the router: its eth0 pairs with link in
// the router's namespace, which is either a port of bridge (when bridge is
// not "") or the router's own interface.
func (l *Lab) addRemoteHost(t *testing.T, router *Host, name, mac, link, bridge string) *Host {
	t.Helper()
	ns := "flt-" + l.ID + "-" + name
	l.addNS(t, ns)
	l.mustIP(t, "-n", router.NS, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
	if bridge != "" {
		l.mustIP(t, "-n", router.NS, "link", "set", link, "master", bridge)
	}
	l.mustIP(t, "-n", router.NS, "link", "set", link, "up")
	l.mustIP(t, "-n", ns, "link", "set", "eth0", "address", mac, "up")
	return &Host{lab: l, Name: name, NS: ns, MAC: mac}
}

// TestDHCPRelay: Debian's dhcrelay on a router between flint's segment and
// three remote ones. Behind it, udhcpc gets its reservation from the relay's
// subnet (unicast to giaddr:67, option 82 echoed: both seen on the wire) and
// its machine fetches its iPXE script and its config over HTTP(S)
// through the router, while a machine on flint's own segment does the same
// at the same time; a box whose MAC is in no config gets the machine of the
// relay port it is plugged into (option 82 circuit id, added by dhcrelay -a),
// and then that machine's script and config;
// a relay in no configured subnet is dropped with one log line naming it;
// leases of every subnet survive a SIGKILL of flint.
func TestDHCPRelay(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "udhcpc", "curl", "dhcrelay", "tcpdump")
	l := NewLab(t)
	data := filepath.Join(l.Dir, "data")
	for _, f := range []string{"flatcar/flatcar_production_pxe.vmlinuz", "flatcar/flatcar_production_pxe_image.cpio.gz", "k3s/k3s", "etcd/etcd", "etcd/etcdctl"} {
		l.writeFile(t, "data/assets/"+f, "stand-in "+f, 0o644)
	}
	cfg := l.writeFile(t, "flint.yaml", relayConfig(), 0o644)
	if r := l.Run("", 15*time.Second, flintBin, "validate", "--config", cfg); r.Err != nil {
		t.Fatalf("flint validate rejects the relay config\n%s", r)
	}
	f := l.StartFlint(t, cfg, data)
	ca := filepath.Join(data, "pki", "ca.crt")

	// The router: eth0 on flint's bridge, bridge rack1, port slot7, port stray.
	rtr := l.AddHost(t, "rtr", "52:54:00:ee:00:fe")
	rtr.SetAddress(t, relayUpIP+"/24")
	l.mustIP(t, "-n", rtr.NS, "link", "add", "rack1", "type", "bridge")
	l.mustIP(t, "-n", rtr.NS, "addr", "add", rackGW+"/24", "dev", "rack1")
	l.mustIP(t, "-n", rtr.NS, "link", "set", "rack1", "up")
	r1 := l.addRemoteHost(t, rtr, "r1", rackNode.MAC, "vr1", "rack1")
	u1 := l.addRemoteHost(t, rtr, "u1", rackUnknown, "vr2", "rack1")
	b7 := l.addRemoteHost(t, rtr, "b7", slotBoxMAC, "slot7", "")
	l.mustIP(t, "-n", rtr.NS, "addr", "add", slotGW+"/25", "dev", "slot7")
	st := l.addRemoteHost(t, rtr, "st", "52:54:00:cc:03:01", "stray", "")
	l.mustIP(t, "-n", rtr.NS, "addr", "add", strayGW+"/24", "dev", "stray")
	if r := l.Run(rtr.NS, 5*time.Second, "sysctl", "-qw", "net.ipv4.ip_forward=1"); r.Err != nil {
		t.Fatalf("enable forwarding on the router\n%s", r)
	}
	// flint reaches the remote segments through the router.
	l.mustIP(t, "-n", l.Srv, "route", "add", "198.18.0.0/15", "via", relayUpIP)
	// -a adds option 82 with the circuit id = the interface a request came in on.
	relay := l.Start(t, rtr.NS, "dhcrelay", "dhcrelay", "-4", "-d", "-a", "-m", "replace", "--no-pid",
		"-iu", "eth0", "-id", "rack1", "-id", "slot7", "-id", "stray", flintIP)
	if err := eventually(5*time.Second, 100*time.Millisecond, func() error {
		if relay.Exited() {
			return fmt.Errorf("dhcrelay exited: %v\n%s", relay.Cmd.ProcessState, relay.Stderr.String())
		}
		if !strings.Contains(relay.Stderr.String()+relay.Stdout.String(), "slot7") {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatalf("dhcrelay did not come up: %v", err)
	}
	n1 := l.AddHost(t, "n1", node1.MAC)
	const to = 20 * time.Second

	t.Run("relayed and local clients at once", func(t *testing.T) {
		// What crosses the router's upstream leg: replies to the relay
		// must be unicast to giaddr:67 (RFC 2131 4.1).
		dump := l.Start(t, rtr.NS, "tcpdump", "tcpdump", "-i", "eth0", "-n", "-l", "-v", "udp", "port", "67")
		if err := eventually(10*time.Second, 50*time.Millisecond, func() error {
			if !strings.Contains(dump.Stderr.String(), "listening on") {
				return errNotYet
			}
			return nil
		}); err != nil {
			t.Fatalf("tcpdump did not start: %s", dump.Stderr.String())
		}
		var wg sync.WaitGroup
		var remote, local *Lease
		var rr, lr Result
		start := time.Now()
		wg.Add(2)
		go func() { defer wg.Done(); remote, rr = r1.Udhcpc(t, to, udhcpcPXE(7)...) }()
		go func() { defer wg.Done(); local, lr = n1.Udhcpc(t, to, udhcpcPXE(0)...) }()
		wg.Wait()
		t.Logf("relayed and local leases in %v", time.Since(start).Round(time.Millisecond))
		wantLease(t, "udhcpc node1 on flint's segment", local, lr, node1.IP, "undionly.kpxe")
		wantRelayedLease(t, "udhcpc rack1n behind the relay", remote, rr, rackNode.IP, rackGW, "255.255.255.0", "198.18.1.53", "ipxe.efi")
		time.Sleep(200 * time.Millisecond) // tcpdump -l prints each packet as it comes; let the last lines out
		dump.stop()
		// tcpdump -v: a header line per packet, then its fields indented.
		var packets []string
		for _, ln := range strings.Split(dump.Stdout.String(), "\n") {
			if ln != "" && ln[0] != ' ' && ln[0] != '\t' || len(packets) == 0 {
				packets = append(packets, "")
			}
			packets[len(packets)-1] += ln + "\n"
		}
		var toRelay, toFlint, summary []string
		for _, p := range packets {
			switch {
			case strings.Contains(p, relayUpIP+".67 > "+flintIP+".67: BOOTP/DHCP, Request"):
				toFlint = append(toFlint, p)
			case strings.Contains(p, flintIP+".67 > "+rackGW+".67: BOOTP/DHCP, Reply"):
				toRelay = append(toRelay, p)
			case strings.Contains(p, flintIP+".67 > 255.255.255.255.67"):
				t.Errorf("a reply to the relay was broadcast:\n%s", p)
			}
			for _, ln := range strings.Split(p, "\n") {
				if strings.Contains(ln, "BOOTP/DHCP") || strings.Contains(ln, "Gateway-IP") || strings.Contains(ln, "Circuit-ID") {
					summary = append(summary, strings.TrimSpace(ln))
				}
			}
		}
		if len(toFlint) < 2 || len(toRelay) < 2 {
			t.Errorf("the router's upstream leg carried %d relayed requests and %d replies unicast to the relay %s:67, want 2 and 2 (DISCOVER/OFFER, REQUEST/ACK):\n%s",
				len(toFlint), len(toRelay), rackGW, dump.Stdout.String())
		}
		// RFC 3046 2.2: the server echoes option 82 as the relay sent it.
		for _, p := range append(toFlint, toRelay...) {
			if !strings.Contains(p, "Circuit-ID SubOption 1, length 5: rack1") {
				t.Errorf("no option 82 with circuit id rack1 in:\n%s", p)
			}
		}
		t.Logf("on the router's upstream leg:\n%s", strings.Join(summary, "\n"))
	})

	t.Run("both boot over HTTP through the router at once", func(t *testing.T) {
		r1.SetAddress(t, rackNode.IP+"/24")
		l.mustIP(t, "-n", r1.NS, "route", "add", "198.18.0.0/24", "via", rackGW)
		n1.SetAddress(t, node1.IP+"/24")
		var wg sync.WaitGroup
		start := time.Now()
		nets := make([]string, 2)
		errs := make([]error, 2)
		for i, h := range []struct {
			host *Host
			m    machine
		}{{r1, rackNode}, {n1, node1}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nets[i], errs[i] = bootOverHTTP(l, h.host, h.m, ca)
			}()
		}
		wg.Wait()
		t.Logf("script, pointer and config of rack1n (through the router) and node1 (local) in %v", time.Since(start).Round(time.Millisecond))
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		for i, want := range []string{"Address=198.18.1.11/24\nGateway=198.18.1.1\nDNS=198.18.1.53\n", "Address=198.18.0.11/24\nGateway=198.18.0.254\nDNS=198.18.0.53\n"} {
			if strings.Contains(nets[i], want) {
				t.Logf("network unit: %q", nets[i])
			} else {
				t.Errorf("network unit in the config:\n%s\nwant it to hold:\n%s", nets[i], want)
			}
		}
	})

	t.Run("a relay port selects its machine", func(t *testing.T) {
		lease, r := b7.Udhcpc(t, to, udhcpcPXE(7)...)
		wantRelayedLease(t, "udhcpc box in slot7", lease, r, bench7.IP, slotGW, "255.255.255.128", "", "ipxe.efi")
		if lease != nil && lease.Env["hostname"] != bench7.Hostname {
			t.Errorf("box in slot7: host name %q, want %s", lease.Env["hostname"], bench7.Hostname)
		}
		// On bench7's timeline: the box, the port, the relay.
		code, tr := f.API(l, "/api/v1/machines/"+hexhyp(bench7.MAC)+"/events")
		if code != "200" {
			t.Fatalf("timeline of bench7: %s\n%s", code, tr)
		}
		wantEvent(t, "bench7", tr.Stdout, "dhcp ACK", bench7.IP, `box `+slotBoxMAC+`, chosen by its relay port; via relay `+slotGW+`, circuit-id "slot7"`)
		code, tr = f.API(l, "/api/v1/machines/"+hexhyp(rackNode.MAC)+"/events")
		if code != "200" {
			t.Fatalf("timeline of rack1n: %s\n%s", code, tr)
		}
		wantEvent(t, "rack1n", tr.Stdout, "dhcp ACK", rackNode.IP, `via relay `+rackGW+`, circuit-id "rack1"`)

		// Past DHCP the box is bench7 too: its script (asked for by its own
		// MAC) names bench7's config, whose network unit matches the box's NIC.
		b7.SetAddress(t, bench7.IP+"/25")
		l.mustIP(t, "-n", b7.NS, "route", "add", "198.18.0.0/24", "via", slotGW)
		network, err := bootOverHTTP(l, b7, bench7, ca)
		if err != nil {
			t.Fatal(err)
		}
		want := "[Match]\nName=en* eth*\nType=ether\n\n[Network]\nAddress=198.18.2.17/25\nGateway=198.18.2.1\n"
		if !strings.HasPrefix(network, want) {
			t.Errorf("bench7's network unit:\n%s\nwant it to start:\n%s", network, want)
		}
		t.Logf("bench7's network unit, served to the box in slot7: %q", network)
		_, tr = f.API(l, "/api/v1/machines/"+hexhyp(bench7.MAC)+"/events")
		for _, ev := range []string{"http script", "ignition"} {
			if !strings.Contains(tr.Stdout, `"event":"`+ev) {
				t.Errorf("bench7's timeline lacks %q:\n%s", ev, tr.Stdout)
			}
		}
	})

	t.Run("a relay in no subnet is dropped and named once", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if lease, r := st.Udhcpc(t, 10*time.Second, "-t", "3"); lease != nil {
				t.Errorf("a client behind a relay in no configured subnet got %s\n%s", lease.IP, r)
			}
		}
		want := "relayed by giaddr " + strayGW + ", which is in no subnet flint serves"
		out := f.Stdout.String() + f.Stderr.String()
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("flint logged %q %d times, want once (rate-limited)", want, n)
		}
	})

	first := ""
	t.Run("unknown client behind the relay gets the rack pool", func(t *testing.T) {
		lease, r := u1.Udhcpc(t, to)
		if lease == nil {
			t.Fatalf("no lease\n%s", r)
		}
		wantRelayedLease(t, "udhcpc unknown on rack1", lease, r, lease.IP, rackGW, "255.255.255.0", "198.18.1.53", "")
		if !inRange(lease.IP, rackPoolLo, rackPoolHi) {
			t.Errorf("unknown client on rack1 got %s, want one of %s-%s", lease.IP, rackPoolLo, rackPoolHi)
		}
		first = lease.IP
	})

	t.Run("leases of every subnet survive sigkill", func(t *testing.T) {
		f.Kill(t)
		f = l.StartFlint(t, cfg, data)
		lease, r := u1.Udhcpc(t, to)
		if lease == nil || lease.IP != first {
			t.Errorf("after kill -9 and restart, the unknown client on rack1 got %v, want its old %s\n%s", lease, first, r)
		}
		lease, r = b7.Udhcpc(t, to, udhcpcPXE(7)...)
		wantRelayedLease(t, "udhcpc box in slot7 after restart", lease, r, bench7.IP, slotGW, "255.255.255.128", "", "ipxe.efi")
		lease, r = n1.Udhcpc(t, to, udhcpcPXE(0)...)
		wantLease(t, "udhcpc node1 after restart", lease, r, node1.IP, "undionly.kpxe")
	})
}

// wantRelayedLease checks what a client behind the relay was handed.
func wantRelayedLease(t *testing.T, who string, l *Lease, r Result, ip, router, mask, dns, bootFile string) {
	t.Helper()
	if l == nil {
		t.Errorf("%s got no lease from flint\n%s", who, r)
		return
	}
	for _, c := range []struct{ field, got, want string }{
		{"address", l.IP, ip},
		{"router", l.Router, router},
		{"server identifier (option 54)", l.ServerID, flintIP},
		{"subnet mask", l.Subnet, mask},
		{"DNS servers", l.DNS, dns},
		{"boot file", l.BootFile, bootFile},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s = %q, want %q", who, c.field, c.got, c.want)
		}
	}
	if bootFile != "" && l.NextServer != flintIP {
		t.Errorf("%s: next-server %q, want %s", who, l.NextServer, flintIP)
	}
}

// inRange reports whether ip is an address from lo to hi (inclusive).
func inRange(ip, lo, hi string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Compare(netip.MustParseAddr(lo)) >= 0 && a.Compare(netip.MustParseAddr(hi)) <= 0
}

// wantEvent finds event at ip with detail on a timeline (JSON from the admin API).
func wantEvent(t *testing.T, who, timeline, event, ip, detail string) {
	t.Helper()
	var evs []struct {
		Event, IP, Detail string
	}
	if err := json.Unmarshal([]byte(timeline), &evs); err != nil {
		t.Fatalf("timeline of %s is not JSON: %v\n%s", who, err, timeline)
	}
	for _, e := range evs {
		if e.Event == event && e.IP == ip && e.Detail == detail {
			t.Logf("%s's timeline: %s %s (%s)", who, e.Event, e.IP, e.Detail)
			return
		}
	}
	t.Errorf("%s's timeline has no %q at %s with detail %q:\n%s", who, event, ip, detail, timeline)
}

// bootOverHTTP does what machine m does once iPXE runs on host h: its
// script (by the MAC of h's NIC, as iPXE asks), then the pointer config and
// the config over HTTPS the script names, which must be m's; it returns the
// network unit the config writes.
func bootOverHTTP(l *Lab, h *Host, m machine, ca string) (string, error) {
	code, r := l.Curl(h.NS, flintHTTP+"/machines/"+hexhyp(h.MAC)+"/boot.ipxe")
	url := regexp.MustCompile(`/ignition\?mac=([0-9a-f-]{17})&token=[0-9a-f]{64}`).FindStringSubmatch(r.Stdout)
	if code != "200" || url == nil {
		return "", fmt.Errorf("%s: script: %s, no config URL with a token\n%s", m.Hostname, code, r)
	}
	if url[1] != hexhyp(m.MAC) {
		return "", fmt.Errorf("%s: the script of %s names the config of %s, want %s", m.Hostname, h.MAC, url[1], hexhyp(m.MAC))
	}
	q := url[0]
	if code, r := l.Curl(h.NS, "-o", "/dev/null", flintHTTP+q); code != "200" {
		return "", fmt.Errorf("%s: pointer config: %s\n%s", m.Hostname, code, r)
	}
	out := filepath.Join(l.Dir, m.Hostname+".ign")
	if code, r := l.Curl(h.NS, "--cacert", ca, "-o", out, flintHTTPS+q); code != "200" {
		return "", fmt.Errorf("%s: config: %s\n%s", m.Hostname, code, r)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return "", err
	}
	var ign struct {
		Storage struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
	}
	if err := json.Unmarshal(raw, &ign); err != nil {
		return "", fmt.Errorf("%s: config is not JSON: %v", m.Hostname, err)
	}
	for _, f := range ign.Storage.Files {
		if f.Path == "/etc/systemd/network/00-flint.network" {
			return dataURL(f.Contents.Source)
		}
	}
	return "", fmt.Errorf("%s: config writes no network unit", m.Hostname)
}

// dataURL decodes "data:,url-escaped" or "data:;base64,...".
func dataURL(src string) (string, error) {
	meta, body, ok := strings.Cut(strings.TrimPrefix(src, "data:"), ",")
	if !ok {
		return "", fmt.Errorf("not a data URL: %.40s", src)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(body)
		return string(b), err
	}
	return url.PathUnescape(body)
}
