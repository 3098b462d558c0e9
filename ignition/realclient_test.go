package ignition

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/internal/testenv"
)

// TestRealIgnitionClient applies rendered configs with the real Ignition
// clients (files stage into a temp root), so "Ignition's parser accepts it"
// is backed by "Ignition writes what we meant". It needs the binaries built
// by scripts/build-ignition.sh and root (Ignition chowns files to uid 232):
//
//	scripts/build-ignition.sh /tmp/ignition-bin
//	FLINT_IGNITION_BIN=/tmp/ignition-bin go test ./ignition/ -run TestRealIgnitionClient -v
func TestRealIgnitionClient(t *testing.T) {
	bin := os.Getenv("FLINT_IGNITION_BIN")
	const howTo = "run `sudo make test` (it builds the clients and sets FLINT_IGNITION_BIN)"
	if bin == "" {
		testenv.Unavailable(t, howTo, "FLINT_IGNITION_BIN is not set (build the clients with scripts/build-ignition.sh DIR)")
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, howTo, "the real Ignition client chowns files: needs root")
	}

	// flint's HTTP server, reduced to the assets directory, on loopback.
	e := newEnv(t, envOpts{})
	srv := httptest.NewServer(http.StripPrefix("/assets/", http.FileServer(http.Dir(e.assetsDir))))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	// No SSH keys: users need useradd/usermod inside the target root.
	cfg, err := config.Parse("real.yaml", []byte(fmt.Sprintf(`
server: {address: %s, http_port: %s}
dhcp: {mode: proxy, subnet: 198.18.0.0/24, router: 198.18.0.1, dns: [198.18.0.1], domain: lab.test}
cluster: {name: nucs, install_mode: live}
machines:
  - {mac: "02:00:0a:00:00:3c", hostname: nuc1, ip: 198.18.0.60, role: server}
  - {mac: "02:00:0a:00:00:46", hostname: nuc4, ip: 198.18.0.70, role: agent}
`, host, port)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(cfg, realPKI(t), e.assetsDir, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k3s, _ := os.ReadFile(filepath.Join(e.assetsDir, "k3s/k3s"))
	etcd, _ := os.ReadFile(filepath.Join(e.assetsDir, "etcd/etcd"))

	for _, c := range []struct {
		client string
		spec   Spec
	}{{"ignition", SpecV3}, {"ignition-legacy", SpecLegacy}} {
		t.Run(c.client, func(t *testing.T) {
			client := filepath.Join(bin, c.client)
			if _, err := os.Stat(client); err != nil {
				testenv.Unavailable(t, howTo, "%v (run scripts/build-ignition.sh %s)", err, bin)
			}
			out, err := r.RenderMAC(macNuc1, c.spec)
			if err != nil {
				t.Fatal(err)
			}
			work, root := t.TempDir(), t.TempDir()
			cfgFile := filepath.Join(work, "config.ign")
			if err := os.WriteFile(cfgFile, out, 0o600); err != nil {
				t.Fatal(err)
			}
			common := []string{"-log-to-stdout", "-root", root, "-config-cache", filepath.Join(work, "cache.json")}
			if c.spec == SpecLegacy {
				// The legacy client has no fetch stage; files fetches itself.
				runIgnition(t, client, cfgFile, append(common, "-oem", "file", "-stage", "files")...)
			} else {
				state := []string{"-platform", "file", "-state-file", filepath.Join(work, "state"), "-neednet", filepath.Join(work, "neednet")}
				runIgnition(t, client, cfgFile, append(append(common, state...), "-stage", "fetch")...)
				runIgnition(t, client, cfgFile, append(append(common, state...), "-stage", "files")...)
			}

			wantContent(t, root, "etc/hostname", "nuc1\n")
			wantContent(t, root, "opt/bin/k3s", string(k3s))
			wantContent(t, root, "opt/bin/etcd", string(etcd))
			wantOwner(t, root, "etc/ssl/etcd/server.key", 0o600, 232)
			wantOwner(t, root, "etc/ssl/etcd/ca.crt", 0o644, 232)
			wantOwner(t, root, "var/lib/etcd", 0o700|os.ModeDir, 232)
			wantOwner(t, root, "etc/rancher/k3s/k3s.env", 0o600, 0)
			wantOwner(t, root, "opt/bin/k3s", 0o755, 0)
			for _, u := range []string{"etcd.service", "etcd-healthy.service", "k3s.service"} {
				if _, err := os.Stat(filepath.Join(root, "etc/systemd/system", u)); err != nil {
					t.Errorf("unit %s not written: %v", u, err)
				}
			}
			presets, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system-preset/20-ignition.preset"))
			for _, u := range []string{"etcd.service", "etcd-healthy.service", "k3s.service"} {
				if !strings.Contains(string(presets), "enable "+u) {
					t.Errorf("%s not enabled; presets:\n%s", u, presets)
				}
			}
		})
	}
}

func runIgnition(t *testing.T, client, cfgFile string, args ...string) {
	t.Helper()
	// A refused connection is retried forever: always bound the run.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, client, args...)
	cmd.Env = append(os.Environ(), "IGNITION_CONFIG_FILE="+cfgFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(client), strings.Join(args, " "), err, out)
	}
}

func wantContent(t *testing.T, root, rel, want string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil || string(got) != want {
		t.Errorf("/%s: %q, %v; want %q", rel, got, err, want)
	}
}

func wantOwner(t *testing.T, root, rel string, mode os.FileMode, uid int) {
	t.Helper()
	st, err := os.Stat(filepath.Join(root, rel))
	if err != nil {
		t.Errorf("/%s: %v", rel, err)
		return
	}
	if st.Mode()&(os.ModePerm|os.ModeDir) != mode {
		t.Errorf("/%s: mode %v, want %v", rel, st.Mode(), mode)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid {
		t.Errorf("/%s: uid %d, want %d", rel, sys.Uid, uid)
	}
}
