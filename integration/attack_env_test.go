package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/netns"
)

// The lab of TestAttack: TestCluster's four NUCs (three servers running live,
// so every reboot of one is a rebuild of its etcd member, and the agent nuc4
// installed to disk), a stranger on the same LAN, and flint with small limits.

const (
	atStrangerMAC   = "52:54:00:c1:00:66" // not in the config
	atFloodAddr     = "198.18.0.77"       // the stranger's second address, for its connection flood
	atOtherServer   = "198.18.0.250"      // a DHCP server that does not exist, named in spoofed REQUESTs
	atDiscovered    = 100                 // limits.discovered_machines
	atTFTPPerClient = 2                   // limits.tftp_transfers_per_client
	atConnsPerCl    = 8                   // limits.http_connections_per_client
)

// atLimits is what TestAttack adds to flint's config. unknown_events_per_minute
// is well above discovered_machines, so the cap of the store is what bounds
// the DISCOVER flood's records, not the rate limit in front of it.
var atLimits = fmt.Sprintf(`limits:
  discovered_machines: %d
  unknown_events_per_minute: 1000
  tftp_transfers: 16
  tftp_transfers_per_client: %d
  http_connections: 64
  http_connections_per_client: %d
`, atDiscovered, atTFTPPerClient, atConnsPerCl)

// attack is one mode's run: the lab, the stranger, and the record of what
// the stranger (and the pod on nuc1) tried and got.
type attack struct {
	t        *testing.T
	mode     string
	e        *clusterEnv
	stranger *clNode
	sip      string // the stranger's address (from the LAN's DHCP server)

	mu       sync.Mutex
	attempts []attempt
	bodies   []received // every answer the stranger or the pod got
}

// attempt is one try. refused: the stranger got nothing it asked for (a
// 4xx, an ERROR, a closed connection, a packet that changed nothing).
// Anything else must say why it is expected (allowed).
type attempt struct {
	item, what, answer string
	refused            bool
	allowed            string
}

type received struct {
	what string
	body []byte
}

func newAttack(t *testing.T, mode string) *attack {
	t.Helper()
	e := newClusterEnv(t)
	needTools(t, "atftp")
	if mode == "proxy" {
		needTools(t, "dnsmasq")
	}
	e.dhcpMode = mode
	e.installModes = map[string]string{}
	for _, n := range e.servers() {
		e.installModes[n.Name] = "live"
	}
	// A private copy of the iPXE binaries next to flint's data directory:
	// "../flint-data/pki/ca.key" from the TFTP root is the real CA key.
	e.ipxeDir = filepath.Join(e.work, "ipxe")
	ipxeCopy(t, e.ipxeDir)
	e.extraYAML = atLimits
	// What the asset store keeps hidden: an unverified partial download.
	writeTestFile(t, filepath.Join(e.assets, ".sync", "partial"), []byte("FLINT-TEST unverified partial download\n"), 0o644)
	if mode == "proxy" {
		startDnsmasqReserved(t, e.lab, clMachines())
	}
	e.start()
	return &attack{t: t, mode: mode, e: e}
}

// startDnsmasqReserved runs dnsmasq as the LAN's DHCP server (proxy mode):
// its own range for strangers, and each machine of the config its config IP
// by reservation (--dhcp-host=MAC,IP), as a site would set it up.
func startDnsmasqReserved(t *testing.T, l *Lab, hosts []clNodeSpec) *Proc {
	t.Helper()
	rt := l.AddHost(t, "rt", "02:00:c6:12:00:fe")
	rt.SetAddress(t, routerIP+"/24")
	args := []string{"--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--dhcp-range=" + dnsmasqStart + "," + dnsmasqEnd + ",255.255.255.0,1h",
		"--dhcp-leasefile=" + filepath.Join(l.Dir, "dnsmasq.leases"), "--pid-file=" + filepath.Join(l.Dir, "dnsmasq.pid"),
		"--user=root", "--no-ping", "--log-facility=-",
		"--dhcp-option=3," + routerIP}
	for _, h := range hosts {
		args = append(args, "--dhcp-host="+h.MAC+","+h.IP)
	}
	p := l.Start(t, rt.NS, "dnsmasq", "dnsmasq", args...)
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
	return p
}

// addStranger puts a laptop on the LAN: its own MAC, an address from the
// LAN's DHCP server (flint's pool in full mode, dnsmasq's range in proxy
// mode), and a second address of its own choosing for its connection flood.
func (a *attack) addStranger() {
	t, e := a.t, a.e
	t.Helper()
	s := &clNode{env: e, clNodeSpec: clNodeSpec{Name: "stranger", MAC: atStrangerMAC}, dir: filepath.Join(e.work, "stranger")}
	s.host = e.lab.AddHost(t, s.Name, s.MAC)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("==== stranger ====\n%s", s.log.String())
		}
	})
	if err := s.dhcp("lan"); err != nil {
		t.Fatal(err)
	}
	a.stranger, a.sip = s, s.lease["ip"]
	e.lab.mustIP(t, "-n", s.host.NS, "addr", "add", atFloodAddr+"/24", "dev", "eth0")
	t.Logf("the stranger %s took %s from the LAN's DHCP server (and %s for its connection flood)", atStrangerMAC, a.sip, atFloodAddr)
}

// liveBoot continues a live machine's network boot that pxe started: the
// real Ignition client (-platform metal, the script's command line) follows
// the pointer to HTTPS and applies the machine's own config into its root,
// which is the running system (RAM, in a real live boot); then the node
// reports config-applied as flint-report-applied.service would.
func (n *clNode) liveBoot(res *bootResult) error {
	work := filepath.Join(n.dir, fmt.Sprintf("boot%d", n.boots))
	out, err := n.ignition(work, n.root, "metal", res.Cmdline, "", 60*time.Second)
	res.FirstBootLog = out
	if err != nil {
		return err
	}
	if err := n.env.wantState(n.Name, "installing"); err != nil {
		return fmt.Errorf("after its config was served: %w", err)
	}
	if err := n.report("config-applied", n.Name+" booted live with its "+n.Role+" config"); err != nil {
		return err
	}
	if err := n.env.wantState(n.Name, "installed"); err != nil {
		return fmt.Errorf("after it reported config-applied: %w", err)
	}
	if n.Role == "server" {
		if res.EtcdEnv, err = n.readEnv("/etc/etcd/etcd.env"); err != nil {
			return err
		}
	}
	return nil
}

// ---- the record of tries ---------------------------------------------------

func (a *attack) keep(what string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bodies = append(a.bodies, received{what, append([]byte(nil), body...)})
}

// try records one attempt; refused says whether the stranger got nothing.
func (a *attack) try(item, what, answer string, refused bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts = append(a.attempts, attempt{item: item, what: what, answer: answer, refused: refused})
}

// allow records an attempt that got an answer, and why that is expected.
func (a *attack) allow(item, what, answer, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts = append(a.attempts, attempt{item: item, what: what, answer: answer, allowed: why})
}

func (a *attack) counts() (tries, refused int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, at := range a.attempts {
		tries++
		if at.refused {
			refused++
		}
	}
	return tries, refused
}

// report prints the tries by item: how many, how many refused, and the
// answers that were not refusals with their reasons.
func (a *attack) report() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	type agg struct {
		tries, refused int
		answers        map[string]int
		allowed        []string
		allowedN       map[string]int
	}
	by := map[string]*agg{}
	var items []string
	for _, at := range a.attempts {
		g := by[at.item]
		if g == nil {
			g = &agg{answers: map[string]int{}, allowedN: map[string]int{}}
			by[at.item] = g
			items = append(items, at.item)
		}
		g.tries++
		g.answers[at.answer]++
		if at.refused {
			g.refused++
		} else {
			line := fmt.Sprintf("%s -> %s (%s)", at.what, at.answer, at.allowed)
			if g.allowedN[line] == 0 {
				g.allowed = append(g.allowed, line)
			}
			g.allowedN[line]++
		}
	}
	sort.Strings(items)
	var b strings.Builder
	for _, it := range items {
		g := by[it]
		var ans []string
		for k, v := range g.answers {
			ans = append(ans, fmt.Sprintf("%s x%d", k, v))
		}
		sort.Strings(ans)
		fmt.Fprintf(&b, "  %-28s tries=%-4d refused=%-4d answers: %s\n", it, g.tries, g.refused, strings.Join(ans, ", "))
		for _, al := range g.allowed {
			fmt.Fprintf(&b, "      not a refusal (x%d): %s\n", g.allowedN[al], al)
		}
	}
	return b.String()
}

// curl runs curl in namespace ns, keeps the body, and returns status and body.
func (a *attack) curl(what, ns string, args ...string) (string, string) {
	code, r := a.e.lab.Curl(ns, append([]string{"--cacert", filepath.Join(a.e.data, "pki", "ca.crt")}, args...)...)
	if a.stranger != nil && ns == a.stranger.host.NS {
		a.stranger.record(r)
	}
	a.keep(what, []byte(r.Stdout))
	return code, r.Stdout
}

// ---- secrets and the leak check ---------------------------------------------

// needle is one secret, in one of the forms it could travel in.
type needle struct {
	name string
	b    []byte
}

// secretNeedles reads every secret flint keeps in DATA/pki and every node's
// report token, in the forms they could leave in: the raw text, the base64
// of the text at each of the three alignments (configs carry whole files as
// data:;base64,...: a secret inside such a file is encoded at an offset that
// depends on what precedes it), and, for PEM keys, each line of the body.
func secretNeedles(t *testing.T, data string, nodes []*clNode) []needle {
	t.Helper()
	pkiDir := filepath.Join(data, "pki")
	var files []string
	for _, pat := range []string{"ca.key", "etcd/*.key", "clients/*.key", "serving/flint.key", "k3s-token", "k3s-agent-token", "node-passwords/*", "admin-token", "report-key"} {
		m, err := filepath.Glob(filepath.Join(pkiDir, pat))
		if err != nil || len(m) == 0 {
			t.Fatalf("no secret %s in %s (%v): the leak check would check nothing", pat, pkiDir, err)
		}
		files = append(files, m...)
	}
	var out []needle
	add := func(name string, secret []byte) {
		secret = bytes.TrimSpace(secret)
		if len(secret) < 16 {
			t.Fatalf("secret %s is only %d bytes: too short to search for", name, len(secret))
		}
		out = append(out, needle{name, secret})
		for _, b := range base64Aligned(secret) {
			out = append(out, needle{name + " (base64)", b})
		}
		if bytes.Contains(secret, []byte("-----BEGIN")) {
			for _, ln := range bytes.Split(secret, []byte("\n")) {
				if len(ln) >= 40 && !bytes.HasPrefix(ln, []byte("-----")) {
					out = append(out, needle{name + " (PEM line)", ln})
				}
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(data, f)
		add(rel, b)
	}
	for _, n := range nodes {
		b, err := os.ReadFile(n.rootPath("/etc/flint/report.header"))
		if err != nil {
			t.Fatalf("%s: no report token to search for: %v", n.Name, err)
		}
		tok, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "Authorization: Bearer ")
		if !ok {
			t.Fatalf("%s: /etc/flint/report.header is %q", n.Name, b)
		}
		add(n.Name+"'s report token", []byte(tok))
	}
	return out
}

// base64Aligned returns, for each offset mod 3 that s can have inside a
// longer text, the part of the base64 of that text which depends on s alone.
func base64Aligned(s []byte) [][]byte {
	var out [][]byte
	for k := 0; k < 3; k++ {
		buf := append(make([]byte, k), s...)
		enc := base64.StdEncoding.EncodeToString(buf)
		first, last := (k+2)/3, len(buf)/3 // whole 3-byte groups inside s
		if last-first >= 4 {
			out = append(out, []byte(enc[4*first:4*last]))
		}
	}
	return out
}

// leaksIn names the secrets found in text.
func leaksIn(needles []needle, text []byte) []string {
	seen := map[string]bool{}
	var found []string
	for _, n := range needles {
		if bytes.Contains(text, n.b) && !seen[n.name] {
			seen[n.name] = true
			found = append(found, n.name)
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "K3S_TOKEN", "K3S_AGENT_TOKEN"} {
		if bytes.Contains(text, []byte(marker)) && !seen[marker] {
			seen[marker] = true
			found = append(found, "the marker "+marker)
		}
	}
	return found
}

// ---- config MACs in answers ---------------------------------------------------

// macsIn names the config's MACs (any spelling) that text mentions, except
// those in except (what the request itself named).
func macsIn(text, except string) []string {
	var found []string
	for _, m := range clMachines() {
		for _, form := range []string{m.MAC, hexhyp(m.MAC), strings.ReplaceAll(m.MAC, ":", "")} {
			re := regexp.MustCompile("(?i)" + regexp.QuoteMeta(form))
			if re.MatchString(text) && !re.MatchString(except) {
				found = append(found, m.Name+" ("+form+")")
				break
			}
		}
	}
	return found
}

// ---- sockets in a namespace ------------------------------------------------------

// dialFrom dials TCP addr from namespace ns with source address src (the
// socket keeps the namespace it was made in).
func dialFrom(ns, src, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(netns.Path(ns), func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var err error
		c, err = d.DialContext(context.Background(), "tcp", addr)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return c, err
}

// udpSocketsIn opens n UDP sockets on any port in namespace ns.
func udpSocketsIn(t *testing.T, ns string, n int) []net.PacketConn {
	t.Helper()
	var conns []net.PacketConn
	inNamespace(t, ns, func() error {
		for range n {
			c, err := net.ListenPacket("udp4", "0.0.0.0:0")
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// filesUnder lists the regular files below dir (for a leak check's positive control).
func filesUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}
