package ignition

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
)

// testCluster is the example cluster on test addresses: three servers, two agents.
const testCluster = `
server:
  address: 198.18.0.2
  http_port: 8080
dhcp:
  mode: full
  subnet: 198.18.0.0/24
  router: 198.18.0.1
  dns: [198.18.0.1, 198.18.0.53]
  domain: lab.test
cluster:
  name: nucs
  install_mode: live
  butane_version: %s
  ssh_authorized_keys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlintTestKeyOnlyForTests operator@test
  profiles_dir: %s
machines:
  - {mac: "02:00:0a:00:00:3c", hostname: nuc1, ip: 198.18.0.60, role: server}
  - {mac: "02:00:0a:00:00:3d", hostname: nuc2, ip: 198.18.0.61, role: server}
  - {mac: "02:00:0a:00:00:3e", hostname: nuc3, ip: 198.18.0.62, role: server}
  - {mac: "02:00:0a:00:00:46", hostname: nuc4, ip: 198.18.0.70, role: agent}
  - {mac: "02:00:0a:00:00:47", hostname: nuc5, ip: 198.18.0.71, role: agent}
`

var (
	macNuc1 = mustMAC("02:00:0a:00:00:3c")
	macNuc2 = mustMAC("02:00:0a:00:00:3d")
	macNuc4 = mustMAC("02:00:0a:00:00:46")
)

func mustMAC(s string) config.MAC {
	hw, err := config.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

// testEnv is a config, an assets directory with small fake binaries and an
// (optional) overlay profiles directory.
type testEnv struct {
	cfg         *config.Config
	assetsDir   string
	profilesDir string
}

type envOpts struct {
	butane   string // default 1.1.0
	profiles bool   // set cluster.profiles_dir to an (empty) temp dir
}

func newEnv(t testing.TB, o envOpts) *testEnv {
	t.Helper()
	if o.butane == "" {
		o.butane = "1.1.0"
	}
	e := &testEnv{assetsDir: t.TempDir()}
	if o.profiles {
		e.profilesDir = t.TempDir()
	}
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(testCluster, o.butane, quoteYAML(e.profilesDir))))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	for _, a := range []string{"k3s/k3s", "etcd/etcd", "etcd/etcdctl"} {
		e.writeAsset(t, a, "#!/bin/sh\necho fake "+a+"\n")
	}
	return e
}

func quoteYAML(s string) string {
	if s == "" {
		return `""`
	}
	return `"` + s + `"`
}

func (e *testEnv) writeAsset(t testing.TB, rel, content string) {
	t.Helper()
	p := filepath.Join(e.assetsDir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) writeProfile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.profilesDir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) renderer(t testing.TB, s Secrets) *Renderer {
	t.Helper()
	r, err := NewRenderer(e.cfg, s, e.assetsDir, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// realPKI opens a fresh PKI in a temp dir.
func realPKI(t testing.TB) *pki.PKI {
	t.Helper()
	p, err := pki.Open(filepath.Join(t.TempDir(), "pki"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeSecrets returns fixed, recognisable PEM-shaped text, so golden files
// are stable and a test can tell whose secret ended up where.
type fakeSecrets struct{}

func fakePEM(kind, who string) []byte {
	body := base64.StdEncoding.EncodeToString([]byte("fake " + kind + " of " + who))
	return []byte(fmt.Sprintf("-----BEGIN %s-----\n%s\n-----END %s-----\n", kind, body, kind))
}

func (fakeSecrets) CACertPEM() []byte     { return fakePEM("CERTIFICATE", "ca") }
func (fakeSecrets) K3sToken() string      { return "K10fake-k3s-token" }
func (fakeSecrets) K3sAgentToken() string { return "fake-k3s-agent-token" }
func (fakeSecrets) EtcdServer(n pki.Node) (pki.KeyPair, error) {
	return pki.KeyPair{CertPEM: fakePEM("CERTIFICATE", n.Name+"-server"), KeyPEM: fakePEM("EC PRIVATE KEY", n.Name+"-server")}, nil
}
func (fakeSecrets) EtcdPeer(n pki.Node) (pki.KeyPair, error) {
	return pki.KeyPair{CertPEM: fakePEM("CERTIFICATE", n.Name+"-peer"), KeyPEM: fakePEM("EC PRIVATE KEY", n.Name+"-peer")}, nil
}
func (fakeSecrets) EtcdClient(name string) (pki.KeyPair, error) {
	return pki.KeyPair{CertPEM: fakePEM("CERTIFICATE", name+"-client"), KeyPEM: fakePEM("EC PRIVATE KEY", name+"-client")}, nil
}
func (fakeSecrets) NodePassword(name string) (string, error) {
	return "fake-node-password-of-" + name, nil
}

// embeddedProfile returns the text of an embedded profile, for tests that
// derive broken variants from it.
func lineOf(t *testing.T, text, needle string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			return i + 1
		}
	}
	t.Fatalf("%q not found", needle)
	return 0
}
