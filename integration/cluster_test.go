package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCluster is issue #4's end-to-end proof. flint serves in full DHCP mode
// (install_mode: disk for every machine) in the lab's server namespace; four
// NUCs (three etcd/K3s servers, one agent) are network namespaces on its
// bridge with the MACs of the config. Each boots with real clients: udhcpc
// (which puts the leased address on its interface), curl for the iPXE
// scripts, the real Ignition client for the installer config, the laid-down
// installer (with a stand-in flatcar-install), Ignition again for the
// installed system's first boot. The servers then run Debian's etcd exactly
// as their etcd.service says, and the test checks:
//
//  1. every node went ready -> installing -> installed, with the installer
//     first and the machine's own config only through the installer;
//  2. a healthy 3-member TLS etcd from what Ignition laid down, reachable
//     with each server's K3s datastore settings;
//  3. configs are refused (403, timeline "ignition refused") to another
//     address asking for a node's config, and to the node itself once installed;
//  4. rebuild-by-reboot of nuc2: reprovision without --yes explains and
//     changes nothing, with --yes arms; nuc2 is killed and wiped, boots
//     again, waits through flint's 503 while flint replaces its etcd member,
//     rejoins with state existing and serves all the data, with the same node
//     password and K3s token, while writes to the other two members go on;
//  5. a second server can't be reprovisioned while nuc2 rebuilds;
//  6. installed machines get a local-boot iPXE script.
//
// Why disk for all four: it is how the NUCs run, it is the mode where the
// install window closes (so "refused after install" and the local-boot
// script are real), and a rebuilt server goes through the same installer as
// a new one, so the rejoin is tested on the path a real rebuild takes.
func TestCluster(t *testing.T) {
	e := newClusterEnv(t)
	e.start()
	servers := e.servers()
	nuc1, nuc2, nuc3, nuc4 := e.node("nuc1"), e.node("nuc2"), e.node("nuc3"), e.node("nuc4")
	timings := map[string]time.Duration{}

	// must stops the test when a step failed: everything after depends on it.
	must := mustFor(t)
	mustAll := func(what string, errs map[string]error) {
		t.Helper()
		names := make([]string, 0, len(errs))
		for name := range errs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			t.Errorf("%s: %s: %v", what, name, errs[name])
		}
		if len(errs) > 0 {
			t.FailNow()
		}
	}
	etcdDied := e.etcdDied

	// Everything on the bridge from here to the etcd-healthy reports: the
	// whole boot of four machines, for the wire-capture proof below.
	capture := startCapture(t, e.lab, e.lab.Srv, "br0")

	// ---- before anything booted: every machine of the config is ready ----
	for _, n := range e.nodes {
		must(e.wantState(n.Name, "ready"))
	}

	// ---- 1. first boot of all four, in parallel -------------------------
	firstDHCP := time.Now()
	boots := map[string]*bootResult{}
	var bootsMu sync.Mutex
	mustAll("PXE boot", runParallel(e.nodes, func(n *clNode) error {
		res, err := n.pxe()
		bootsMu.Lock()
		boots[n.Name] = res
		bootsMu.Unlock()
		return err
	}))
	t.Logf("all four nodes hold their leases and know their config URL %v after the first DHCP", time.Since(firstDHCP).Round(time.Millisecond))

	// ---- 3a. while every node is in its install window and holds its lease:
	// nobody else gets its config, or moves its lifecycle.
	t.Run("guard/other-address", func(t *testing.T) {
		since := time.Now()
		intruder := &clNode{env: e, clNodeSpec: clNodeSpec{Name: "intruder", MAC: clIntruderMAC}, dir: filepath.Join(e.work, "intruder")}
		intruder.host = e.lab.AddHost(t, intruder.Name, intruder.MAC)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("==== intruder ====\n%s", intruder.log.String())
			}
		})
		if err := intruder.dhcp("plain"); err != nil {
			t.Fatal(err)
		}
		strangerIP := intruder.lease["ip"]
		t.Logf("a machine that is not in the config got pool address %s", strangerIP)
		leased := regexp.MustCompile(regexp.QuoteMeta("request from " + strangerIP + ", but flint leased " + nuc1.IP + " to " + nuc1.MAC))
		for _, url := range []string{nuc1.configURL(), nuc1.installedURL()} {
			code, body := intruder.fetchConfig(url)
			if err := e.wantRefused("stranger "+strangerIP+" asking for "+url, code, body, nuc1, since, leased); err != nil {
				t.Error(err)
			}
		}
		if code, body := intruder.fetchConfig(flintHTTP + "/ignition?mac=" + hexhyp(clIntruderMAC)); code != "404" {
			t.Errorf("stranger asking for its own (unknown) MAC's config: %s %.200q, want 404", code, body)
		}
		// A known machine asking for another one's config, from its own lease.
		code, body := nuc4.fetchConfig(nuc1.configURL())
		if err := e.wantRefused("nuc4 ("+nuc4.IP+") asking for nuc1's config", code, body, nuc1, since,
			regexp.MustCompile(regexp.QuoteMeta("request from "+nuc4.IP+", but flint leased "+nuc1.IP+" to "+nuc1.MAC))); err != nil {
			t.Error(err)
		}
		// Nor can a stranger report nuc1 installed (and close its window).
		ev := fmt.Sprintf(`{"mac":%q,"event":"install-finished","detail":"forged"}`, nuc1.MAC)
		for _, url := range []string{flintHTTP + "/api/v1/events", flintHTTPS + "/api/v1/events"} {
			code, r := e.lab.Curl(intruder.host.NS, "--cacert", filepath.Join(e.data, "pki", "ca.crt"), "-X", "POST", "-H", "Content-Type: application/json", "--data", ev, url)
			if code != "403" && code != "404" {
				t.Errorf("stranger posting install-finished for nuc1 to %s: %s %q, want 403 (or 404 on plain HTTP)", url, code, r.Stdout)
			}
		}
		for _, n := range e.nodes {
			if err := e.wantState(n.Name, "ready"); err != nil {
				t.Errorf("after the stranger's requests: %v", err)
			}
		}
		if ev, err := e.timeline(nuc1.MAC); err == nil {
			t.Logf("nuc1's timeline so far:\n%s", formatTimeline(ev))
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	mustAll("install", runParallel(e.nodes, func(n *clNode) error {
		return n.install(boots[n.Name], 60*time.Second)
	}))
	t.Logf("all four nodes installed and booted from disk %v after the first DHCP", time.Since(firstDHCP).Round(time.Millisecond))

	// What each installed root holds, as far as the rest of the test relies on it.
	t.Run("installed-roots", func(t *testing.T) {
		etcdSum := sha256File(t, "/usr/bin/etcd")
		tokens, agentTokens := map[string]string{}, map[string]string{}
		for _, n := range e.nodes {
			if err := n.fileOwned("/etc/rancher/node/password", 0o600, 0); err != nil {
				t.Error(err)
			}
			env, err := n.readEnv("/etc/rancher/k3s/k3s.env")
			if err != nil {
				t.Error(err)
				continue
			}
			if n.Role == "agent" {
				if want := "https://" + nuc1.IP + ":6443"; env["K3S_URL"] != want {
					t.Errorf("%s: K3S_URL=%q, want %s", n.Name, env["K3S_URL"], want)
				}
				agentTokens[n.Name] = env["K3S_TOKEN"]
				continue
			}
			tokens[n.Name] = env["K3S_TOKEN"]
			agentTokens[n.Name] = env["K3S_AGENT_TOKEN"]
			for _, f := range []string{"server.key", "peer.key", "client.key"} {
				if err := n.fileOwned("/etc/ssl/etcd/"+f, 0o600, clEtcdUID); err != nil {
					t.Error(err)
				}
			}
			if sha256File(t, n.rootPath("/opt/bin/etcd")) != etcdSum {
				t.Errorf("%s: /opt/bin/etcd is not the etcd flint serves (Debian's /usr/bin/etcd)", n.Name)
			}
			ee := boots[n.Name].EtcdEnv
			var members []string
			for _, s := range servers {
				members = append(members, s.Name+"=https://"+s.IP+":2380")
			}
			want := map[string]string{
				"ETCD_NAME":                        n.Name,
				"ETCD_INITIAL_CLUSTER_STATE":       "new",
				"ETCD_INITIAL_CLUSTER":             strings.Join(members, ","),
				"ETCD_INITIAL_CLUSTER_TOKEN":       "flint-" + clClusterName,
				"ETCD_ADVERTISE_CLIENT_URLS":       "https://" + n.IP + ":2379",
				"ETCD_LISTEN_PEER_URLS":            "https://" + n.IP + ":2380",
				"ETCD_DATA_DIR":                    "/var/lib/etcd",
				"ETCD_CLIENT_CERT_AUTH":            "true",
				"ETCD_PEER_CLIENT_CERT_AUTH":       "true",
				"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://" + n.IP + ":2380",
			}
			for k, v := range want {
				if ee[k] != v {
					t.Errorf("%s: etcd.env %s=%q, want %q", n.Name, k, ee[k], v)
				}
			}
		}
		for name, tok := range tokens {
			if tok == "" || tok != tokens["nuc1"] {
				t.Errorf("%s's K3S_TOKEN differs from nuc1's (or is empty)", name)
			}
		}
		// Agents join with the servers' K3S_AGENT_TOKEN, never the server token.
		for name, tok := range agentTokens {
			if tok == "" || tok != agentTokens["nuc1"] || tok == tokens["nuc1"] {
				t.Errorf("%s's agent token is empty, differs from the servers' K3S_AGENT_TOKEN, or is the server token", name)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- 2. etcd from what Ignition laid down ---------------------------
	ds1, healthyAt, err := e.startServersEtcd(t)
	must(err)
	timings["first-dhcp->healthy"] = healthyAt.Sub(firstDHCP)
	t.Logf("3-member TLS etcd healthy %v after the first DHCP", timings["first-dhcp->healthy"].Round(time.Millisecond))

	// ---- no secret crossed the wire in clear ------------------------------
	t.Run("wire-capture", func(t *testing.T) {
		w, err := readPcap(capture.stop(t))
		if err != nil {
			t.Fatal(err)
		}
		var roots []string
		for _, n := range e.nodes {
			roots = append(roots, n.dir)
		}
		leaks, summary := checkWire(w, flintSecrets(t, e.data, roots))
		t.Logf("wire capture of the whole boot: %s", summary)
		for _, l := range leaks {
			t.Errorf("in clear on the wire: %s", l)
		}
		// What does cross in clear: DHCP, the scripts, the pointer configs
		// (flint's CA and the boot token, spent by then), the assets.
		var sawPointer, sawHTTPS bool
		for key, st := range w.tcp {
			sawPointer = sawPointer || bytes.Contains(st, []byte(`"replace":{"source":"https://`))
			sawHTTPS = sawHTTPS || (strings.Contains(key, ":8443>") && len(st) > 0 && st[0] == 0x16)
		}
		if !sawPointer || !sawHTTPS {
			t.Errorf("the capture lacks the pointer configs (%v) or flint's TLS answers (%v): it did not see the boot", sawPointer, sawHTTPS)
		}
	})

	t.Run("k3s-datastore", func(t *testing.T) {
		var endpoints []string
		for _, s := range servers {
			endpoints = append(endpoints, "https://"+s.IP+":2379")
		}
		for _, s := range servers {
			ds, err := s.datastore()
			if err != nil {
				t.Error(err)
				continue
			}
			if ds.Endpoints != strings.Join(endpoints, ",") {
				t.Errorf("%s: K3S_DATASTORE_ENDPOINT=%q, want %q", s.Name, ds.Endpoints, strings.Join(endpoints, ","))
			}
			key, value := "flint-test/datastore/"+s.Name, "written with "+s.Name+"'s K3s datastore settings"
			if r := ds.etcdctl("", "put", key, value); r.Code != 0 || strings.TrimSpace(r.Stdout) != "OK" {
				t.Errorf("%s: etcdctl put with the K3s datastore settings: exit %d %q %q", s.Name, r.Code, r.Stdout, r.Stderr)
				continue
			}
			// Read back through every member, by each server's settings.
			for _, ep := range endpoints {
				if r := ds.etcdctl(ep, "get", key, "--print-value-only"); r.Code != 0 || strings.TrimSpace(r.Stdout) != value {
					t.Errorf("%s: etcdctl get %s from %s: exit %d %q %q", s.Name, key, ep, r.Code, r.Stdout, r.Stderr)
				}
			}
		}
		ms, err := ds1.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			t.Logf("member %x %s peer %v client %v", m.ID, m.Name, m.PeerURLs, m.ClientURLs)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- 3b and 6: installed machines are refused and boot their disks ---
	t.Run("installed", func(t *testing.T) {
		for _, n := range e.nodes {
			checkInstalled(t, e, n)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- 4. rebuild-by-reboot of nuc2 -----------------------------------
	// etcd refuses membership changes until the members have been connected
	// for 5 s (--strict-reconfig-check); a real cluster is older than that.
	if d := time.Until(healthyAt.Add(6 * time.Second)); d > 0 {
		t.Logf("waiting %v so the peer connections are older than etcd's 5 s reconfiguration check", d.Round(time.Millisecond))
		time.Sleep(d)
	}
	gw, err := newGateway(ds1)
	must(err)
	defer gw.Close()
	keys := map[string]string{}
	for i := range 100 {
		k, v := fmt.Sprintf("flint-test/keys/%03d", i), fmt.Sprintf("value %03d %s", i, randHex(8))
		if err := gw.put("https://"+nuc1.IP+":2379", k, v, 5*time.Second); err != nil {
			t.Fatalf("put %s through etcd's gateway with nuc1's datastore credentials: %v", k, err)
		}
		keys[k] = v
	}
	t.Logf("wrote 100 keys through nuc1")
	before, err := rememberForRebuild(ds1, nuc2, keys)
	must(err)

	t.Run("reprovision/plan-only", func(t *testing.T) {
		r := e.cli("reprovision", "nuc2")
		out := r.Stdout + r.Stderr
		if r.Code != 2 {
			t.Errorf("flint reprovision nuc2 (no --yes): exit %d, want 2\n%s", r.Code, r)
		}
		for _, want := range []string{"nuc2 (server): on its next PXE boot flint will", "remove nuc2's old etcd member and add it back with peer URL https://" + nuc2.IP + ":2380",
			"ETCD_INITIAL_CLUSTER_STATE=existing", "nothing was changed", "--yes"} {
			if !strings.Contains(out, want) {
				t.Errorf("flint reprovision nuc2 does not explain %q:\n%s", want, out)
			}
		}
		t.Logf("flint reprovision nuc2 (no --yes), exit %d:\n%s", r.Code, out)
		if err := e.wantState("nuc2", "installed"); err != nil {
			t.Errorf("after reprovision without --yes: %v", err)
		}
		if ev, err := e.timeline(nuc2.MAC); err != nil || len(findEvents(ev, "reprovision armed", time.Time{})) > 0 {
			t.Errorf("reprovision without --yes armed nuc2 (or no timeline: %v)", err)
		}
		if code, body := nuc2.fetchConfig(nuc2.configURL()); code != "403" {
			t.Errorf("nuc2's config after a reprovision without --yes: %s %.100q, want 403 still", code, body)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	rebuildStart := time.Now()
	r := e.cli("reprovision", "nuc2", "--yes")
	if r.Code != 0 || !strings.Contains(r.Stdout, "armed") {
		t.Fatalf("flint reprovision nuc2 --yes: exit %d, want 0 and \"armed\"\n%s", r.Code, r)
	}
	t.Logf("flint reprovision nuc2 --yes:\n%s", r.Stdout)
	must(e.wantState("nuc2", "reprovision"))

	// ---- 5a. no second server while nuc2 is armed ----------------------
	t.Run("one-at-a-time/armed", func(t *testing.T) { wantBusy(t, e, "nuc3", "nuc2") })

	// A rebooting member would normally hand its leadership over; a killed
	// leader costs an election (1-2 s of etcd's defaults) that is no loss of
	// quorum. Move it away so the writer measures the rebuild, not the election.
	handLeadershipOver(t, ds1, nuc2, nuc1)

	writer := startWriter(gw, []string{"https://" + nuc1.IP + ":2379", "https://" + nuc3.IP + ":2379"}, 100*time.Millisecond)
	defer writer.Stop()
	time.Sleep(300 * time.Millisecond)

	e.rebootToRebuild(t, nuc2, boots["nuc2"], rebuildStart)
	if err := ds1.waitHealthy(servers, 60*time.Second, etcdDied); err != nil {
		t.Fatalf("the cluster did not get back to 3 healthy members after nuc2's rebuild: %v", err)
	}
	timings["rebuild"] = time.Since(rebuildStart)
	t.Logf("3 healthy members again %v after flint reprovision nuc2 --yes", timings["rebuild"].Round(time.Millisecond))

	// ---- 5b. still busy until nuc2 says etcd-healthy ---------------------
	t.Run("one-at-a-time/rebuilding", func(t *testing.T) {
		if ms, err := e.machines(); err != nil || !ms["nuc2"].Rebuilding {
			t.Errorf("flint machines --json: nuc2 should be rebuilding until it reports etcd-healthy: %+v %v", ms["nuc2"], err)
		}
		wantBusy(t, e, "nuc3", "nuc2")
		if err := nuc2.report("etcd-healthy", "member nuc2 answers /health"); err != nil {
			t.Fatal(err)
		}
		r := e.cli("reprovision", "nuc3") // the plan only: nothing is armed
		if r.Code != 2 || !strings.Contains(r.Stdout, "nuc3 (server): on its next PXE boot flint will") || strings.Contains(r.Stdout+r.Stderr, "still being rebuilt") {
			t.Errorf("flint reprovision nuc3 after nuc2 reported etcd-healthy: exit %d, want 2 with the plan and no refusal\n%s", r.Code, r)
		}
		if err := e.wantState("nuc3", "installed"); err != nil {
			t.Error(err)
		}
	})

	t.Run("rebuilt-member", func(t *testing.T) { checkRebuilt(t, e, nuc2, before) })

	writer.Stop()
	t.Logf("writer (K3s stand-in on nuc1): %s", writer)
	if writer.maxGap > 2*time.Second {
		t.Errorf("writes to nuc1/nuc3 stopped for %v during nuc2's rebuild, want at most 2 s (the cluster lost quorum or leadership)", writer.maxGap.Round(time.Millisecond))
	}
	if writer.puts < 20 {
		t.Errorf("the writer only tried %d puts during the rebuild", writer.puts)
	}

	// ---- the end: every machine installed --------------------------------
	ms, err := e.machines()
	must(err)
	for _, n := range e.nodes {
		if ms[n.Name].State != "installed" {
			t.Errorf("at the end %s is %q, want installed", n.Name, ms[n.Name].State)
		}
	}
	table := e.cli("machines")
	if table.Code != 0 {
		t.Errorf("flint machines: %s", table)
	}
	t.Logf("flint machines at the end:\n%s", table.Stdout)
	line := fmt.Sprintf("CLUSTER-TIMING first-dhcp->healthy=%.1fs rebuild=%.1fs", timings["first-dhcp->healthy"].Seconds(), timings["rebuild"].Seconds())
	t.Log(line)
	fmt.Println(line)
}

// checkInstalled: an installed disk-mode machine gets no config (403, on its
// timeline) and a local-boot script, and flint machines says installed.
func checkInstalled(t *testing.T, e *clusterEnv, n *clNode) {
	t.Helper()
	since := time.Now()
	closed := regexp.MustCompile(regexp.QuoteMeta(n.Name + " is installed: its install window is closed; run `flint reprovision " + n.Name + "`"))
	for _, url := range []string{n.configURL(), n.installedURL()} {
		code, body := n.fetchConfig(url)
		if err := e.wantRefused(n.Name+" asking for "+url+" again after its install", code, body, n, since, closed); err != nil {
			t.Error(err)
		}
	}
	for _, base := range e.httpBases() {
		code, r := e.lab.Curl(n.host.NS, base+"/machines/"+n.hex()+"/boot.ipxe?arch="+clBuildArch)
		n.record(r)
		if code != "200" || !strings.Contains(r.Stdout, "sanboot") || !strings.Contains(r.Stdout, "exit 1") || strings.Contains(r.Stdout, "\nkernel ") {
			t.Errorf("%s's iPXE script from %s after its install: %s, want 200 with sanboot and exit 1 and no kernel:\n%s", n.Name, base, code, r.Stdout)
		}
	}
	if err := e.wantState(n.Name, "installed"); err != nil {
		t.Error(err)
	}
	table := e.cli("machines")
	for _, ln := range strings.Split(table.Stdout, "\n") {
		if strings.Contains(ln, n.MAC) && !strings.Contains(ln, "installed") {
			t.Errorf("flint machines shows %s not installed: %q", n.Name, ln)
		}
	}
}

// wantBusy: reprovisioning target is refused, naming the rebuilding server,
// and nothing changes.
func wantBusy(t *testing.T, e *clusterEnv, target, rebuilding string) {
	t.Helper()
	r := e.cli("reprovision", target, "--yes")
	out := r.Stdout + r.Stderr
	if r.Code == 0 || !strings.Contains(out, rebuilding) || !strings.Contains(out, "still being rebuilt") {
		t.Errorf("flint reprovision %s --yes while %s rebuilds: exit %d, want non-zero and a refusal naming %s\n%s", target, rebuilding, r.Code, rebuilding, r)
	} else {
		t.Logf("refused as it should be (exit %d): %s", r.Code, strings.TrimSpace(r.Stderr))
	}
	if err := e.wantState(target, "installed"); err != nil {
		t.Errorf("after the refused reprovision: %v", err)
	}
}

func sha256File(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
