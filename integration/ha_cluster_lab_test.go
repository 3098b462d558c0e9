package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers for TestHACluster (ha_cluster_test.go): TestCluster's nodes
// (clusterEnv, clNode) booting against the two flint instances of haEnv.

// newHAClusterEnv prepares (does not start) the lab of TestCluster with the
// two-flint layout: the etcd store's members, flint A and B, the nodes.
func newHAClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	needTools(t, "nft")
	e := newClusterWork(t)
	e.ha = newHAEnv(t, e.siteYAML(haSubnet, haPoolStart, haPoolEnd))
	e.lab = e.ha.lab
	e.addNodes()
	return e
}

// startHA checks both configs with flint validate, starts A and then B, and
// checks that both hand out one CA (minted once, by the first start, in the
// shared store), which the nodes' curl then trusts for either instance.
func (e *clusterEnv) startHA() {
	t := e.t
	t.Helper()
	for _, f := range e.instances() {
		if r := e.lab.Run(f.NS, 60*time.Second, flintBin, "validate", "--config", f.ConfigPath); r.Code != 0 {
			b, _ := os.ReadFile(f.ConfigPath)
			t.Fatalf("flint validate rejects instance %s's config:\n%s\nconfig:\n%s", f.Name, r, b)
		}
	}
	for _, f := range e.instances() {
		e.ha.start(f)
	}
	e.flint, e.data, e.configPath = e.ha.A.Flint, e.ha.A.DataDir, e.ha.A.ConfigPath
	var cas []string
	for _, f := range e.instances() {
		r := e.lab.Run(f.NS, 30*time.Second, flintBin, "pki", "--config", f.ConfigPath, "--print", "ca.crt")
		if r.Code != 0 || !strings.Contains(r.Stdout, "BEGIN CERTIFICATE") {
			t.Fatalf("flint pki --print ca.crt with instance %s's config:\n%s", f.Name, r)
		}
		cas = append(cas, r.Stdout)
	}
	if cas[0] != cas[1] {
		t.Fatalf("instances A and B print different CAs:\n%s\n%s", cas[0], cas[1])
	}
	e.caFile = filepath.Join(e.work, "flint-ca.crt")
	writeTestFile(t, e.caFile, []byte(cas[0]), 0o644)
}

func (e *clusterEnv) instances() []*haFlint { return []*haFlint{e.ha.A, e.ha.B} }

// other is the instance that is not f.
func (e *clusterEnv) other(f *haFlint) *haFlint {
	if f == e.ha.A {
		return e.ha.B
	}
	return e.ha.A
}

// cliOn runs a flint command where an operator of instance f would: in its
// namespace, with its data directory (the command asks that flint serve over
// its admin socket).
func (e *clusterEnv) cliOn(f *haFlint, args ...string) Result {
	return e.lab.Run(f.NS, 30*time.Second, flintBin, append(args, "--data", f.DataDir)...)
}

// route sends the node's next boot to instances: its DHCP answers come from
// dhcp only, its iPXE scripts from script, its configs from cfg.
func (n *clNode) route(dhcp, script, cfg *haFlint) error {
	if err := n.onlyDHCPFrom(dhcp); err != nil {
		return err
	}
	n.scriptFrom, n.cfgFrom = script, cfg
	return nil
}

// onlyDHCPFrom makes the node hear instance f's DHCP answers alone: the
// other instance's (UDP from port 67 of its address) are dropped at the
// ingress of the node's eth0 (nft, netdev family), before udhcpc's packet
// socket sees them. Both instances still see the node's broadcasts (the
// other one offers, claims and learns that the client chose f); nothing
// else of the node's traffic is touched.
func (n *clNode) onlyDHCPFrom(f *haFlint) error {
	other := n.env.other(f)
	rules := fmt.Sprintf(`flush ruleset
table netdev flinttest {
	chain dhcp {
		type filter hook ingress device eth0 priority 0; policy accept;
		ip saddr %s udp sport 67 drop
	}
}
`, other.IP)
	p := filepath.Join(n.env.work, n.Name+"-dhcp-from-"+f.Name+".nft")
	if err := os.WriteFile(p, []byte(rules), 0o644); err != nil {
		return err
	}
	if r := n.run(nil, 10*time.Second, "nft", "-f", p); r.Code != 0 {
		return fmt.Errorf("%s: nft -f %s: %s", n.Name, p, r)
	}
	n.dhcpFrom = f
	return nil
}

// haServed is what one instance did for one address, from its log: DHCP ACKs
// and HTTP requests (the access log's listener, method, path with the token
// redacted, and status; steps marks a status other than 2xx).
type haServed struct {
	offers, acks int
	http         []string // "LISTENER METHOD PATH STATUS"
}

var (
	haLogTime   = regexp.MustCompile(`^time=(\S+) `)
	haLogPath   = regexp.MustCompile(` path=("(?:[^"\\]|\\.)*"|\S+)`)
	haLogStatus = regexp.MustCompile(` status=(\d+)`)
	haLogListen = regexp.MustCompile(` listener=(\S+)`)
	haLogMethod = regexp.MustCompile(` method=(\S+)`)
)

// servedTo reads what f logged for the node at ip from since on.
func (f *haFlint) servedTo(ip string, since time.Time) haServed {
	var s haServed
	for _, ln := range strings.Split(f.log(), "\n") {
		m := haLogTime.FindStringSubmatch(ln)
		if m == nil {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err != nil || at.Before(since) {
			continue
		}
		switch {
		case strings.Contains(ln, ` msg="dhcp offer" `) && strings.Contains(ln, " ip="+ip+" "):
			s.offers++
		case strings.Contains(ln, ` msg="dhcp ack" `) && strings.Contains(ln, " ip="+ip+" "):
			s.acks++
		case strings.Contains(ln, " msg=http ") && strings.Contains(ln, " remote="+ip+":"):
			path := ""
			if m := haLogPath.FindStringSubmatch(ln); m != nil {
				path = m[1]
				if uq, err := strconv.Unquote(path); err == nil {
					path = uq
				}
			}
			field := func(re *regexp.Regexp) string {
				if m := re.FindStringSubmatch(ln); m != nil {
					return m[1]
				}
				return "?"
			}
			s.http = append(s.http, strings.Join([]string{field(haLogListen), field(haLogMethod), path, field(haLogStatus)}, " "))
		}
	}
	return s
}

// steps names the node's requests in s by boot step, with their count.
func (s haServed) steps(n *clNode) map[string]int {
	out := map[string]int{}
	if s.offers > 0 {
		out["dhcp-offer"] = s.offers
	}
	if s.acks > 0 {
		out["dhcp-ack"] = s.acks
	}
	for _, r := range s.http {
		f := strings.Fields(r)
		if len(f) != 4 {
			out["other "+r]++
			continue
		}
		listener, method, path, status := f[0], f[1], f[2], f[3]
		step := ""
		switch {
		case strings.HasPrefix(path, "/boot.ipxe"):
			step = "boot.ipxe"
		case strings.HasPrefix(path, "/machines/"+n.hex()+"/boot.ipxe"):
			step = "script"
		case strings.HasPrefix(path, "/ignition") && listener == "http":
			step = "pointer"
		case strings.HasPrefix(path, "/ignition") && strings.Contains(path, "stage=installed"):
			step = "installed-config"
		case strings.HasPrefix(path, "/ignition"):
			step = "installer-config"
		case strings.HasPrefix(path, "/api/v1/events") && method == "POST":
			step = "report"
		case strings.HasPrefix(path, "/assets/"):
			step = "asset"
		default:
			step = listener + " " + method + " " + path
		}
		if !strings.HasPrefix(status, "2") {
			step += "(" + status + ")"
		}
		out[step]++
	}
	return out
}

// formatSteps prints steps sorted: "boot.ipxe script" or "report×3".
func formatSteps(m map[string]int) string {
	if len(m) == 0 {
		return "nothing"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []string
	for _, k := range keys {
		if m[k] > 1 {
			b = append(b, fmt.Sprintf("%s×%d", k, m[k]))
		} else {
			b = append(b, k)
		}
	}
	return strings.Join(b, " ")
}

// checkRouted checks from both instances' logs (from since on) that the
// node's boot went where its route sent it: OFFERs from both, the ACKs from
// dhcpFrom, the iPXE scripts from scriptFrom, the pointer, installer and
// installed configs and the node's reports to cfgFrom, answered 2xx; and
// none of these from the instance it did not ask. It returns the
// who-served-what line.
func (e *clusterEnv) checkRouted(n *clNode, since time.Time) (string, error) {
	got := map[*haFlint]map[string]int{}
	for _, f := range e.instances() {
		got[f] = f.servedTo(n.IP, since).steps(n)
	}
	line := fmt.Sprintf("%s (%s): A served [%s]; B served [%s]", n.Name, n.IP, formatSteps(got[e.ha.A]), formatSteps(got[e.ha.B]))
	var errs []string
	want := func(f *haFlint, step string) {
		if got[f][step] == 0 {
			errs = append(errs, fmt.Sprintf("instance %s did not serve %s its %s", f.Name, n.Name, step))
		}
		if o := e.other(f); got[o][step] > 0 {
			errs = append(errs, fmt.Sprintf("instance %s served %s's %s, want only %s", o.Name, n.Name, step, f.Name))
		}
	}
	// Both instances answer every DISCOVER (active/active); the node hears
	// dhcpFrom's OFFER alone and takes it, and only dhcpFrom ACKs.
	for _, f := range e.instances() {
		if got[f]["dhcp-offer"] == 0 {
			errs = append(errs, fmt.Sprintf("instance %s never offered %s its address", f.Name, n.Name))
		}
	}
	want(n.dhcpFrom, "dhcp-ack")
	want(n.scriptFrom, "boot.ipxe")
	want(n.scriptFrom, "script")
	for _, step := range []string{"pointer", "installer-config", "installed-config", "report"} {
		want(n.cfgFrom, step)
	}
	for _, f := range e.instances() {
		for step := range got[f] {
			if strings.HasSuffix(step, ")") && !strings.HasPrefix(step, "installer-config(503") && !strings.HasPrefix(step, "pointer(503") {
				errs = append(errs, fmt.Sprintf("instance %s answered %s's %s", f.Name, n.Name, step))
			}
		}
	}
	// The shared timeline says the same: each event names the instance that
	// recorded it (its HTTP base URL).
	ev, err := e.timeline(n.MAC)
	if err != nil {
		errs = append(errs, err.Error())
	}
	byEvent := map[string]*haFlint{"dhcp ACK": n.dhcpFrom, "http script": n.scriptFrom, "ignition served": n.cfgFrom}
	seen := map[string]bool{}
	for _, x := range ev {
		f, ok := byEvent[x.Event]
		if !ok || x.At.Before(since) {
			continue
		}
		seen[x.Event] = true
		if x.By != f.HTTP() {
			errs = append(errs, fmt.Sprintf("%s's timeline: %q at %s by %q, want instance %s (%s)", n.Name, x.Event, x.At.Format("15:04:05.000"), x.By, f.Name, f.HTTP()))
		}
	}
	for event := range byEvent {
		if !seen[event] {
			errs = append(errs, fmt.Sprintf("%s's timeline has no %q since the boot", n.Name, event))
		}
	}
	if len(errs) > 0 {
		return line, fmt.Errorf("%s\n%s", strings.Join(errs, "\n"), line)
	}
	return line, nil
}
