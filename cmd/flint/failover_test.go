package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

// TestTwoInstancesOnThreeMembers: two flint serve processes on a 3-member
// etcd store. Operators arming rebuilds through both at the same moment arm
// exactly one server; with one member down nothing stops; with quorum lost
// flint says so (readiness 503 naming the store, commands fail saying what
// to check) and changes nothing; with quorum back everything answers again
// and nothing armed was lost.
func TestTwoInstancesOnThreeMembers(t *testing.T) {
	cl := etcdtest.Start(t, 3)
	sealKey := cl.EncryptionKeyFile() // one for both instances: they share the PKI
	site := func() (cfg, data string, httpPort int) {
		httpPort, data = freePort(t), t.TempDir()
		dir := t.TempDir()
		cfg = filepath.Join(dir, "site.yaml")
		text := fmt.Sprintf(`server: {address: 127.0.0.1, listen: 127.0.0.1, http_port: %d, https_port: %d, tftp_port: %d}
dhcp: {mode: "off", subnet: 198.18.0.0/24}
ipxe: {directory: %s}
cluster: {name: test, install_mode: live}
%smachines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.11, role: server}
  - {mac: "52:54:00:00:00:02", hostname: nuc2, ip: 198.18.0.12, role: server}
  - {mac: "52:54:00:00:00:03", hostname: nuc3, ip: 198.18.0.13, role: server}
`, httpPort, freePort(t), freePort(t), dir, cl.StoreSection("etcd", "/flint/failover/", sealKey))
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg, data, httpPort
	}
	cfgA, dataA, portA := site()
	cfgB, dataB, portB := site()

	// The three servers were installed before (seeded in the store).
	seed, err := store.OpenEtcd(store.EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: "/flint/failover/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"} {
		if _, err := seed.UpdateMachine(mac, func(m *store.Machine) error {
			m.State, m.StateChanged = store.StateInstalled, time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	seed.Close()
	startServe(t, cfgA, dataA)
	startServe(t, cfgB, dataB)

	run := func(args ...string) (string, error) {
		out, err := cliProcess(args...).CombinedOutput()
		return string(out), err
	}
	armed := func(t *testing.T, cfg string) []string {
		t.Helper()
		out, err := run("machines", "--config", cfg, "--data", t.TempDir())
		if err != nil {
			t.Fatalf("flint machines: %v\n%s", err, out)
		}
		var names []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "reprovision") {
				names = append(names, strings.Fields(l)[0])
			}
		}
		return names
	}
	readyz := func(port int) (int, string) {
		c := &http.Client{Timeout: 15 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("rebuilds armed through both instances at once: exactly one", func(t *testing.T) {
		for round := 1; round <= 5; round++ {
			var wg sync.WaitGroup
			outs := make([]string, 2)
			errs := make([]error, 2)
			for i, a := range [][]string{{"nuc1", cfgA, dataA}, {"nuc2", cfgB, dataB}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outs[i], errs[i] = run("reprovision", a[0], "--yes", "--config", a[1], "--data", a[2])
				}()
			}
			wg.Wait()
			ok := 0
			for i := range errs {
				if errs[i] == nil {
					ok++
				} else if !strings.Contains(outs[i], "another etcd member is still being rebuilt") {
					t.Errorf("round %d: the refused arm does not say another server rebuilds: %v\n%s", round, errs[i], outs[i])
				}
			}
			if round == 1 {
				t.Logf("round 1:\n%s\n%s", outs[0], outs[1])
			}
			got := armed(t, cfgA)
			if ok != 1 || len(got) != 1 {
				t.Fatalf("round %d: %d arms succeeded, armed now %v; want exactly one\n%s\n%s", round, ok, got, outs[0], outs[1])
			}
			if out, err := run("reprovision", got[0], "--cancel", "--config", cfgB, "--data", dataB); err != nil {
				t.Fatalf("round %d: cancel %s through the other instance: %v\n%s", round, got[0], err, out)
			}
		}
	})
	if out, err := run("reprovision", "nuc3", "--yes", "--config", cfgA, "--data", dataA); err != nil {
		t.Fatalf("arm nuc3: %v\n%s", err, out)
	}

	t.Run("one member down: nothing stops", func(t *testing.T) {
		cl.Kill(cl.Members[2])
		for _, p := range []int{portA, portB} {
			if code, body := readyz(p); code != http.StatusOK {
				t.Errorf("readyz of the instance on %d with 2 of 3 members: %d %s", p, code, body)
			}
		}
		if got := armed(t, cfgB); len(got) != 1 || got[0] != "nuc3" {
			t.Errorf("armed with 2 of 3 members: %v, want [nuc3]", got)
		}
	})

	t.Run("quorum lost: flint says so and changes nothing", func(t *testing.T) {
		cl.Kill(cl.Members[1])
		start := time.Now()
		code, body := readyz(portA)
		if code != http.StatusServiceUnavailable {
			t.Errorf("readyz without quorum: %d %q, want 503", code, body)
		}
		t.Logf("readyz without quorum after %v: %d %s", time.Since(start).Round(100*time.Millisecond), code, strings.TrimSpace(body))
		out, err := run("reprovision", "nuc1", "--yes", "--config", cfgB, "--data", dataB)
		if err == nil || !strings.Contains(out, "quorum") {
			t.Errorf("reprovision without quorum: %v, want a failure that names the quorum\n%s", err, out)
		}
	})

	t.Run("quorum back: everything answers, nothing lost", func(t *testing.T) {
		for _, m := range cl.Members[1:] {
			cl.StartMember(m, cl.InitialCluster, "existing")
		}
		start := time.Now()
		for {
			a, _ := readyz(portA)
			b, _ := readyz(portB)
			if a == http.StatusOK && b == http.StatusOK {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("readyz 30 s after quorum came back: %d %d", a, b)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("both instances ready %v after the members restarted", time.Since(start).Round(100*time.Millisecond))
		if got := armed(t, cfgA); len(got) != 1 || got[0] != "nuc3" {
			t.Errorf("armed after quorum came back: %v, want [nuc3]", got)
		}
	})
}
