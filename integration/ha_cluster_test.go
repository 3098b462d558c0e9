package integration

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHACluster is issue #13's cluster proof: TestCluster's four NUCs (three
// etcd/K3s servers, one agent, installed to disk by the real Ignition client
// and the laid-down installer) boot against the two flint instances of
// haEnv, which share a 3-member TLS etcd store, and every node's boot is
// spread over both instances:
//
//  1. each node hears one instance's DHCP (the other's answers are dropped at
//     its eth0), fetches its iPXE scripts from the other instance, and its
//     configs (pointer, installer, installed system) and reports from the
//     first again; nuc1 and nuc3 go A -> B -> A, nuc2 and nuc4 B -> A -> B.
//     Both instances' logs show who served which step; the per-boot token
//     one instance minted is accepted by the other; the lifecycle goes
//     ready -> installing -> installed as both instances' `flint machines`
//     show; the CA, etcd certificates' CA and K3s tokens the nodes got from
//     different instances are the same; the servers' 3-member etcd (from
//     what Ignition laid down) is healthy.
//  2. `flint reprovision --yes` of two different servers at the same moment,
//     one through each instance's admin socket, arms exactly one, 3 rounds
//     (the winner cancelled through the other instance in between); the
//     other is refused naming the rebuild; both instances list one armed.
//  3. nuc2 armed through A reboots with every request (DHCP, scripts,
//     configs) going to B: B replaces its etcd member (its log says so, A's
//     does not), nuc2 rejoins with its data, node password and K3s token.
func TestHACluster(t *testing.T) {
	e := newHAClusterEnv(t)
	begin := time.Now()
	e.start()
	A, B := e.ha.A, e.ha.B
	servers := e.servers()
	nuc1, nuc2 := e.node("nuc1"), e.node("nuc2")
	timings := map[string]time.Duration{"start": time.Since(begin)}
	must := mustFor(t)
	etcdDied := e.etcdDied
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range e.instances() {
				t.Logf("==== flint %s's log ====\n%s", f.Name, tail(f.log(), 30000))
			}
		}
	})
	for _, n := range e.nodes {
		must(e.wantState(n.Name, "ready"))
	}

	// ---- 1. first boot, each node's steps on alternating instances -------
	routes := map[string][3]*haFlint{ // DHCP, scripts, configs
		"nuc1": {A, B, A}, "nuc2": {B, A, B}, "nuc3": {A, B, A}, "nuc4": {B, A, B},
	}
	firstDHCP := time.Now()
	since := firstDHCP.Truncate(time.Millisecond)
	boots := map[string]*bootResult{}
	var mu sync.Mutex
	errs := runParallel(e.nodes, func(n *clNode) error {
		r := routes[n.Name]
		if err := n.route(r[0], r[1], r[2]); err != nil {
			return err
		}
		res, err := n.pxe()
		mu.Lock()
		boots[n.Name] = res
		mu.Unlock()
		if err != nil {
			return err
		}
		return n.install(res, 60*time.Second)
	})
	for name, err := range errs {
		t.Errorf("first boot of %s: %v", name, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	timings["first-dhcp->installed"] = time.Since(firstDHCP)
	t.Logf("all four nodes installed and booted from disk %v after the first DHCP", timings["first-dhcp->installed"].Round(time.Millisecond))

	t.Run("who-served-what", func(t *testing.T) {
		for _, n := range e.nodes {
			line, err := e.checkRouted(n, since)
			if err != nil {
				t.Error(err)
				continue
			}
			t.Logf("HA-ROUTE %s: lease from %s (serverid %s), scripts from %s, configs and reports to %s; the token %s minted was accepted by %s", line,
				n.dhcpFrom.Name, boots[n.Name].ServerID, n.scriptFrom.Name, n.cfgFrom.Name, n.scriptFrom.Name, n.cfgFrom.Name)
		}
	})

	t.Run("minted-once", func(t *testing.T) {
		// The CA every node trusts for flint, the etcd CA and K3s tokens:
		// nuc1/nuc3 got theirs from A, nuc2/nuc4 from B.
		etcdCA, token, agentToken := map[string][32]byte{}, map[string][32]byte{}, map[string][32]byte{}
		caWant := sha256File(t, e.caFile)
		for _, n := range e.nodes {
			if sha256File(t, n.rootPath("/etc/flint/ca.crt")) != caWant {
				t.Errorf("%s's /etc/flint/ca.crt (from instance %s) is not the CA both instances print", n.Name, n.cfgFrom.Name)
			}
			env, err := n.readEnv("/etc/rancher/k3s/k3s.env")
			if err != nil {
				t.Error(err)
				continue
			}
			if n.Role == "agent" {
				agentToken[n.Name] = sha256.Sum256([]byte(env["K3S_TOKEN"]))
				continue
			}
			etcdCA[n.Name] = sha256File(t, n.rootPath("/etc/ssl/etcd/ca.crt"))
			token[n.Name] = sha256.Sum256([]byte(env["K3S_TOKEN"]))
			agentToken[n.Name] = sha256.Sum256([]byte(env["K3S_AGENT_TOKEN"]))
		}
		for _, m := range []struct {
			what string
			got  map[string][32]byte
		}{{"etcd CA (/etc/ssl/etcd/ca.crt)", etcdCA}, {"K3S_TOKEN", token}, {"agent token", agentToken}} {
			if len(m.got) < 2 {
				t.Errorf("%s: only %d nodes to compare", m.what, len(m.got))
			}
			for name, sum := range m.got {
				if sum != m.got["nuc1"] {
					t.Errorf("%s's %s (from instance %s) differs from nuc1's (from %s)", name, m.what, e.node(name).cfgFrom.Name, nuc1.cfgFrom.Name)
				}
			}
		}
		if !t.Failed() {
			t.Logf("flint CA, etcd CA, K3S_TOKEN and agent token identical on nodes configured by A (nuc1, nuc3) and by B (nuc2, nuc4)")
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- the servers' etcd from what Ignition laid down -------------------
	ds1, healthyAt, err := e.startServersEtcd(t)
	must(err)
	timings["first-dhcp->healthy"] = healthyAt.Sub(firstDHCP)
	t.Logf("the nodes' 3-member TLS etcd healthy %v after the first DHCP", timings["first-dhcp->healthy"].Round(time.Millisecond))
	t.Run("installed", func(t *testing.T) {
		for _, n := range e.nodes {
			checkInstalled(t, e, n)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- 2. concurrent reprovision on both instances: exactly one --------
	t.Run("reprovision-race", func(t *testing.T) {
		pairs := [][2]string{{"nuc1", "nuc3"}, {"nuc3", "nuc2"}, {"nuc2", "nuc1"}}
		wins := map[string]int{}
		for round, p := range pairs {
			via := []*haFlint{A, B}
			var wg sync.WaitGroup
			res := make([]Result, 2)
			for i := range via {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = e.cliOn(via[i], "reprovision", p[i], "--yes")
				}()
			}
			wg.Wait()
			winner, loser := -1, -1
			for i, r := range res {
				switch {
				case r.Code == 0 && strings.Contains(r.Stdout, "armed"):
					winner = i
				case r.Code != 0 && strings.Contains(r.Stdout+r.Stderr, "another etcd member is still being rebuilt"):
					loser = i
				}
			}
			if winner < 0 || loser < 0 {
				t.Fatalf("round %d: reprovision %s --yes through A and %s --yes through B at once: want one armed and one refused as busy\nA: %s\nB: %s", round+1, p[0], p[1], res[0], res[1])
			}
			w, l := via[winner], via[loser]
			wins[w.Name]++
			refusal := strings.TrimSpace(res[loser].Stderr)
			if !strings.Contains(refusal, p[winner]) {
				t.Errorf("round %d: the refusal through %s does not name %s, which holds the slot: %q", round+1, l.Name, p[winner], refusal)
			}
			for _, f := range e.instances() {
				ms, err := e.machinesIn(f.NS, f.DataDir)
				if err != nil {
					t.Fatal(err)
				}
				var armed []string
				for name, m := range ms {
					if m.State == "reprovision" {
						armed = append(armed, name)
					}
				}
				sort.Strings(armed)
				if len(armed) != 1 || armed[0] != p[winner] {
					t.Fatalf("round %d: flint machines --json through %s lists armed %v, want exactly [%s]", round+1, f.Name, armed, p[winner])
				}
			}
			t.Logf("HA-RACE round %d: %s --yes through %s and %s --yes through %s at once: %s armed through %s (%v); %s refused through %s (exit %d): %s; both instances list only %s armed",
				round+1, p[0], A.Name, p[1], B.Name, p[winner], w.Name, res[winner].Dur.Round(time.Millisecond), p[loser], l.Name, res[loser].Code, refusal, p[winner])
			// Disarmed through the instance that refused it.
			if r := e.cliOn(l, "reprovision", p[winner], "--cancel"); r.Code != 0 || !strings.Contains(r.Stdout, "cancelled") {
				t.Fatalf("round %d: flint reprovision %s --cancel through %s: %s", round+1, p[winner], l.Name, r)
			}
			for _, n := range servers {
				if err := e.wantState(n.Name, "installed"); err != nil {
					t.Fatalf("round %d, after the cancel: %v", round+1, err)
				}
			}
		}
		t.Logf("HA-RACE %d rounds: exactly one armed each time (won through A %d, through B %d)", len(pairs), wins["A"], wins["B"])
	})
	if t.Failed() {
		t.FailNow()
	}

	// ---- 3. a rebuild armed through A, served by B -----------------------
	if d := time.Until(healthyAt.Add(6 * time.Second)); d > 0 {
		// etcd's --strict-reconfig-check: peers connected for 5 s first.
		time.Sleep(d)
	}
	gw, err := newGateway(ds1)
	must(err)
	defer gw.Close()
	keys := map[string]string{}
	for i := range 100 {
		k, v := fmt.Sprintf("flint-test/keys/%03d", i), fmt.Sprintf("value %03d %s", i, randHex(8))
		if err := gw.put("https://"+nuc1.IP+":2379", k, v, 5*time.Second); err != nil {
			t.Fatalf("put %s through nuc1: %v", k, err)
		}
		keys[k] = v
	}
	before, err := rememberForRebuild(ds1, nuc2, keys)
	must(err)

	rebuildStart := time.Now()
	r := e.cliOn(A, "reprovision", "nuc2", "--yes")
	if r.Code != 0 || !strings.Contains(r.Stdout, "armed") {
		t.Fatalf("flint reprovision nuc2 --yes through A: %s", r)
	}
	must(e.wantState("nuc2", "reprovision"))
	if r := e.cliOn(B, "reprovision", "nuc3", "--yes"); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "nuc2") {
		t.Fatalf("flint reprovision nuc3 --yes through B while nuc2 is armed through A: %s, want a refusal naming nuc2", r)
	}
	handLeadershipOver(t, ds1, nuc2, nuc1)
	must(nuc2.route(B, B, B))
	res := e.rebootToRebuild(t, nuc2, boots["nuc2"], rebuildStart)
	if err := ds1.waitHealthy(servers, 60*time.Second, etcdDied); err != nil {
		t.Fatalf("the cluster did not get back to 3 healthy members after nuc2's rebuild: %v", err)
	}
	timings["rebuild"] = time.Since(rebuildStart)
	t.Logf("3 healthy members again %v after flint reprovision nuc2 --yes through A", timings["rebuild"].Round(time.Millisecond))

	t.Run("rebuild-served-by-B", func(t *testing.T) {
		line, err := e.checkRouted(nuc2, rebuildStart.Truncate(time.Millisecond))
		if err != nil {
			t.Error(err)
		}
		t.Logf("HA-REBUILD %s (lease serverid %s)", line, res.ServerID)
		const replaced = `msg="etcd member replaced; serving the node its config with state existing"`
		for _, f := range e.instances() {
			var lines []string
			for _, ln := range strings.Split(f.log(), "\n") {
				if strings.Contains(ln, replaced) && strings.Contains(ln, "machine=nuc2") {
					lines = append(lines, ln)
				}
			}
			switch {
			case f == B && len(lines) != 1:
				t.Errorf("instance B logged %d etcd member replacements of nuc2, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
			case f == A && len(lines) != 0:
				t.Errorf("instance A replaced nuc2's member too:\n%s", strings.Join(lines, "\n"))
			case f == B:
				t.Logf("HA-REBUILD instance B: %s", lines[0])
			}
		}
		ev, err := e.timeline(nuc2.MAC)
		if err != nil {
			t.Fatal(err)
		}
		var rebuilt []clEvent
		for _, x := range ev {
			if !x.At.Before(rebuildStart) {
				rebuilt = append(rebuilt, x)
			}
		}
		t.Logf("HA-REBUILD nuc2's timeline from the arm on (read through A):\n%s", formatTimeline(rebuilt))
	})
	if err := nuc2.report("etcd-healthy", "member nuc2 answers /health"); err != nil {
		t.Fatal(err)
	}
	t.Run("rebuilt-member", func(t *testing.T) { checkRebuilt(t, e, nuc2, before) })

	// ---- the end: every machine installed, on both instances -------------
	for _, n := range e.nodes {
		if err := e.wantState(n.Name, "installed"); err != nil {
			t.Errorf("at the end: %v", err)
		}
	}
	for _, f := range e.instances() {
		if tb := e.cliOn(f, "machines"); tb.Code == 0 {
			t.Logf("flint machines through %s at the end:\n%s", f.Name, tb.Stdout)
		}
	}
	line := fmt.Sprintf("HA-CLUSTER-TIMING start=%.1fs first-dhcp->installed=%.1fs first-dhcp->healthy=%.1fs rebuild=%.1fs",
		timings["start"].Seconds(), timings["first-dhcp->installed"].Seconds(), timings["first-dhcp->healthy"].Seconds(), timings["rebuild"].Seconds())
	t.Log(line)
	fmt.Println(line)
}
