package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

func TestCompareSites(t *testing.T) {
	a := store.Instance{ID: "http://198.18.0.1:8080", SiteHash: "aaaa"}
	b := store.Instance{ID: "http://198.18.0.2:8080", SiteHash: "aaaa"}
	c := store.Instance{ID: "http://198.18.0.3:8080", SiteHash: "cccc"}
	for _, tc := range []struct {
		name string
		all  []store.Instance
		ok   bool
		says []string
	}{
		{"alone", []store.Instance{a}, true, nil},
		{"not announced yet", nil, true, nil},
		{"two alike", []store.Instance{a, b}, true, nil},
		{"one differs", []store.Instance{a, b, c}, false, []string{"http://198.18.0.3:8080 (site cccc)", "differ from http://198.18.0.1:8080 (site aaaa)", "flint validate --store"}},
	} {
		ok, why := compareSites(a.ID, a.SiteHash, tc.all)
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v (%s)", tc.name, ok, tc.ok, why)
		}
		for _, s := range tc.says {
			if !strings.Contains(why, s) {
				t.Errorf("%s: %q does not say %q", tc.name, why, s)
			}
		}
	}
	// The instance that differs sees it the same way round.
	if ok, why := compareSites(c.ID, c.SiteHash, []store.Instance{a, b, c}); ok || !strings.Contains(why, "http://198.18.0.1:8080 (site aaaa), http://198.18.0.2:8080 (site aaaa) differ") {
		t.Errorf("from c: %v %q", ok, why)
	}
}

// TestInstancesAgreeOnTheSite: flint serve processes sharing one etcd store
// announce their site; while one with another site serves there, the others
// withhold secret configs (503 naming the disagreement, logged as an error)
// and validate --store exits 1 naming it; once it stops, configs go out
// again.
func TestInstancesAgreeOnTheSite(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	storeSection := cl.StoreSection("etcd", "/flint/agree/", cl.EncryptionKeyFile())
	type instance struct {
		cfg, data         string
		httpPort, tlsPort int
	}
	newInstance := func(cluster string) instance {
		in := instance{httpPort: freePort(t), tlsPort: freePort(t), data: t.TempDir()}
		in.cfg = loopbackConfig(t, in.httpPort, in.tlsPort, cluster)
		f, err := os.OpenFile(in.cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(storeSection); err != nil {
			t.Fatal(err)
		}
		return in
	}
	a, b := newInstance(""), newInstance("")
	// Stand-ins for the files nuc1's (a server's) config names.
	for _, f := range []string{"k3s/k3s", "etcd/etcd", "etcd/etcdctl"} {
		p := filepath.Join(a.data, "assets", f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stand-in "+f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	other := newInstance("  ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlintOtherSiteKey other@site\"]\n")
	servedA := startServe(t, a.cfg, a.data)
	startServe(t, b.cfg, b.data)

	// secretConfig fetches nuc1's script from instance a, then its config
	// over HTTPS with the script's token.
	secretConfig := func(t *testing.T) (int, string) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/machines/52-54-00-00-00-01/boot.ipxe", a.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		script, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tok := regexp.MustCompile(`token=([0-9a-f]{64})`).FindSubmatch(script)
		if tok == nil {
			t.Fatalf("script (%d) has no token:\n%s", resp.StatusCode, script)
		}
		// The PKI is in the etcd store (sealed): flint pki prints the CA.
		ca, err := cliProcess("pki", "--config", a.cfg, "--print", "ca.crt").Output()
		if err != nil {
			t.Fatalf("flint pki --print ca.crt: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(ca)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		resp, err = c.Get(fmt.Sprintf("https://127.0.0.1:%d/ignition?mac=52-54-00-00-00-01&token=%s", a.tlsPort, tok[1]))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	validateStore := func(cfg string) (string, error) {
		out, err := cliProcess("validate", "--config", cfg, "--data", t.TempDir(), "--store").CombinedOutput()
		return string(out), err
	}

	t.Run("two instances of one site agree", func(t *testing.T) {
		out, err := validateStore(a.cfg)
		if err != nil || strings.Count(out, ": same site") != 2 || strings.Contains(out, "DIFFERS") {
			t.Fatalf("validate --store: %v\n%s", err, out)
		}
		if code, body := secretConfig(t); code != http.StatusOK {
			t.Fatalf("secret config: %d %s", code, body)
		}
	})

	servedOther := startServe(t, other.cfg, other.data)
	t.Run("an instance of another site stops the secrets", func(t *testing.T) {
		start := time.Now()
		for !strings.Contains(servedA.stderr.String(), "disagree on the site config") {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("instance a did not log the disagreement within 10 s:\n%s", servedA.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("a logged the disagreement %v after the other site's instance served", time.Since(start).Round(100*time.Millisecond))
		code, body := secretConfig(t)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "disagree on the site config") || !strings.Contains(body, fmt.Sprintf("127.0.0.1:%d", other.httpPort)) {
			t.Fatalf("secret config while disagreeing: %d %q, want 503 naming the other instance", code, body)
		}
		out, err := validateStore(a.cfg)
		if err == nil || strings.Count(out, "DIFFERS") != 1 || !strings.Contains(out, "1 instance serving from the store has a different site") {
			t.Fatalf("validate --store with another site serving: %v\n%s", err, out)
		}
		t.Logf("validate --store:\n%s", out)
	})

	t.Run("once it stops, secrets go out again", func(t *testing.T) {
		servedOther.stop()
		start := time.Now()
		for {
			code, body := secretConfig(t)
			if code == http.StatusOK {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("secret config 10 s after the other site's instance stopped: %d %q", code, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("secret configs went out again %v after the other site's instance stopped", time.Since(start).Round(100*time.Millisecond))
	})
}
