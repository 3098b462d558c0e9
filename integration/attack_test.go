package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestAttack is the trust model's proof against a stranger on the rack's LAN,
// in full DHCP mode (flint leases) and in proxy mode (dnsmasq leases, each
// NUC its config IP by reservation). In each mode:
//
//  1. three servers (install_mode live: every reboot rebuilds the member)
//     boot through flint with the real Ignition client and form a 3-member
//     TLS etcd from what it laid down; each reports config-applied and
//     etcd-healthy with the report token of its config;
//  2. while the agent nuc4 (install_mode disk) boots through flint -- DHCP,
//     script, installer config, installer, first boot -- a stranger (its own
//     MAC and address on the bridge) tries everything a laptop on that LAN
//     can: (a) scripts and configs of every machine with no, made-up and
//     malformed tokens; (b) a pod on nuc1 (nuc1's own address) asking for
//     nuc1's config; (c) forged node reports; (d) the admin API; (e) a DHCP
//     flood of random MACs and spoofed RELEASE/DECLINE/REQUESTs; (f) TFTP
//     path escapes and a burst; (g) /assets/ and /ipxe/ path escapes; (h) a
//     held connection flood; and, last, (i) 100 concurrent reprovisions over
//     the admin socket;
//  3. nothing the stranger or the pod got, and nothing flint logged, holds a
//     secret of DATA/pki or a node's report token.
//
// It prints ATTACK-SUMMARY mode=... for each mode.
func TestAttack(t *testing.T) {
	for _, mode := range []string{"full", "proxy"} {
		t.Run(mode, func(t *testing.T) { runAttack(t, mode) })
	}
}

func runAttack(t *testing.T, mode string) {
	begin := time.Now()
	a := newAttack(t, mode)
	e := a.e
	servers := e.servers()
	nuc1, nuc4 := e.node("nuc1"), e.node("nuc4")
	etcdDied := func() error {
		for _, s := range servers {
			if s.etcd != nil && s.etcd.Exited() {
				return fmt.Errorf("etcd of %s exited: %v\n%s", s.Name, s.etcd.Cmd.ProcessState, tail(s.etcd.Stderr.String(), 4000))
			}
		}
		return nil
	}

	// ---- 1. a real 3-member etcd from flint's live configs ----------------
	var ds1 *clDatastore
	t.Run("etcd-from-live-configs", func(t *testing.T) {
		errs := runParallel(servers, func(n *clNode) error {
			res, err := n.pxe()
			if err != nil {
				return err
			}
			return n.liveBoot(res)
		})
		for name, err := range errs {
			t.Errorf("%s: %v", name, err)
		}
		if t.Failed() {
			t.FailNow()
		}
		for _, s := range servers {
			if _, err := e.startEtcd(t, s); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if ds1, err = nuc1.datastore(); err != nil {
			t.Fatal(err)
		}
		if err := ds1.waitHealthy(servers, 60*time.Second, etcdDied); err != nil {
			t.Fatalf("the etcd cluster did not become healthy: %v", err)
		}
		for _, s := range servers {
			if err := s.report("etcd-healthy", "member "+s.Name+" answers /health"); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := e.machines()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if m := ms[s.Name]; m.State != "installed" || m.Rebuilding {
				t.Errorf("%s after its live boot: %+v, want installed and not rebuilding", s.Name, m)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("3 live servers booted and formed a healthy etcd %v after the start", time.Since(begin).Round(time.Millisecond))
	membersBefore, err := ds1.members()
	if err != nil {
		t.Fatal(err)
	}

	a.addStranger()

	// ---- 2. the stranger, while nuc4 boots ----------------------------------
	var discovered int
	var leasesLost int
	t.Run("while-nuc4-boots", func(t *testing.T) {
		leasesBefore := a.knownLeases(t)
		statesBefore := a.serverStates(t)

		raw := rawDHCPIn(t, a.stranger.host.NS)
		dhcpDone := make(chan dhcpFloodResult, 1)
		go func() { dhcpDone <- a.dhcpFlood(raw, 4000) }()
		holder := a.startConnFlood(t)
		time.Sleep(300 * time.Millisecond) // both floods are under way

		nuc4Start := time.Now()
		nuc4Done := make(chan error, 1)
		go func() {
			res, err := nuc4.pxe()
			if err == nil {
				err = nuc4.install(res, 90*time.Second)
			}
			nuc4Done <- err
		}()

		// (h) the nodes' own requests get through while the stranger holds
		// its connections: each server's report over HTTPS, nuc4's boot.
		for _, s := range servers {
			if err := s.report("k3s-up", "server"); err != nil {
				t.Errorf("(h) %s's report while the stranger holds its connections: %v", s.Name, err)
			}
		}

		t.Run("a-scripts-and-configs", a.scriptsAndConfigs)
		t.Run("c-forged-reports", func(t *testing.T) { a.forgedReports(t, statesBefore) })
		t.Run("d-admin-api", a.adminAPI)
		t.Run("g-path-escapes", a.pathEscapes)
		t.Run("f-tftp", a.tftp)
		t.Run("b-pod-on-nuc1", a.podOnNuc1)

		select {
		case err := <-nuc4Done:
			if err != nil {
				t.Errorf("nuc4's boot during the attack: %v", err)
			}
		case <-time.After(180 * time.Second):
			t.Fatalf("nuc4's boot did not end within 180 s")
		}
		t.Run("h-connection-flood", func(t *testing.T) { a.stopConnFlood(t, holder) })
		fl := <-dhcpDone
		// nuc4's first DHCP (iPXE's) ran during the flood, not after it.
		nuc4DHCP := nuc4Start.Add(nuc4.took["dhcp-ipxe"])
		t.Logf("the DHCP flood ran %s-%s; nuc4 asked for its address %s-%s (%v)", fl.start.Format("15:04:05.000"), fl.end.Format("15:04:05.000"),
			nuc4Start.Format("15:04:05.000"), nuc4DHCP.Format("15:04:05.000"), nuc4.took["dhcp-ipxe"].Round(time.Millisecond))
		if !nuc4Start.Before(fl.end) {
			t.Errorf("the DHCP flood was over (%s) before nuc4 asked for its address (%s): nuc4's DHCP latency was not measured under the flood", fl.end.Format("15:04:05.000"), nuc4Start.Format("15:04:05.000"))
		}
		t.Run("e-dhcp", func(t *testing.T) {
			discovered, leasesLost = a.checkDHCP(t, fl, leasesBefore)
		})
	})

	// ---- etcd membership: nothing the stranger or the pod did changed it ----
	membershipChanges := 0
	t.Run("membership", func(t *testing.T) {
		after, err := ds1.members()
		if err != nil {
			t.Fatal(err)
		}
		membershipChanges = memberDiff(membersBefore, after)
		if membershipChanges != 0 {
			t.Errorf("etcd membership changed during the attack (%d differences):\nbefore %+v\nafter  %+v", membershipChanges, membersBefore, after)
		}
		if err := ds1.clusterHealthy(servers); err != nil {
			t.Errorf("the cluster after the attack: %v", err)
		}
		ms, err := e.machines()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if m := ms[s.Name]; m.State != "installed" || m.Rebuilding {
				t.Errorf("%s after the attack: state %q rebuilding %v, want installed and not rebuilding (armable)", s.Name, m.State, m.Rebuilding)
			}
		}
		if m := ms["nuc4"]; m.State != "installed" {
			t.Errorf("nuc4 after its boot: %q, want installed", m.State)
		}
	})

	// ---- (i) last: 100 concurrent reprovisions over the admin socket ------
	t.Run("i-reprovision-race", a.reprovisionRace)

	// flint stops cleanly after all that (SIGTERM: exit 0 within 10 s), and
	// its whole log is there to check.
	t.Run("stop", func(t *testing.T) {
		t0 := time.Now()
		e.flint.Stop(t)
		t.Logf("flint stopped %v after SIGTERM", time.Since(t0).Round(time.Millisecond))
	})

	// ---- 3. no secret in anything the stranger got, nor in flint's log ------
	leaks := 0
	t.Run("leak-check", func(t *testing.T) { leaks = a.leakCheck(t) })

	tries, refused := a.counts()
	t.Logf("tries by item (%s mode):\n%s", mode, a.report())
	line := fmt.Sprintf("ATTACK-SUMMARY mode=%s tries=%d refused=%d leaks=%d membership_changes=%d leases_lost=%d discovered=%d/%d nuc4_dhcp_ms=%d nuc4_config_ms=%d",
		mode, tries, refused, leaks, membershipChanges, leasesLost, discovered, atDiscovered,
		nuc4.took["dhcp-ipxe"].Milliseconds(), nuc4.took["ignition-metal"].Milliseconds())
	t.Log(line)
	fmt.Println(line)
	t.Logf("%s mode took %v", mode, time.Since(begin).Round(time.Millisecond))
	if leaks != 0 || membershipChanges != 0 || leasesLost != 0 {
		t.Errorf("leaks=%d membership_changes=%d leases_lost=%d, want all 0", leaks, membershipChanges, leasesLost)
	}
}

func memberDiff(before, after []clMember) int {
	key := func(m clMember) string {
		p := slices.Clone(m.PeerURLs)
		sort.Strings(p)
		return fmt.Sprintf("%x %s %s", m.ID, m.Name, strings.Join(p, ","))
	}
	set := map[string]int{}
	for _, m := range before {
		set[key(m)]++
	}
	for _, m := range after {
		set[key(m)]--
	}
	n := 0
	for _, v := range set {
		if v != 0 {
			n++
		}
	}
	return n
}

// serverStates is each server's state and rebuilding flag.
func (a *attack) serverStates(t *testing.T) map[string]string {
	t.Helper()
	ms, err := a.e.machines()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range a.e.servers() {
		out[s.Name] = fmt.Sprintf("%s rebuilding=%v", ms[s.Name].State, ms[s.Name].Rebuilding)
	}
	return out
}

// ---- (a) scripts, pointers and configs of every machine ---------------------

var atTokenRE = regexp.MustCompile(`token=([0-9a-f]{64})`)

func (a *attack) scriptsAndConfigs(t *testing.T) {
	ns := a.stranger.host.NS
	tokens := map[string]string{
		"no token":                  "",
		"a made-up token":           randHex(32),
		"a token-shaped garbage":    strings.Repeat("Z", 64),
		"an upper-case token":       strings.ToUpper(randHex(32)),
		"a token and a second mac=": randHex(32) + "&mac=" + hexhyp(atStrangerMAC),
	}
	var names []string
	for k := range tokens {
		names = append(names, k)
	}
	sort.Strings(names)
	nuc4Installed := func() bool {
		ms, err := a.e.machines()
		return err == nil && ms["nuc4"].State == "installed"
	}
	for _, n := range a.e.nodes {
		// The script: only the machine's own address gets one with a token.
		what := "GET " + n.Name + "'s script"
		code, body := a.curl(what, ns, flintHTTP+"/machines/"+n.hex()+"/boot.ipxe?arch="+clBuildArch)
		switch {
		case strings.Contains(body, "token="):
			t.Errorf("(a) the stranger got %s's script with a boot token: %s\n%s", n.Name, code, body)
			a.try("a scripts/configs", what, code, false)
		case code == "403" || code == "404":
			a.try("a scripts/configs", what, code, true)
		case code == "200" && n.Role == "agent" && strings.Contains(body, "sanboot") && nuc4Installed():
			// An installed disk machine's script boots its disk, for anyone.
			a.try("a scripts/configs", what+" (installed: local boot, no token)", code, true)
		default:
			t.Errorf("(a) the stranger asking for %s's script: %s, want 403\n%s", n.Name, code, body)
			a.try("a scripts/configs", what, code, false)
		}
		for _, name := range names {
			tok := tokens[name]
			q := "/ignition?mac=" + n.hex()
			if tok != "" {
				q += "&token=" + tok
			}
			for _, u := range []struct{ what, url string }{
				{"pointer config", flintHTTP + q},
				{"HTTPS config", flintHTTPS + q},
				{"installed-system config", flintHTTPS + q + "&stage=installed"},
			} {
				what := fmt.Sprintf("GET %s's %s with %s", n.Name, u.what, name)
				code, body := a.curl(what, ns, "-H", "Accept: application/vnd.coreos.ignition+json;version=3.4.0", u.url)
				ok := code == "403" || code == "404" || code == "400"
				if !ok || strings.Contains(body, `"ignition"`) {
					t.Errorf("(a) %s: %s, want 403/404\n%.300s", what, code, body)
					ok = false
				}
				a.try("a scripts/configs", what, code, ok)
			}
		}
	}
}

// ---- (c) forged node reports ------------------------------------------------

func (a *attack) forgedReports(t *testing.T, statesBefore map[string]string) {
	ns := a.stranger.host.NS
	since := time.Now()
	for _, n := range a.e.nodes {
		for _, ev := range []string{"etcd-healthy", "install-finished"} {
			body := fmt.Sprintf(`{"mac":%q,"event":%q,"detail":"forged by a stranger"}`, n.MAC, ev)
			for _, v := range []struct {
				how, url, want string
				hdr            []string
			}{
				{"plain HTTP", flintHTTP + "/api/v1/events", "404", nil},
				{"HTTPS without a bearer", flintHTTPS + "/api/v1/events", "403", nil},
				{"HTTPS with a made-up bearer", flintHTTPS + "/api/v1/events", "403", []string{"-H", "Authorization: Bearer " + randHex(32)}},
				{"HTTPS with a garbage bearer", flintHTTPS + "/api/v1/events", "403", []string{"-H", "Authorization: Bearer x"}},
			} {
				what := fmt.Sprintf("POST %s for %s over %s", ev, n.Name, v.how)
				args := append([]string{"-X", "POST", "-H", "Content-Type: application/json", "--data", body}, v.hdr...)
				code, resp := a.curl(what, ns, append(args, v.url)...)
				if code != v.want {
					t.Errorf("(c) %s: %s %q, want %s", what, code, resp, v.want)
				}
				a.try("c forged reports", what, code, code == "403" || code == "404")
			}
		}
	}
	if after := a.serverStates(t); fmt.Sprint(after) != fmt.Sprint(statesBefore) {
		t.Errorf("(c) servers' states changed by forged reports: before %v, after %v", statesBefore, after)
	}
	// No report from the stranger's address was taken by any machine.
	for _, n := range a.e.nodes {
		ev, err := a.e.timeline(n.MAC)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ev {
			if !x.At.Before(since) && x.IP == a.sip && strings.HasPrefix(x.Event, "node ") && !strings.HasSuffix(x.Event, " refused") {
				t.Errorf("(c) %s's timeline took a forged report from the stranger: %+v", n.Name, x)
			}
		}
	}
}

// ---- (d) the admin API ---------------------------------------------------------

func (a *attack) adminAPI(t *testing.T) {
	ns := a.stranger.host.NS
	statesBefore := a.serverStates(t)
	check := func(what, want, code, body, request string) {
		t.Helper()
		ok := code == want
		if !ok {
			t.Errorf("(d) %s: %s %.200q, want %s", what, code, body, want)
		}
		if m := macsIn(body, request); len(m) > 0 {
			t.Errorf("(d) %s: the answer names machines of the config %v: %.300q", what, m, body)
			ok = false
		}
		if strings.Contains(body, `"hostname"`) || strings.Contains(body, `"armed"`) {
			t.Errorf("(d) %s: the answer looks like admin data: %.300q", what, body)
			ok = false
		}
		a.try("d admin API", what, code, ok)
	}
	wrong := "Authorization: Bearer " + randHex(32)
	for _, p := range []string{"/api/v1/machines", "/api/v1/leases", "/api/v1/machines/" + hexhyp(clMachines()[0].MAC) + "/events"} {
		code, body := a.curl("GET "+p+" over plain HTTP", ns, flintHTTP+p)
		check("GET "+p+" over plain HTTP", "404", code, body, p)
		code, body = a.curl("GET "+p+" over HTTPS without a token", ns, flintHTTPS+p)
		check("GET "+p+" over HTTPS without a token", "401", code, body, p)
		code, body = a.curl("GET "+p+" over HTTPS with a made-up token", ns, "-H", wrong, flintHTTPS+p)
		check("GET "+p+" over HTTPS with a made-up token", "401", code, body, p)
	}
	for _, name := range []string{"nuc1", "nuc4"} {
		p := "/api/v1/machines/" + name + "/reprovision"
		for _, v := range []struct {
			how, url, want string
			args           []string
		}{
			{"plain HTTP, JSON", flintHTTP + p, "404", []string{"-H", "Content-Type: application/json", "--data", `{"confirm":true}`}},
			{"plain HTTP, ?confirm=yes", flintHTTP + p + "?confirm=yes", "404", []string{"--data", ""}},
			{"HTTPS without a token, JSON", flintHTTPS + p, "401", []string{"-H", "Content-Type: application/json", "--data", `{"confirm":true}`}},
			{"HTTPS with a made-up token, JSON", flintHTTPS + p, "401", []string{"-H", wrong, "-H", "Content-Type: application/json", "--data", `{"confirm":true}`}},
			{"HTTPS without a token, form body", flintHTTPS + p, "401", []string{"--data", "confirm=true&yes=1"}},
			{"HTTPS without a token, ?confirm=yes", flintHTTPS + p + "?confirm=yes", "401", []string{"--data", ""}},
		} {
			what := "POST " + p + " over " + v.how
			code, body := a.curl(what, ns, append(append([]string{"-X", "POST"}, v.args...), v.url)...)
			check(what, v.want, code, body, p)
		}
	}
	// Nothing is trusted for a loopback address either: a process on flint's
	// own host without the token gets no more than the stranger.
	for _, v := range []struct{ what, url, want string }{
		{"GET /api/v1/machines from loopback over plain HTTP", fmt.Sprintf("http://127.0.0.1:%d/api/v1/machines", httpPort), "404"},
		{"GET /api/v1/machines from loopback over HTTPS without a token", "https://127.0.0.1:8443/api/v1/machines", "401"},
		{"POST reprovision nuc2 from loopback over HTTPS without a token", "https://127.0.0.1:8443/api/v1/machines/nuc2/reprovision", "401"},
	} {
		args := []string{"-k", v.url}
		if strings.HasPrefix(v.what, "POST") {
			args = []string{"-k", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"confirm":true}`, v.url}
		}
		code, body := a.curl(v.what, a.e.lab.Srv, args...)
		check(v.what, v.want, code, body, v.url)
	}
	if after := a.serverStates(t); fmt.Sprint(after) != fmt.Sprint(statesBefore) {
		t.Errorf("(d) servers' states changed by refused admin calls: before %v, after %v", statesBefore, after)
	}
}

// ---- (g) path escapes on plain HTTP ----------------------------------------

func (a *attack) pathEscapes(t *testing.T) {
	ns := a.stranger.host.NS
	// The public files are there (so a refusal below is the guard's).
	if code, _ := a.curl("GET /assets/k3s/k3s (control)", ns, flintHTTP+"/assets/k3s/k3s"); code != "200" {
		t.Fatalf("(g) control: /assets/k3s/k3s from the stranger: %s, want 200", code)
	}
	data := filepath.Base(a.e.data) // flint-data, a sibling of the assets directory
	for _, p := range []string{
		"/assets/../" + data + "/pki/ca.key",
		"/assets/%2e%2e/" + data + "/pki/ca.key",
		"/assets/%2e%2e%2f" + data + "%2fpki%2fca.key",
		"/assets/..%2f" + data + "%2fpki%2fadmin-token",
		"/assets/k3s/../../" + data + "/pki/k3s-token",
		"/assets/k3s/%2e%2e/%2e%2e/" + data + "/pki/report-key",
		"/assets/.sync/partial",
		"/assets/%2esync/partial",
		"/assets/k3s/../.sync/partial",
		"/assets//etc/shadow",
		"/assets/%2fetc%2fshadow",
		"/assets/..%5c" + data + "%5cpki%5cca.key",
		"/ipxe/..%2f" + data + "%2fpki%2fca.key",
		"/ipxe/%2e%2e",
		"/../" + data + "/pki/ca.key",
		"/%2e%2e/" + data + "/pki/ca.key",
	} {
		what := "GET " + p
		code, body := a.curl(what, ns, "--path-as-is", flintHTTP+p)
		ok := code == "403" || code == "404" || code == "400"
		if !ok || strings.Contains(body, "FLINT-TEST unverified") {
			t.Errorf("(g) %s: %s %.200q, want 403/404", what, code, body)
			ok = false
		}
		a.try("g path escapes", what, code, ok)
	}
}

// ---- (f) TFTP ---------------------------------------------------------------

func (a *attack) tftp(t *testing.T) {
	ns := a.stranger.host.NS
	dir := filepath.Join(a.stranger.dir, "tftp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Control: the iPXE binary comes (so a refusal below is the guard's).
	ctl := filepath.Join(dir, "ipxe.efi")
	if r := a.e.lab.Run(ns, 60*time.Second, "atftp", "--option", "blksize 1468", "-g", "-r", "ipxe.efi", "-l", ctl, flintIP); r.Err != nil {
		t.Fatalf("(f) control: the stranger cannot fetch ipxe.efi over TFTP:\n%s", r)
	}
	for i, name := range []string{
		"../" + filepath.Base(a.e.data) + "/pki/ca.key",
		"../../../../../../etc/shadow",
		"/etc/shadow",
		filepath.Join(a.e.data, "pki", "ca.key"),
		"ipxe.efi/../../" + filepath.Base(a.e.data) + "/pki/admin-token",
		"./../" + filepath.Base(a.e.data) + "/pki/k3s-token",
		"..\\" + filepath.Base(a.e.data) + "\\pki\\ca.key",
		"%2e%2e/" + filepath.Base(a.e.data) + "/pki/ca.key",
	} {
		dst := filepath.Join(dir, fmt.Sprintf("got-%d", i))
		r := a.e.lab.Run(ns, 20*time.Second, "atftp", "-g", "-r", name, "-l", dst, flintIP)
		a.stranger.record(r)
		got, _ := os.ReadFile(dst)
		a.keep("TFTP "+name, got)
		answer := strings.TrimSpace(r.Stderr)
		if i := strings.IndexByte(answer, '\n'); i > 0 {
			answer = answer[:i]
		}
		ok := r.Code != 0 && len(got) == 0
		if !ok {
			t.Errorf("(f) TFTP %q: atftp exit %d, %d bytes, want an error and nothing\n%s", name, r.Code, len(got), r)
		}
		a.try("f tftp", "TFTP read "+name, "atftp: "+answer, ok)
	}

	// A burst: 24 read requests at once, each from its own port, none ever
	// acknowledged. At most limits.tftp_transfers_per_client start; the others
	// get an ERROR at once.
	conns := udpSocketsIn(t, ns, 24)
	server := &net.UDPAddr{IP: net.ParseIP(flintIP), Port: 69}
	for _, c := range conns {
		if _, err := c.WriteTo(append([]byte{0, 1}, "ipxe.efi\x00octet\x00"...), server); err != nil {
			t.Fatal(err)
		}
	}
	var data, errs, silent int
	var started []struct {
		c    net.PacketConn
		from net.Addr
	}
	for _, c := range conns {
		buf := make([]byte, 1024)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := c.ReadFrom(buf)
		if err == nil && n >= 4 && buf[1] == 3 {
			started = append(started, struct {
				c    net.PacketConn
				from net.Addr
			}{c, from})
		}
		switch {
		case err != nil:
			silent++
			a.try("f tftp", "burst RRQ ipxe.efi", "no answer", true)
		case n >= 4 && buf[1] == 3:
			data++
			a.allow("f tftp", "burst RRQ ipxe.efi", "DATA", fmt.Sprintf("within limits.tftp_transfers_per_client=%d; a public file", atTFTPPerClient))
		case n >= 4 && buf[1] == 5:
			errs++
			a.keep("TFTP burst ERROR", buf[:n])
			a.try("f tftp", "burst RRQ ipxe.efi", "ERROR "+strings.TrimRight(string(buf[4:n]), "\x00"), true)
		default:
			t.Errorf("(f) burst: unexpected TFTP answer %q", buf[:n])
		}
	}
	// Once every request was answered: end the transfers that started
	// (ERROR to their TIDs), as a client that changed its mind would, rather
	// than leave them to time out.
	for _, s := range started {
		s.c.WriteTo(append([]byte{0, 5, 0, 0}, "aborted\x00"...), s.from)
	}
	t.Logf("(f) TFTP burst of 24: %d transfers started, %d refused with an ERROR, %d unanswered", data, errs, silent)
	if data > atTFTPPerClient || errs == 0 {
		t.Errorf("(f) TFTP burst of 24 from one address: %d started (want at most %d), %d refused (want some)", data, atTFTPPerClient, errs)
	}
}

// ---- (b) a pod on nuc1 --------------------------------------------------------

// podOnNuc1: a process on nuc1 (a pod, say) shares nuc1's address, so flint
// cannot tell it from nuc1: it gets nuc1's script, with a boot token (a live
// server's every boot is an install). The config it then asks for would
// rebuild nuc1's etcd member; flint asks etcd first, etcd says the member is
// running and healthy, and the config is refused with nothing changed.
func (a *attack) podOnNuc1(t *testing.T) {
	e := a.e
	nuc1 := e.node("nuc1")
	ns := nuc1.host.NS
	since := time.Now()
	code, script := a.curl("pod on nuc1: GET nuc1's script", ns, flintHTTP+"/machines/"+nuc1.hex()+"/boot.ipxe?arch="+clBuildArch)
	m := atTokenRE.FindStringSubmatch(script)
	if code != "200" || m == nil {
		t.Fatalf("(b) the pod on nuc1 (nuc1's address %s) got no script with a token: %s\n%s", nuc1.IP, code, script)
	}
	a.allow("b pod on nuc1", "GET nuc1's script from nuc1's address", code, "the pod has nuc1's address; a live server's script always carries a token")
	tok := m[1]
	q := "/ignition?mac=" + nuc1.hex() + "&token=" + tok
	code, body := a.curl("pod on nuc1: GET nuc1's pointer config", ns, flintHTTP+q)
	if code != "200" || !strings.Contains(body, flintHTTPS+"/ignition") {
		t.Errorf("(b) nuc1's pointer config for the pod: %s, want 200 with the HTTPS URL\n%.300s", code, body)
	}
	a.allow("b pod on nuc1", "GET nuc1's pointer config", code, "no secret: flint's CA and the HTTPS URL")

	// The verdict is final once etcd answered: 503 while flint asks it.
	waits := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body = a.curl("pod on nuc1: GET nuc1's HTTPS config", ns, "-H", "Accept: application/vnd.coreos.ignition+json;version=3.4.0", flintHTTPS+q)
		if code != "503" || time.Now().After(deadline) {
			break
		}
		waits++
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("(b) nuc1's config for the pod: %d x 503 while flint asked etcd, then %s: %.300s", waits, code, body)
	ok := code == "403" && strings.Contains(body, "healthy")
	if !ok {
		t.Errorf("(b) nuc1's HTTPS config for the pod on nuc1: %s, want 403 saying its member is running and healthy\n%.500s", code, body)
	}
	a.try("b pod on nuc1", "GET nuc1's HTTPS config (would rebuild its member)", fmt.Sprintf("%d x 503, then %s", waits, code), ok)

	ev, err := e.timeline(nuc1.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if len(findEvents(ev, "etcd rejoin refused", since)) == 0 {
		t.Errorf("(b) nuc1's timeline has no \"etcd rejoin refused\" since the pod asked:\n%s", formatTimeline(ev))
	}
	for _, x := range findEvents(ev, "etcd rejoin prepared", since) {
		t.Errorf("(b) flint replaced nuc1's member for the pod: %+v", x)
	}
	// nuc1 is armable again: installed, holding no rebuild slot.
	ms, err := e.machines()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range e.servers() {
		if m := ms[s.Name]; m.State != "installed" || m.Rebuilding {
			t.Errorf("(b) after the refusal %s is %q rebuilding=%v, want installed and not rebuilding", s.Name, m.State, m.Rebuilding)
		}
	}
}

// ---- (h) the connection flood ---------------------------------------------

type connHolder struct {
	once  sync.Once
	stop  chan struct{}
	done  chan struct{}
	tries atomic.Int64
	// refused: closed by flint at once; held: the most open at one time, by port
	refused  [2]atomic.Int64
	lag      atomic.Int64 // the longest time flint took to close an over-cap connection, ns
	held     [2]atomic.Int64
	maxHeld  [2]atomic.Int64
	dialErrs atomic.Int64
}

var floodPorts = [2]string{fmt.Sprint(httpPort), "8443"}

// startConnFlood: from its second address the stranger keeps 3 x
// limits.http_connections_per_client TCP connections open to each of :8080
// and :8443 without sending a byte, re-opening any that flint closes, until
// stopped. Its other attempts come from its first address, so they are judged
// by the guard, not by this cap.
func (a *attack) startConnFlood(t *testing.T) *connHolder {
	h := &connHolder{stop: make(chan struct{}), done: make(chan struct{})}
	ns := a.stranger.host.NS
	var wg sync.WaitGroup
	for pi, port := range floodPorts {
		for range 3 * atConnsPerCl {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-h.stop:
						return
					default:
					}
					h.tries.Add(1)
					c, err := dialFrom(ns, atFloodAddr, net.JoinHostPort(flintIP, port), 2*time.Second)
					if err != nil {
						h.dialErrs.Add(1)
						time.Sleep(200 * time.Millisecond)
						continue
					}
					// Closed at once (over the cap) or held (until flint's header
					// timeout)? Held means still open after 2 s: an over-cap
					// connection may wait in the kernel's backlog until flint's
					// accept loop gets to it and closes it, which under this load
					// can take longer than a moment.
					dialed := time.Now()
					c.SetReadDeadline(dialed.Add(2 * time.Second))
					_, err = c.Read(make([]byte, 1))
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						h.refused[pi].Add(1)
						for lag := int64(time.Since(dialed)); ; {
							m := h.lag.Load()
							if lag <= m || h.lag.CompareAndSwap(m, lag) {
								break
							}
						}
						c.Close()
						time.Sleep(500 * time.Millisecond)
						continue
					}
					n := h.held[pi].Add(1)
					for {
						m := h.maxHeld[pi].Load()
						if n <= m || h.maxHeld[pi].CompareAndSwap(m, n) {
							break
						}
					}
					closed := make(chan struct{})
					go func() {
						c.SetReadDeadline(time.Time{})
						io.Copy(io.Discard, c)
						close(closed)
					}()
					select {
					case <-closed:
					case <-h.stop:
					}
					c.Close()
					h.held[pi].Add(-1)
				}
			}()
		}
	}
	go func() { wg.Wait(); close(h.done) }()
	t.Cleanup(h.halt) // if the test ends before stopConnFlood
	return h
}

func (h *connHolder) halt() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}

func (a *attack) stopConnFlood(t *testing.T, h *connHolder) {
	h.halt()
	tries := int(h.tries.Load())
	refused := int(h.refused[0].Load() + h.refused[1].Load())
	t.Logf("(h) connection flood from %s: %d connections opened, %d closed by the cap (after at most %v), at most %d (:%s) and %d (:%s) held at a time, %d dial errors",
		atFloodAddr, tries, refused, time.Duration(h.lag.Load()).Round(time.Millisecond), h.maxHeld[0].Load(), floodPorts[0], h.maxHeld[1].Load(), floodPorts[1], h.dialErrs.Load())
	for pi, port := range floodPorts {
		if m := h.maxHeld[pi].Load(); m > atConnsPerCl || m == 0 {
			t.Errorf("(h) the stranger held %d connections to :%s at once, want 1 to %d (limits.http_connections_per_client)", m, port, atConnsPerCl)
		}
		if h.refused[pi].Load() == 0 {
			t.Errorf("(h) no connection to :%s was refused: the per-client cap never acted", port)
		}
	}
	// Each connection is one try: refused when closed at once; those held
	// were within the cap.
	for range refused {
		a.try("h connection flood", "TCP connection over the per-client cap", "closed by flint", true)
	}
	for range tries - refused - int(h.dialErrs.Load()) {
		a.allow("h connection flood", "TCP connection", "held until flint's header timeout", fmt.Sprintf("within limits.http_connections_per_client=%d", atConnsPerCl))
	}
}

// ---- (e) DHCP ------------------------------------------------------------------

type dhcpFloodResult struct {
	start, end time.Time
	discovers  int
	spoofs     []string
	err        error
}

// knownLeases is what flint says of the config machines' leases (full mode)
// or of the addresses it saw them take (proxy mode), by name.
func (a *attack) knownLeases(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	if a.e.proxy() {
		code, r := a.e.flint.API(a.e.lab, "/api/v1/machines")
		if code != "200" {
			t.Fatalf("GET /api/v1/machines: %s\n%s", code, r)
		}
		var ms []struct {
			MAC      string `json:"mac"`
			Hostname string `json:"hostname"`
			DHCPAddr string `json:"dhcp_addr"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Hostname != "" {
				out[m.Hostname] = m.DHCPAddr
			}
		}
		return out
	}
	code, r := a.e.flint.API(a.e.lab, "/api/v1/leases")
	if code != "200" {
		t.Fatalf("GET /api/v1/leases: %s\n%s", code, r)
	}
	var ls []struct {
		IP, MAC, State string
		Expires        time.Time
	}
	if err := json.Unmarshal([]byte(r.Stdout), &ls); err != nil {
		t.Fatal(err)
	}
	for _, n := range a.e.nodes {
		for _, l := range ls {
			if l.IP == n.IP {
				out[n.Name] = fmt.Sprintf("%s %s %s", l.MAC, l.State, l.Expires.UTC().Format("2006-01-02T15:04:05.000000000Z"))
			}
		}
	}
	return out
}

// dhcpFlood: from the stranger, n DISCOVERs of random MACs (looking like PXE
// firmware, so proxy mode looks at them too), with the spoofs of the
// config's machines' leases in the middle, where nuc4 asks for its own.
func (a *attack) dhcpFlood(raw *rawDHCP, n int) dhcpFloodResult {
	sip := netip.MustParseAddr(a.sip)
	flint := netip.MustParseAddr(flintIP)
	bcast := netip.MustParseAddr("255.255.255.255")
	zero := netip.IPv4Unspecified()
	srvMAC, _ := net.ParseMAC(bridgeMAC)
	res := dhcpFloodResult{start: time.Now()}
	spoof := func(what string, msg *dhcpv4.DHCPv4, src, dst netip.Addr, dstMAC net.HardwareAddr) {
		if err := raw.send(msg, src, dst, dstMAC); err != nil && res.err == nil {
			res.err = fmt.Errorf("%s: %w", what, err)
		}
		res.spoofs = append(res.spoofs, what)
	}
	for i := range n {
		msg := dhcpMsg(dhcpv4.MessageTypeDiscover, randomMAC(), netip.Addr{}, pxeVendor)
		if err := raw.send(msg, zero, bcast, broadcastMAC); err != nil && res.err == nil {
			res.err = err
		}
		res.discovers++
		if i%25 == 24 {
			time.Sleep(10 * time.Millisecond) // about 2000 a second, for 2 s
		}
		if i != n/4 {
			continue
		}
		// The spoofs, for every machine of the config.
		for _, m := range a.e.nodes {
			hw, _ := net.ParseMAC(m.MAC)
			ip := netip.MustParseAddr(m.IP)
			rel := func() *dhcpv4.DHCPv4 {
				return dhcpMsg(dhcpv4.MessageTypeRelease, hw, ip, dhcpv4.OptServerIdentifier(ipOpt(flint)))
			}
			spoof("RELEASE of "+m.Name+"'s lease from the stranger's address", rel(), sip, flint, srvMAC)
			spoof("RELEASE of "+m.Name+"'s lease from its forged address", rel(), ip, flint, srvMAC)
			dec := func() *dhcpv4.DHCPv4 {
				return dhcpMsg(dhcpv4.MessageTypeDecline, hw, netip.Addr{}, dhcpv4.OptRequestedIPAddress(ipOpt(ip)), dhcpv4.OptServerIdentifier(ipOpt(flint)))
			}
			spoof("DECLINE of "+m.Name+"'s address from 0.0.0.0", dec(), zero, bcast, broadcastMAC)
			spoof("DECLINE of "+m.Name+"'s address from the stranger's address", dec(), sip, flint, srvMAC)
			spoof("DECLINE of "+m.Name+"'s address from its forged address", dec(), ip, flint, srvMAC)
			if a.e.proxy() {
				// In proxy mode a REQUEST naming another server is how flint
				// learns a machine's address: see proxyResidual.
				continue
			}
			spoof("REQUEST of "+m.Name+"'s MAC to another server for the stranger's address",
				dhcpMsg(dhcpv4.MessageTypeRequest, hw, netip.Addr{}, dhcpv4.OptRequestedIPAddress(ipOpt(sip)), dhcpv4.OptServerIdentifier(net.ParseIP(atOtherServer)), pxeVendor),
				zero, bcast, broadcastMAC)
			spoof("INIT-REBOOT REQUEST of "+m.Name+"'s MAC for the stranger's address",
				dhcpMsg(dhcpv4.MessageTypeRequest, hw, netip.Addr{}, dhcpv4.OptRequestedIPAddress(ipOpt(sip)), pxeVendor),
				zero, bcast, broadcastMAC)
		}
	}
	res.end = time.Now()
	return res
}

// checkDHCP judges the flood once it is over: the discovered records are
// capped, the config's machines are all there, their leases (full mode) or
// observed addresses (proxy mode) are what they were, and nuc4 got its
// reservation during the flood (its boot checked that). In proxy mode it then
// plays the known residual (proxyResidual).
func (a *attack) checkDHCP(t *testing.T, fl dhcpFloodResult, before map[string]string) (discovered, lost int) {
	if fl.err != nil {
		t.Fatalf("(e) the raw DHCP sender: %v", fl.err)
	}
	e := a.e
	time.Sleep(time.Second) // the last sightings reach the store
	var ms []clMachine
	err := eventually(10*time.Second, 200*time.Millisecond, func() error {
		r := e.cli("machines", "--json")
		if r.Code != 0 {
			return fmt.Errorf("flint machines --json: %s", r)
		}
		ms = nil
		return json.Unmarshal([]byte(r.Stdout), &ms)
	})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range ms {
		if m.Known {
			known[m.Hostname] = true
		} else {
			discovered++
		}
	}
	t.Logf("(e) %d DISCOVERs of random MACs and %d spoofs sent; flint keeps %d discovered records (limits.discovered_machines %d) and the %d known machines",
		fl.discovers, len(fl.spoofs), discovered, atDiscovered, len(known))
	floodOK := discovered <= atDiscovered
	if !floodOK {
		t.Errorf("(e) %d discovered records after the flood, want at most %d", discovered, atDiscovered)
	}
	if discovered < atDiscovered/2 {
		t.Errorf("(e) only %d discovered records after %d DISCOVERs of random MACs: the flood did not reach flint's store, so the cap was not tested", discovered, fl.discovers)
	}
	for _, n := range e.nodes {
		if !known[n.Name] {
			t.Errorf("(e) %s is missing from flint machines after the flood", n.Name)
			floodOK = false
		}
	}
	a.try("e dhcp", fmt.Sprintf("%d DISCOVERs of random MACs", fl.discovers), fmt.Sprintf("%d records kept", discovered), floodOK)

	after := a.knownLeases(t)
	for _, n := range e.nodes {
		want := before[n.Name]
		if e.proxy() {
			want = n.IP
		}
		got := after[n.Name]
		switch {
		case n.Name == "nuc4" && !e.proxy():
			// nuc4 had no lease before; now it must hold its reservation.
			if !strings.HasPrefix(got, n.MAC+" bound ") {
				t.Errorf("(e) nuc4's lease after its boot during the flood: %q, want bound to %s", got, n.MAC)
				lost++
			}
		case e.proxy() && got != want:
			t.Errorf("(e) flint thinks %s took %q from its DHCP server, want %s", n.Name, got, want)
			lost++
		case !e.proxy() && leaseShrank(want, got):
			t.Errorf("(e) %s's lease changed: before %q, after %q", n.Name, want, got)
			lost++
		}
	}
	for _, s := range fl.spoofs {
		a.try("e dhcp", s, "no change", lost == 0)
	}
	if e.proxy() {
		a.proxyResidual(t)
	}
	return discovered, lost
}

// leaseShrank: the lease "MAC state expires" after is not the same MAC,
// bound, and at least as long as before.
func leaseShrank(before, after string) bool {
	b, a := strings.Fields(before), strings.Fields(after)
	if len(b) != 3 || len(a) != 3 {
		return true
	}
	return a[0] != b[0] || a[1] != "bound" || a[2] < b[2]
}

// proxyResidual is the known limit of proxy mode, played once: flint learns a
// machine's address from the broadcast REQUEST it sends the LAN's DHCP
// server, and anyone can broadcast a REQUEST with any chaddr. One REQUEST
// with nuc1's MAC in chaddr, option 54 naming some other server and option
// 50 the stranger's own address, and flint records the stranger's address as
// nuc1's (dhcp_addr) -- the frame's Ethernet source is the stranger's own;
// flint reads only chaddr. Until nuc1 asks its DHCP server again, flint then
// hands nuc1's script, with a fresh boot token, to the stranger, and the
// pointer config for that token. What still holds: nuc1 is an installed live
// etcd member, so the secret config would rebuild its member; flint asks etcd,
// which says the member runs and is healthy, and refuses (403). No secret
// leaves and the membership does not change (checked by the leak check and
// the membership step). Once nuc1 asks its DHCP server again, flint knows its
// address again and the stranger is refused.
//
// (The same REQUEST naming a machine in its install window -- a disk machine
// not yet installed, or one armed by `flint reprovision` -- would get the
// stranger that machine's secrets: the address in proxy mode is only as good
// as the DHCP packets flint sees. This test does not do that to nuc4.)
func (a *attack) proxyResidual(t *testing.T) {
	e := a.e
	nuc1 := e.node("nuc1")
	ns := a.stranger.host.NS
	raw := rawDHCPIn(t, ns)
	hw, _ := net.ParseMAC(nuc1.MAC)
	msg := dhcpMsg(dhcpv4.MessageTypeRequest, hw, netip.Addr{}, dhcpv4.OptRequestedIPAddress(net.ParseIP(a.sip)), dhcpv4.OptServerIdentifier(net.ParseIP(atOtherServer)))
	if err := raw.send(msg, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), broadcastMAC); err != nil {
		t.Fatal(err)
	}
	err := eventually(5*time.Second, 100*time.Millisecond, func() error {
		if got := a.knownLeases(t)["nuc1"]; got != a.sip {
			return fmt.Errorf("flint records nuc1 at %q", got)
		}
		return nil
	})
	if err != nil {
		t.Logf("(e) residual: flint did not take the spoofed REQUEST for nuc1's MAC (%v): the residual is closed", err)
		a.try("e dhcp", "REQUEST of nuc1's MAC to another server for the stranger's address", "ignored", true)
	} else {
		a.allow("e dhcp", "REQUEST of nuc1's MAC to another server for the stranger's address", "flint records nuc1 at "+a.sip,
			"proxy mode's residual: flint cannot tell a spoofed chaddr")
	}
	code, script := a.curl("residual: GET nuc1's script", ns, flintHTTP+"/machines/"+nuc1.hex()+"/boot.ipxe?arch="+clBuildArch)
	m := atTokenRE.FindStringSubmatch(script)
	if m == nil {
		a.try("e dhcp", "GET nuc1's script after the spoofed REQUEST", code, code == "403")
		t.Logf("(e) residual: the stranger's script request for nuc1: %s (no token)", code)
	} else {
		a.allow("e dhcp", "GET nuc1's script after the spoofed REQUEST", code, "proxy mode's residual: the script goes to the address flint saw nuc1's MAC ask for")
		q := "/ignition?mac=" + nuc1.hex() + "&token=" + m[1]
		code, _ = a.curl("residual: GET nuc1's pointer config", ns, flintHTTP+q)
		if code == "200" {
			a.allow("e dhcp", "GET nuc1's pointer config with that token", code, "no secret: flint's CA and the HTTPS URL")
		} else {
			a.try("e dhcp", "GET nuc1's pointer config with that token", code, true)
		}
		waits := 0
		var body string
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body = a.curl("residual: GET nuc1's HTTPS config", ns, "-H", "Accept: application/vnd.coreos.ignition+json;version=3.4.0", flintHTTPS+q)
			if code != "503" || time.Now().After(deadline) {
				break
			}
			waits++
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("(e) residual: the stranger, as nuc1 by a spoofed REQUEST, asked for nuc1's config: %d x 503, then %s: %.300s", waits, code, body)
		ok := code == "403"
		if !ok {
			t.Errorf("(e) residual: nuc1's HTTPS config for the stranger: %s, want 403 (its member is healthy)\n%.300s", code, body)
		}
		a.try("e dhcp", "GET nuc1's HTTPS config with that token", fmt.Sprintf("%d x 503, then %s", waits, code), ok)
	}
	// nuc1 asks its DHCP server again (a renewal, a reboot): flint knows its
	// address again, and the stranger gets no script.
	if err := nuc1.dhcp("renew"); err != nil {
		t.Fatal(err)
	}
	err = eventually(5*time.Second, 100*time.Millisecond, func() error {
		if got := a.knownLeases(t)["nuc1"]; got != nuc1.IP {
			return fmt.Errorf("flint records nuc1 at %q after it asked dnsmasq again, want %s", got, nuc1.IP)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	code, script = a.curl("residual: GET nuc1's script after nuc1 asked again", ns, flintHTTP+"/machines/"+nuc1.hex()+"/boot.ipxe?arch="+clBuildArch)
	ok := code == "403" && !strings.Contains(script, "token=")
	if !ok {
		t.Errorf("(e) residual: after nuc1 asked its DHCP server again the stranger still gets its script: %s\n%s", code, script)
	}
	a.try("e dhcp", "GET nuc1's script after nuc1 asked its DHCP server again", code, ok)
}

// ---- 3. the leak check -----------------------------------------------------------

func (a *attack) leakCheck(t *testing.T) int {
	e := a.e
	needles := secretNeedles(t, e.data, e.nodes)
	// Positive control: the detector finds the secrets in configs that
	// nodes really got (nuc1's, as Ignition cached it; nuc4's installed
	// system's, as its installer handed it to flatcar-install).
	for _, ctl := range []struct {
		what string
		path string
		want string
	}{
		{"nuc1's config (Ignition's cache)", filepath.Join(e.node("nuc1").dir, "boot1", "config.json"), "pki/etcd/nuc1-server.key"},
		{"nuc4's installed config", filepath.Join(e.node("nuc4").dir, "boot1", "disk", "config.ign"), "pki/k3s-agent-token"},
	} {
		b, err := os.ReadFile(ctl.path)
		if err != nil {
			t.Fatalf("leak check control: %v", err)
		}
		found := leaksIn(needles, b)
		if !slices.ContainsFunc(found, func(s string) bool { return strings.HasPrefix(s, ctl.want) }) {
			t.Fatalf("leak check control: the detector finds %v in %s, want %s among them: it would miss a leak", found, ctl.what, ctl.want)
		}
	}
	leaks := 0
	a.mu.Lock()
	bodies := slices.Clone(a.bodies)
	a.mu.Unlock()
	total := 0
	for _, r := range bodies {
		total += len(r.body)
		if found := leaksIn(needles, r.body); len(found) > 0 {
			leaks += len(found)
			t.Errorf("LEAK: %s: the answer holds %v:\n%.500s", r.what, found, r.body)
		}
	}
	log := []byte(e.flint.Stdout.String() + e.flint.Stderr.String())
	if found := leaksIn(needles, log); len(found) > 0 {
		leaks += len(found)
		for _, f := range found {
			for _, n := range needles {
				if n.name == f {
					if i := bytes.Index(log, n.b); i >= 0 {
						lo, hi := max(0, bytes.LastIndexByte(log[:i], '\n')), min(len(log), i+len(n.b)+200)
						t.Errorf("LEAK in flint's log: %s: %q", f, log[lo:hi])
					}
					break
				}
			}
		}
		t.Errorf("LEAK: flint's log holds %v", found)
	}
	t.Logf("leak check: %d secrets in %d forms searched in %d answers (%d bytes) and %d bytes of flint's log: %d found", countNames(needles), len(needles), len(bodies), total, len(log), leaks)
	return leaks
}

func countNames(ns []needle) int {
	seen := map[string]bool{}
	for _, n := range ns {
		seen[strings.TrimSuffix(strings.TrimSuffix(n.name, " (base64)"), " (PEM line)")] = true
	}
	return len(seen)
}

// ---- (i) 100 concurrent reprovisions over the admin socket ------------------

// reprovisionRace arms servers with 100 concurrent POSTs over the admin
// socket (the operator's own API): one rebuild slot, armed in one store
// transaction, so exactly one server ends up armed. Nothing disarms it: this
// is the last step.
func (a *attack) reprovisionRace(t *testing.T) {
	e := a.e
	sock := filepath.Join(e.data, "flint.sock")
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 100,
	}}
	// Connections the transport dialed but never used look to flint's
	// shutdown like requests about to start: close them when done.
	defer client.CloseIdleConnections()
	names := []string{"nuc1", "nuc2", "nuc3"}
	type answer struct {
		code  int
		armed string
		err   error
	}
	answers := make([]answer, 100)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			name := names[i%len(names)]
			resp, err := client.Post("http://flint/api/v1/machines/"+name+"/reprovision", "application/json", strings.NewReader(`{"confirm":true}`))
			if err != nil {
				answers[i] = answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			ans := answer{code: resp.StatusCode}
			var p struct {
				Machine string `json:"machine"`
				Armed   bool   `json:"armed"`
			}
			if resp.StatusCode == 200 && json.Unmarshal(b, &p) == nil && p.Armed {
				ans.armed = p.Machine
			} else if resp.StatusCode != 409 {
				ans.err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
			}
			answers[i] = ans
		}()
	}
	close(start)
	wg.Wait()
	armed := map[string]int{}
	codes := map[int]int{}
	for _, an := range answers {
		if an.err != nil {
			t.Errorf("(i) reprovision: %v", an.err)
			continue
		}
		codes[an.code]++
		if an.armed != "" {
			armed[an.armed]++
		}
	}
	t.Logf("(i) 100 concurrent reprovisions of nuc1, nuc2, nuc3 over the admin socket: answers %v, armed %v", codes, armed)
	if len(armed) != 1 {
		t.Errorf("(i) %d servers armed by 100 concurrent reprovisions (%v), want exactly 1", len(armed), armed)
	}
	ms, err := e.machines()
	if err != nil {
		t.Fatal(err)
	}
	var rebuilding []string
	for _, s := range e.servers() {
		m := ms[s.Name]
		if m.State == "reprovision" || m.Rebuilding {
			rebuilding = append(rebuilding, s.Name)
		}
	}
	if len(rebuilding) != 1 || armed[rebuilding[0]] == 0 {
		t.Errorf("(i) flint machines --json: servers armed or rebuilding %v, want exactly the one the API armed (%v)", rebuilding, armed)
	}
}
