package ignition

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	v3_3 "github.com/coreos/ignition/v2/config/v3_3"
	v3_4 "github.com/coreos/ignition/v2/config/v3_4"
	types "github.com/coreos/ignition/v2/config/v3_4/types"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
)

// parsed is a spec 3.4 config indexed for assertions.
type parsed struct {
	cfg   types.Config
	files map[string]types.File
	dirs  map[string]types.Directory
	units map[string]types.Unit
}

func parseV3(t *testing.T, raw []byte) parsed {
	t.Helper()
	cfg, rpt, err := v3_4.Parse(raw)
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("Ignition 3.4 parser: %v %s", err, rpt)
	}
	p := parsed{cfg: cfg, files: map[string]types.File{}, dirs: map[string]types.Directory{}, units: map[string]types.Unit{}}
	for _, f := range cfg.Storage.Files {
		if _, dup := p.files[f.Path]; dup {
			t.Errorf("file %s appears twice", f.Path)
		}
		p.files[f.Path] = f
	}
	for _, d := range cfg.Storage.Directories {
		p.dirs[d.Path] = d
	}
	for _, u := range cfg.Systemd.Units {
		p.units[u.Name] = u
	}
	return p
}

// decodeSource decodes a data URL ("data:,url-escaped" or "data:;base64,...").
func decodeSource(t *testing.T, src string) string {
	t.Helper()
	meta, data, ok := strings.Cut(strings.TrimPrefix(src, "data:"), ",")
	if !ok || !strings.HasPrefix(src, "data:") {
		t.Fatalf("not a data URL: %.40s", src)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	s, err := url.PathUnescape(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantFile checks a file's mode and owner and returns its decoded contents.
func (p parsed) wantFile(t *testing.T, path string, mode int, uid, gid int) string {
	t.Helper()
	f, ok := p.files[path]
	if !ok {
		t.Fatalf("no file %s", path)
	}
	if f.Mode == nil || *f.Mode != mode {
		t.Errorf("%s: mode %v, want %#o", path, ptrVal(f.Mode), mode)
	}
	if f.User.ID == nil || *f.User.ID != uid || f.User.Name != nil {
		t.Errorf("%s: user %v, want numeric id %d", path, ptrVal(f.User.ID), uid)
	}
	if f.Group.ID == nil || *f.Group.ID != gid || f.Group.Name != nil {
		t.Errorf("%s: group %v, want numeric id %d", path, ptrVal(f.Group.ID), gid)
	}
	if f.Overwrite == nil || !*f.Overwrite {
		t.Errorf("%s: overwrite is not true", path)
	}
	if f.Contents.Source == nil {
		t.Fatalf("%s: no contents", path)
	}
	return decodeSource(t, *f.Contents.Source)
}

// wantRootFile is wantFile for files whose owner Ignition leaves at root
// (no user/group given).
func (p parsed) wantRootFile(t *testing.T, path string, mode int) string {
	t.Helper()
	f, ok := p.files[path]
	if !ok {
		t.Fatalf("no file %s", path)
	}
	if f.User.ID != nil && *f.User.ID != 0 || f.User.Name != nil {
		t.Errorf("%s: owner is not root", path)
	}
	if f.Mode == nil || *f.Mode != mode {
		t.Errorf("%s: mode %v, want %#o", path, ptrVal(f.Mode), mode)
	}
	return decodeSource(t, *f.Contents.Source)
}

// wantAsset checks a downloaded binary: URL on flint, SHA-512 of the asset file.
func (p parsed) wantAsset(t *testing.T, e *testEnv, path, asset string) {
	t.Helper()
	f, ok := p.files[path]
	if !ok {
		t.Fatalf("no file %s", path)
	}
	if f.Mode == nil || *f.Mode != 0o755 {
		t.Errorf("%s: mode %v, want 0755", path, ptrVal(f.Mode))
	}
	if got, want := ptrVal(f.Contents.Source), "http://198.18.0.2:8080/assets/"+asset; got != want {
		t.Errorf("%s: source %v, want %s", path, got, want)
	}
	data, err := os.ReadFile(filepath.Join(e.assetsDir, asset))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(data)
	if got, want := ptrVal(f.Contents.Verification.Hash), "sha512-"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("%s: hash %v, want %s", path, got, want)
	}
}

func ptrVal[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// parseEnv reads an environment file into a map; duplicates fail.
func parseEnv(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("env line %q has no '='", l)
		}
		if _, dup := out[k]; dup {
			t.Fatalf("env %s set twice", k)
		}
		out[k] = v
	}
	return out
}

// unitOpts parses unit contents into "Section.Name" -> values.
func (p parsed) unitOpts(t *testing.T, name string) map[string][]string {
	t.Helper()
	u, ok := p.units[name]
	if !ok {
		t.Fatalf("no unit %s", name)
	}
	if u.Enabled == nil || !*u.Enabled {
		t.Errorf("unit %s is not enabled", name)
	}
	opts, err := unit.DeserializeOptions(strings.NewReader(ptrVal(u.Contents).(string)))
	if err != nil {
		t.Fatalf("unit %s: %v", name, err)
	}
	out := map[string][]string{}
	for _, o := range opts {
		out[o.Section+"."+o.Name] = append(out[o.Section+"."+o.Name], o.Value)
	}
	return out
}

func wantOpts(t *testing.T, unit string, got map[string][]string, want map[string][]string) {
	t.Helper()
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: %s = %q, want %q", unit, k, got[k], v)
		}
	}
}

func TestServerConfig(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := realPKI(t)
	out, err := e.renderer(t, p).RenderMAC(macNuc1, SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	c := parseV3(t, out)
	if c.cfg.Ignition.Version != "3.4.0" {
		t.Errorf("version %s", c.cfg.Ignition.Version)
	}

	// Common parts.
	if got := c.wantRootFile(t, "/etc/hostname", 0o644); got != "nuc1\n" {
		t.Errorf("hostname %q", got)
	}
	wantNetwork := "[Match]\nMACAddress=02:00:0a:00:00:3c\n\n[Network]\nAddress=198.18.0.60/24\nGateway=198.18.0.1\nDNS=198.18.0.1\nDNS=198.18.0.53\nDomains=lab.test\n"
	if got := c.wantRootFile(t, "/etc/systemd/network/00-flint.network", 0o644); got != wantNetwork {
		t.Errorf("network unit:\n%s\nwant:\n%s", got, wantNetwork)
	}
	// The servers only: nuc1 is one of them, and the agents are not its business.
	wantHosts := "127.0.0.1 localhost\n::1 localhost\n" +
		"198.18.0.60 nuc1.lab.test nuc1\n198.18.0.61 nuc2.lab.test nuc2\n198.18.0.62 nuc3.lab.test nuc3\n"
	if got := c.wantRootFile(t, "/etc/hosts", 0o644); got != wantHosts {
		t.Errorf("hosts:\n%s", got)
	}
	if got := c.wantRootFile(t, "/etc/flatcar/update.conf", 0o644); got != "REBOOT_STRATEGY=off\n" {
		t.Errorf("update.conf %q", got)
	}
	if len(c.cfg.Passwd.Users) != 1 || c.cfg.Passwd.Users[0].Name != "core" ||
		len(c.cfg.Passwd.Users[0].SSHAuthorizedKeys) != 1 || !strings.HasPrefix(string(c.cfg.Passwd.Users[0].SSHAuthorizedKeys[0]), "ssh-ed25519 AAAA") {
		t.Errorf("passwd: %+v", c.cfg.Passwd.Users)
	}

	// etcd credentials: exactly the PKI's, owned by etcd (232).
	node := pki.Node{Name: "nuc1", FQDN: "nuc1.lab.test", IP: e.cfg.Machines[0].IPAddr}
	server, _ := p.EtcdServer(node)
	peer, _ := p.EtcdPeer(node)
	client, _ := p.EtcdClient(DatastoreClientName)
	for path, want := range map[string]struct {
		mode int
		pem  []byte
	}{
		"/etc/ssl/etcd/ca.crt":     {0o644, p.CACertPEM()},
		"/etc/ssl/etcd/server.crt": {0o644, server.CertPEM},
		"/etc/ssl/etcd/server.key": {0o600, server.KeyPEM},
		"/etc/ssl/etcd/peer.crt":   {0o644, peer.CertPEM},
		"/etc/ssl/etcd/peer.key":   {0o600, peer.KeyPEM},
		"/etc/ssl/etcd/client.crt": {0o644, client.CertPEM},
		"/etc/ssl/etcd/client.key": {0o600, client.KeyPEM},
	} {
		if got := c.wantFile(t, path, want.mode, 232, 232); got != string(want.pem) {
			t.Errorf("%s does not hold the PKI's PEM", path)
		}
	}
	d, ok := c.dirs["/var/lib/etcd"]
	if !ok || ptrVal(d.Mode) != 0o700 || ptrVal(d.User.ID) != 232 || ptrVal(d.Group.ID) != 232 {
		t.Errorf("/var/lib/etcd: %+v", d)
	}

	env := parseEnv(t, c.wantRootFile(t, "/etc/etcd/etcd.env", 0o644))
	wantEnv := map[string]string{
		"ETCD_NAME":                        "nuc1",
		"ETCD_DATA_DIR":                    "/var/lib/etcd",
		"ETCD_LISTEN_CLIENT_URLS":          "https://198.18.0.60:2379,https://127.0.0.1:2379",
		"ETCD_ADVERTISE_CLIENT_URLS":       "https://198.18.0.60:2379",
		"ETCD_LISTEN_PEER_URLS":            "https://198.18.0.60:2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://198.18.0.60:2380",
		"ETCD_INITIAL_CLUSTER":             "nuc1=https://198.18.0.60:2380,nuc2=https://198.18.0.61:2380,nuc3=https://198.18.0.62:2380",
		"ETCD_INITIAL_CLUSTER_STATE":       "new",
		"ETCD_INITIAL_CLUSTER_TOKEN":       "flint-nucs",
		"ETCD_TRUSTED_CA_FILE":             "/etc/ssl/etcd/ca.crt",
		"ETCD_CERT_FILE":                   "/etc/ssl/etcd/server.crt",
		"ETCD_KEY_FILE":                    "/etc/ssl/etcd/server.key",
		"ETCD_CLIENT_CERT_AUTH":            "true",
		"ETCD_PEER_TRUSTED_CA_FILE":        "/etc/ssl/etcd/ca.crt",
		"ETCD_PEER_CERT_FILE":              "/etc/ssl/etcd/peer.crt",
		"ETCD_PEER_KEY_FILE":               "/etc/ssl/etcd/peer.key",
		"ETCD_PEER_CLIENT_CERT_AUTH":       "true",
	}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("etcd.env:\n got %v\nwant %v", env, wantEnv)
	}

	c.wantAsset(t, e, "/opt/bin/etcd", "etcd/etcd")
	c.wantAsset(t, e, "/opt/bin/etcdctl", "etcd/etcdctl")
	c.wantAsset(t, e, "/opt/bin/k3s", "k3s/k3s")

	k3sEnv := parseEnv(t, c.wantFile(t, "/etc/rancher/k3s/k3s.env", 0o600, 0, 0))
	wantK3s := map[string]string{
		"K3S_TOKEN":              p.K3sToken(),
		"K3S_AGENT_TOKEN":        p.K3sAgentToken(),
		"K3S_DATASTORE_ENDPOINT": "https://198.18.0.60:2379,https://198.18.0.61:2379,https://198.18.0.62:2379",
		"K3S_DATASTORE_CAFILE":   "/etc/ssl/etcd/ca.crt",
		"K3S_DATASTORE_CERTFILE": "/etc/ssl/etcd/client.crt",
		"K3S_DATASTORE_KEYFILE":  "/etc/ssl/etcd/client.key",
	}
	if !reflect.DeepEqual(k3sEnv, wantK3s) {
		t.Errorf("k3s.env:\n got %v\nwant %v", k3sEnv, wantK3s)
	}
	pw, _ := p.NodePassword("nuc1")
	if got := c.wantFile(t, "/etc/rancher/node/password", 0o600, 0, 0); got != pw {
		t.Errorf("node password %q, want the PKI's", got)
	}
	script := c.wantRootFile(t, "/opt/bin/etcd-wait-healthy", 0o755)
	for _, s := range []string{"--cacert /etc/ssl/etcd/ca.crt", "--cert /etc/ssl/etcd/client.crt", "--key /etc/ssl/etcd/client.key", "https://127.0.0.1:2379/health"} {
		if !strings.Contains(script, s) {
			t.Errorf("etcd-wait-healthy lacks %q", s)
		}
	}

	wantOpts(t, "etcd.service", c.unitOpts(t, "etcd.service"), map[string][]string{
		"Service.User":            {"232"},
		"Service.Group":           {"232"},
		"Service.EnvironmentFile": {"/etc/etcd/etcd.env"},
		"Service.ExecStart":       {"/opt/bin/etcd"},
		"Service.Restart":         {"always"},
		"Install.WantedBy":        {"multi-user.target"},
	})
	wantOpts(t, "etcd-healthy.service", c.unitOpts(t, "etcd-healthy.service"), map[string][]string{
		"Unit.After":        {"etcd.service"},
		"Service.Type":      {"oneshot"},
		"Service.ExecStart": {"/opt/bin/etcd-wait-healthy"},
	})
	wantOpts(t, "k3s.service", c.unitOpts(t, "k3s.service"), map[string][]string{
		"Unit.Requires":           {"etcd-healthy.service"},
		"Unit.After":              {"network-online.target etcd-healthy.service"},
		"Service.Type":            {"notify"},
		"Service.KillMode":        {"process"},
		"Service.Delegate":        {"yes"},
		"Service.LimitNOFILE":     {"1048576"},
		"Service.TasksMax":        {"infinity"},
		"Service.Restart":         {"always"},
		"Service.EnvironmentFile": {"/etc/rancher/k3s/k3s.env"},
		"Service.ExecStartPre":    {"-/usr/sbin/modprobe br_netfilter", "-/usr/sbin/modprobe overlay"},
		"Service.ExecStart":       {"/opt/bin/k3s server --tls-san 198.18.0.60 --node-name nuc1"},
	})
	if len(c.units) != 6 {
		t.Errorf("units: %v, want etcd, etcd-healthy, k3s and the three flint-report units", keys(c.units))
	}
	wantOpts(t, "flint-report-etcd.service", c.unitOpts(t, "flint-report-etcd.service"), map[string][]string{
		"Unit.Requires":     {"etcd-healthy.service"},
		"Service.ExecStart": {`/opt/bin/flint-report etcd-healthy "member nuc1 answers /health"`},
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestAgentConfig(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := realPKI(t)
	out, err := e.renderer(t, p).RenderMAC(macNuc4, SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	c := parseV3(t, out)
	if got := c.wantRootFile(t, "/etc/hostname", 0o644); got != "nuc4\n" {
		t.Errorf("hostname %q", got)
	}
	if got := c.wantRootFile(t, "/etc/systemd/network/00-flint.network", 0o644); !strings.Contains(got, "MACAddress=02:00:0a:00:00:46\n") || !strings.Contains(got, "Address=198.18.0.70/24\n") {
		t.Errorf("network unit:\n%s", got)
	}
	// The servers and itself; not nuc5, the other agent.
	wantHosts := "127.0.0.1 localhost\n::1 localhost\n" +
		"198.18.0.60 nuc1.lab.test nuc1\n198.18.0.61 nuc2.lab.test nuc2\n198.18.0.62 nuc3.lab.test nuc3\n" +
		"198.18.0.70 nuc4.lab.test nuc4\n"
	if got := c.wantRootFile(t, "/etc/hosts", 0o644); got != wantHosts {
		t.Errorf("hosts:\n%s", got)
	}
	if got := c.wantRootFile(t, "/etc/flatcar/update.conf", 0o644); got != "REBOOT_STRATEGY=reboot\n" {
		t.Errorf("update.conf %q", got)
	}
	c.wantAsset(t, e, "/opt/bin/k3s", "k3s/k3s")
	env := parseEnv(t, c.wantFile(t, "/etc/rancher/k3s/k3s.env", 0o600, 0, 0))
	if want := map[string]string{"K3S_URL": "https://198.18.0.60:6443", "K3S_TOKEN": p.K3sAgentToken()}; !reflect.DeepEqual(env, want) {
		t.Errorf("k3s.env %v, want %v", env, want)
	}
	// The server token (which reads K3s's bootstrap data) never reaches an agent.
	if strings.Contains(string(out), p.K3sToken()) {
		t.Error("the agent's config holds the server token")
	}
	pw, _ := p.NodePassword("nuc4")
	if got := c.wantFile(t, "/etc/rancher/node/password", 0o600, 0, 0); got != pw {
		t.Errorf("node password %q", got)
	}
	for path := range c.files {
		if strings.HasPrefix(path, "/etc/ssl/etcd/") || strings.Contains(path, "etcd") {
			t.Errorf("agent got etcd file %s", path)
		}
	}
	if len(c.units) != 3 {
		t.Errorf("units %v, want k3s-agent.service and the flint-report units for config-applied and k3s-up", keys(c.units))
	}
	wantOpts(t, "flint-report-k3s.service", c.unitOpts(t, "flint-report-k3s.service"), map[string][]string{
		"Unit.Requires": {"k3s-agent.service"},
	})
	wantOpts(t, "k3s-agent.service", c.unitOpts(t, "k3s-agent.service"), map[string][]string{
		"Service.EnvironmentFile": {"/etc/rancher/k3s/k3s.env"},
		"Service.KillMode":        {"process"},
		"Service.Delegate":        {"yes"},
		"Service.Restart":         {"always"},
		"Service.ExecStart":       {"/opt/bin/k3s agent --node-name nuc4"},
	})
}

// allText is the raw config plus every decoded data URL in it.
func allText(t *testing.T, raw []byte) string {
	t.Helper()
	c := parseV3(t, raw)
	var b strings.Builder
	b.Write(raw)
	for _, f := range c.cfg.Storage.Files {
		if s := ptrVal(f.Contents.Source); s != nil && strings.HasPrefix(s.(string), "data:") {
			b.WriteString(decodeSource(t, s.(string)))
		}
	}
	return b.String()
}

func TestSecretsStayWithTheirMachine(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := realPKI(t)
	r := e.renderer(t, p)
	render := func(mac config.MAC) string {
		out, err := r.RenderMAC(mac, SpecV3)
		if err != nil {
			t.Fatal(err)
		}
		return allText(t, out)
	}
	nuc1, nuc4 := render(macNuc1), render(macNuc4)

	nuc2 := pki.Node{Name: "nuc2", FQDN: "nuc2.lab.test", IP: e.cfg.Machines[1].IPAddr}
	server2, _ := p.EtcdServer(nuc2)
	peer2, _ := p.EtcdPeer(nuc2)
	pw2, _ := p.NodePassword("nuc2")
	pw4, _ := p.NodePassword("nuc4")
	own1, _ := p.EtcdServer(pki.Node{Name: "nuc1", FQDN: "nuc1.lab.test", IP: e.cfg.Machines[0].IPAddr})
	if !strings.Contains(nuc1, string(own1.KeyPEM)) {
		t.Fatal("the check is blind: nuc1's own key is not found in its config")
	}
	for what, secret := range map[string]string{"nuc2 server key": string(server2.KeyPEM), "nuc2 peer key": string(peer2.KeyPEM), "nuc2 node password": pw2, "nuc4 node password": pw4} {
		if strings.Contains(nuc1, secret) {
			t.Errorf("nuc1's config contains %s", what)
		}
	}
	client, _ := p.EtcdClient(DatastoreClientName)
	admin, _ := p.Admin()
	for what, secret := range map[string]string{"nuc1 server key": string(own1.KeyPEM), "nuc2 peer key": string(peer2.KeyPEM), "datastore client key": string(client.KeyPEM), "flint admin key": string(admin.KeyPEM)} {
		if strings.Contains(nuc4, secret) {
			t.Errorf("agent nuc4's config contains %s", what)
		}
	}
	if strings.Contains(nuc1, string(admin.KeyPEM)) {
		t.Error("nuc1's config contains flint's admin key")
	}
	if !strings.Contains(nuc4, pw4) {
		t.Error("nuc4's config lacks its own node password")
	}
}

func TestRenderDeterministicAndCached(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	p := realPKI(t)
	r1, r2 := e.renderer(t, p), e.renderer(t, p)
	for _, spec := range []Spec{SpecV3, SpecLegacy} {
		for _, mac := range []config.MAC{macNuc1, macNuc4} {
			a, err := r1.RenderMAC(mac, spec)
			if err != nil {
				t.Fatal(err)
			}
			b, err := r2.RenderMAC(mac, spec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s %s: two renderers disagree", spec, macString(mac))
			}
		}
	}

	r := e.renderer(t, p)
	first, _ := r.RenderMAC(macNuc1, SpecV3)
	n := r.translations.Load()
	again, _ := r.RenderMAC(macNuc1, SpecV3)
	if !bytes.Equal(first, again) || r.translations.Load() != n {
		t.Fatalf("second render was not served from the cache (translations %d -> %d)", n, r.translations.Load())
	}

	r.InvalidateMachine(macNuc1)
	after, _ := r.RenderMAC(macNuc1, SpecV3)
	if r.translations.Load() != n+1 || !bytes.Equal(after, first) {
		t.Errorf("InvalidateMachine: translations %d -> %d, same bytes %v", n, r.translations.Load(), bytes.Equal(after, first))
	}
	r.Invalidate()
	r.RenderMAC(macNuc1, SpecV3)
	if r.translations.Load() != n+2 {
		t.Errorf("Invalidate did not drop the cache")
	}

	// A replaced asset changes the hash in the config. Give it another mtime
	// explicitly: file systems with coarse timestamps would not.
	e.writeAsset(t, "k3s/k3s", "#!/bin/sh\necho new k3s\n")
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(e.assetsDir, "k3s/k3s"), future, future)
	changed, err := r.RenderMAC(macNuc1, SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(changed, first) {
		t.Error("a replaced asset did not change the config")
	}
	parseV3(t, changed).wantAsset(t, e, "/opt/bin/k3s", "k3s/k3s")

	// A profile added to profiles_dir takes effect on the next render.
	server, _ := os.ReadFile("../profiles/server.yaml")
	e.writeProfile(t, "server.yaml", strings.Replace(string(server), "RestartSec=5s", "RestartSec=7s", 1))
	edited, err := r.RenderMAC(macNuc1, SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(edited, changed) || !strings.Contains(string(edited), "RestartSec=7s") {
		t.Error("an edited profile did not change the config")
	}
}

func macString(mac config.MAC) string { return hex.EncodeToString(mac[:]) }

func TestClusterStateExisting(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.renderer(t, fakeSecrets{})
	for mac, state := range map[string]string{"02:00:0a:00:00:3c": "", "02:00:0a:00:00:3d": ClusterStateExisting} {
		m, _ := e.cfg.MachineByMAC(mustMAC(mac))
		out, err := r.Render(Request{Machine: m, Spec: SpecV3, ClusterState: state})
		if err != nil {
			t.Fatal(err)
		}
		want := state
		if want == "" {
			want = ClusterStateNew
		}
		env := parseEnv(t, parseV3(t, out).wantRootFile(t, "/etc/etcd/etcd.env", 0o644))
		if env["ETCD_INITIAL_CLUSTER_STATE"] != want {
			t.Errorf("%s: state %q, want %q", mac, env["ETCD_INITIAL_CLUSTER_STATE"], want)
		}
	}
	m, _ := e.cfg.MachineByMAC(macNuc1)
	if _, err := r.Render(Request{Machine: m, Spec: SpecV3, ClusterState: "bogus"}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("bogus state: %v", err)
	}
}

func TestButane100GivesSpec33(t *testing.T) {
	e := newEnv(t, envOpts{butane: "1.0.0"})
	out, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecV3)
	if err != nil {
		t.Fatal(err)
	}
	cfg, rpt, err := v3_3.Parse(out)
	if err != nil || len(rpt.Entries) > 0 || cfg.Ignition.Version != "3.3.0" {
		t.Fatalf("3.3 parser: %v %s (version %s)", err, rpt, cfg.Ignition.Version)
	}
	if v, _ := SpecVersion("1.0.0", SpecV3); v != "3.3.0" {
		t.Errorf("SpecVersion 1.0.0 = %s", v)
	}
	// Legacy clients get 2.3.0 from a 3.3.0 config too.
	if _, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecLegacy); err != nil {
		t.Errorf("legacy from 3.3.0: %v", err)
	}
}

func TestMissingAsset(t *testing.T) {
	e := newEnv(t, envOpts{})
	os.Remove(filepath.Join(e.assetsDir, "etcd/etcdctl"))
	_, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc1, SpecV3)
	var ae *AssetError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *AssetError", err)
	}
	msg := err.Error()
	for _, s := range []string{"etcdctl", "cluster.assets.etcdctl", filepath.Join(e.assetsDir, "etcd/etcdctl"), "flint assets sync"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

// An agent never downloads etcd: its config renders without the etcd
// binaries, a server's says which one is missing, and an agent profile that
// reaches for etcd anyway is a profile problem.
func TestAgentNeedsNoEtcd(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	os.RemoveAll(filepath.Join(e.assetsDir, "etcd"))
	r := e.renderer(t, fakeSecrets{})
	out, err := r.RenderMAC(macNuc4, SpecV3)
	if err != nil {
		t.Fatalf("agent without the etcd binaries: %v", err)
	}
	if strings.Contains(string(out), "/opt/bin/etcd") || !strings.Contains(string(out), "/assets/k3s/k3s") {
		t.Errorf("agent config:\n%s", out)
	}
	var ae *AssetError
	if _, err := r.RenderMAC(macNuc1, SpecV3); !errors.As(err, &ae) || ae.Name != "etcd" {
		t.Fatalf("server without etcd: %v", err)
	}
	ps := ValidateAll(e.cfg, fakeSecrets{}, e.assetsDir)
	if len(ps) != 2 || ps[0].Kind != KindAsset || ps[1].Kind != KindAsset {
		t.Fatalf("validate with etcd missing: want the two etcd assets only, got %v", ps)
	}
	e.writeProfile(t, "agent.yaml", insertAfter(t, embeddedText(t, "agent.yaml"), `{{- template "k3s-files" .}}`, "    - path: /opt/x\n      contents: {source: {{quote .Assets.etcd.URL}}}\n"))
	ps = ValidateAll(e.cfg, fakeSecrets{}, e.assetsDir)
	found := false
	for _, p := range ps {
		found = found || (p.Kind == KindProfile && strings.Contains(p.Message, "etcd"))
	}
	if !found {
		t.Errorf("an agent profile using .Assets.etcd is not reported: %v", ps)
	}
}

func TestUnknownMachine(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.renderer(t, fakeSecrets{}).RenderMAC(mustMAC("02:00:00:00:00:99"), SpecV3)
	if !errors.Is(err, ErrUnknownMachine) {
		t.Errorf("err = %v, want ErrUnknownMachine", err)
	}
}

// BenchmarkRender: a cache hit still builds the data (PKI reads, asset
// stats, profile directory read) to compute the key; a miss adds Butane and
// both parsers.
func BenchmarkRender(b *testing.B) {
	e := newEnv(b, envOpts{})
	r := e.renderer(b, realPKI(b))
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.RenderMAC(macNuc1, SpecV3); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			r.Invalidate()
			if _, err := r.RenderMAC(macNuc1, SpecV3); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss-legacy", func(b *testing.B) {
		for b.Loop() {
			r.Invalidate()
			if _, err := r.RenderMAC(macNuc1, SpecLegacy); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestConcurrentRenders(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.renderer(t, realPKI(t))
	want := map[string][]byte{}
	for _, m := range e.cfg.Machines {
		out, err := r.RenderMAC(m.HW, SpecV3)
		if err != nil {
			t.Fatal(err)
		}
		want[m.Hostname] = out
	}
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		m := e.cfg.Machines[i%len(e.cfg.Machines)]
		go func() {
			if i%7 == 0 {
				r.InvalidateMachine(m.HW)
			}
			out, err := r.RenderMAC(m.HW, SpecV3)
			if err == nil && !bytes.Equal(out, want[m.Hostname]) {
				err = errors.New(m.Hostname + ": concurrent render differs")
			}
			errs <- err
		}()
	}
	for i := 0; i < 64; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
