package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What a node root must hold after Ignition's files stage.

// nodeRoot is a root filesystem a real client wrote.
type nodeRoot struct {
	t    *testing.T
	Dir  string
	Name string // for messages
	// Legacy: written by the legacy client, which keeps SSH keys in
	// authorized_keys.d/flatcar-ignition and merges them into authorized_keys.
	Legacy bool
}

func (r nodeRoot) path(rel string) string { return filepath.Join(r.Dir, strings.TrimPrefix(rel, "/")) }

// File checks that /rel is a regular file with mode and owner, and returns its content.
func (r nodeRoot) File(rel string, mode os.FileMode, uid, gid int) []byte {
	r.t.Helper()
	p := r.path(rel)
	st, err := os.Lstat(p)
	if err != nil {
		r.t.Errorf("%s: %s missing: %v", r.Name, rel, err)
		return nil
	}
	if !st.Mode().IsRegular() {
		r.t.Errorf("%s: %s is %v, want a regular file", r.Name, rel, st.Mode().Type())
	}
	r.owner(rel, st, mode, uid, gid)
	b, err := os.ReadFile(p)
	if err != nil {
		r.t.Errorf("%s: %v", r.Name, err)
	}
	return b
}

// DirWith checks that /rel is a directory with mode and owner.
func (r nodeRoot) DirWith(rel string, mode os.FileMode, uid, gid int) {
	r.t.Helper()
	st, err := os.Lstat(r.path(rel))
	if err != nil {
		r.t.Errorf("%s: directory %s missing: %v", r.Name, rel, err)
		return
	}
	if !st.IsDir() {
		r.t.Errorf("%s: %s is %v, want a directory", r.Name, rel, st.Mode())
	}
	r.owner(rel, st, mode, uid, gid)
}

func (r nodeRoot) owner(rel string, st os.FileInfo, mode os.FileMode, uid, gid int) {
	r.t.Helper()
	if st.Mode().Perm() != mode {
		r.t.Errorf("%s: %s has mode %#o, want %#o", r.Name, rel, st.Mode().Perm(), mode)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || int(sys.Gid) != gid {
		r.t.Errorf("%s: %s is owned by %d:%d, want %d:%d", r.Name, rel, sys.Uid, sys.Gid, uid, gid)
	}
}

// Exists reports whether /rel exists (any type).
func (r nodeRoot) Exists(rel string) bool {
	_, err := os.Lstat(r.path(rel))
	return err == nil
}

// Absent checks that /rel does not exist.
func (r nodeRoot) Absent(rel string) {
	r.t.Helper()
	if r.Exists(rel) {
		r.t.Errorf("%s: %s exists, want none", r.Name, rel)
	}
}

// Equal checks /rel's content.
func (r nodeRoot) Equal(rel string, got []byte, want string) {
	r.t.Helper()
	if string(got) != want {
		r.t.Errorf("%s: %s is\n%q\nwant\n%q", r.Name, rel, got, want)
	}
}

// Env parses an environment file: KEY=VALUE lines, no duplicates, no junk.
func (r nodeRoot) Env(rel string, data []byte) map[string]string {
	r.t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		ln := strings.TrimSpace(sc.Text())
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		k, v, ok := strings.Cut(ln, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			r.t.Errorf("%s: %s:%d: not KEY=VALUE: %q", r.Name, rel, n, ln)
			continue
		}
		if _, dup := env[k]; dup {
			r.t.Errorf("%s: %s:%d: %s set twice", r.Name, rel, n, k)
		}
		// systemd strips one level of double quotes.
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	return env
}

// WantEnv checks env[key] == want.
func (r nodeRoot) WantEnv(file string, env map[string]string, key, want string) {
	r.t.Helper()
	got, ok := env[key]
	if !ok {
		r.t.Errorf("%s: %s lacks %s (want %q)", r.Name, file, key, want)
	} else if got != want {
		r.t.Errorf("%s: %s: %s=%q, want %q", r.Name, file, key, got, want)
	}
}

// WantEnvList checks that env[key] is a comma list with exactly the elements of want, any order.
func (r nodeRoot) WantEnvList(file string, env map[string]string, key string, want []string) {
	r.t.Helper()
	got := strings.Split(env[key], ",")
	sort.Strings(got)
	w := slices.Clone(want)
	sort.Strings(w)
	if !slices.Equal(got, w) {
		r.t.Errorf("%s: %s: %s=%q, want the elements %q", r.Name, file, key, env[key], w)
	}
}

// WantPathInRoot checks that an env value naming a file points at a file in the root.
func (r nodeRoot) WantPathInRoot(file string, env map[string]string, key string) {
	r.t.Helper()
	p := env[key]
	if !strings.HasPrefix(p, "/") {
		r.t.Errorf("%s: %s: %s=%q is not an absolute path", r.Name, file, key, p)
		return
	}
	if st, err := os.Stat(r.path(p)); err != nil || !st.Mode().IsRegular() {
		r.t.Errorf("%s: %s: %s=%s, but the root has no such file (%v)", r.Name, file, key, p, err)
	}
}

// Unit checks that a unit file was written and Ignition enabled it (the
// preset line systemd applies on first boot), and that the files its
// EnvironmentFile= and ExecStart= name exist in the root.
func (r nodeRoot) Unit(name string, mustContain ...string) string {
	r.t.Helper()
	rel := "/etc/systemd/system/" + name
	body := string(r.File(rel, 0o644, 0, 0))
	for _, s := range mustContain {
		if !strings.Contains(body, s) {
			r.t.Errorf("%s: %s lacks %q:\n%s", r.Name, rel, s, body)
		}
	}
	for _, ln := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(ln), "=")
		if !ok || (k != "EnvironmentFile" && k != "ExecStart") || strings.HasPrefix(v, "-") {
			continue
		}
		p := strings.Fields(v)[0]
		if strings.HasPrefix(p, "/opt/") || strings.HasPrefix(p, "/etc/") {
			if !r.Exists(p) {
				r.t.Errorf("%s: %s: %s=%s, but the root has no %s", r.Name, name, k, v, p)
			}
		}
	}
	if !slices.Contains(r.Presets(), "enable "+name) {
		r.t.Errorf("%s: %s is not enabled; presets: %q", r.Name, name, r.Presets())
	}
	return body
}

// Presets are the lines of Ignition's preset file.
func (r nodeRoot) Presets() []string {
	b, _ := os.ReadFile(r.path("/etc/systemd/system-preset/20-ignition.preset"))
	var out []string
	for _, ln := range strings.Split(string(b), "\n") {
		if ln = strings.TrimSpace(ln); ln != "" {
			out = append(out, ln)
		}
	}
	return out
}

// Walk returns every regular file below the root (relative path -> content).
func (r nodeRoot) Walk() map[string][]byte {
	r.t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.Dir, p)
		out["/"+rel] = b
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// pkiFile reads a file of flint's PKI (DATA/pki/rel).
func (e *ignEnv) pkiFile(rel string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Data, "pki", rel))
	if err != nil {
		e.t.Fatalf("flint's PKI: %v", err)
	}
	return b
}

// CheckCommon checks what every node gets: identity, network, hosts, update
// policy, K3s binary, node password, the core user's SSH key.
func (e *ignEnv) CheckCommon(r nodeRoot, m ignMachine) {
	t := e.t
	t.Helper()
	r.Equal("/etc/hostname", r.File("/etc/hostname", 0o644, 0, 0), m.Name+"\n")

	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	for _, h := range e.Machines { // the servers, and m itself if it is an agent
		if h.server() || h.Name == m.Name {
			fmt.Fprintf(&hosts, "%s %s.%s %s\n", h.IP, h.Name, ignDomain, h.Name)
		}
	}
	r.Equal("/etc/hosts", r.File("/etc/hosts", 0o644, 0, 0), hosts.String())

	network := string(r.File("/etc/systemd/network/00-flint.network", 0o644, 0, 0))
	for _, want := range []string{
		"[Match]\nMACAddress=" + m.MAC + "\n",
		fmt.Sprintf("[Network]\nAddress=%s/%d\n", m.IP, ignPrefix),
		"Gateway=" + ignRouter + "\n", "DNS=" + ignDNS + "\n", "Domains=" + ignDomain + "\n",
	} {
		if !strings.Contains(network, want) {
			t.Errorf("%s: 00-flint.network lacks %q:\n%s", m.Name, want, network)
		}
	}

	strategy := "reboot"
	if m.server() {
		strategy = "off"
	}
	r.Equal("/etc/flatcar/update.conf", r.File("/etc/flatcar/update.conf", 0o644, 0, 0), "REBOOT_STRATEGY="+strategy+"\n")

	wantAsset(t, r, "/opt/bin/k3s", filepath.Join(e.Assets, "k3s/k3s"))

	// Reports go to flint over HTTPS, checked against flint's CA, with this
	// delivery's report token from a root-only header file.
	r.Equal("/etc/flint/ca.crt", r.File("/etc/flint/ca.crt", 0o644, 0, 0), string(e.pkiFile("ca.crt")))
	if h := string(r.File("/etc/flint/report.header", 0o600, 0, 0)); !regexp.MustCompile(`^Authorization: Bearer [0-9a-f]{64}$`).MatchString(h) {
		t.Errorf("%s: /etc/flint/report.header is %q, want the delivery's bearer token", m.Name, h)
	}
	if rep := string(r.File("/opt/bin/flint-report", 0o755, 0, 0)); !strings.Contains(rep, "--cacert /etc/flint/ca.crt") ||
		!strings.Contains(rep, "-H @/etc/flint/report.header") || !strings.Contains(rep, fmt.Sprintf("'https://127.0.0.1:%d/api/v1/events'", e.httpsPort)) {
		t.Errorf("%s: flint-report does not post over HTTPS with flint's CA and the token:\n%s", m.Name, rep)
	}

	pw := r.File("/etc/rancher/node/password", 0o600, 0, 0)
	flintPW := strings.TrimSpace(string(e.pkiFile("node-passwords/" + m.Name)))
	if strings.TrimSpace(string(pw)) != flintPW || flintPW == "" {
		t.Errorf("%s: /etc/rancher/node/password %q, want flint's %q (DATA/pki/node-passwords/%s)", m.Name, pw, flintPW, m.Name)
	}

	if e.SSHKey != "" {
		files := []string{"/home/core/.ssh/authorized_keys.d/ignition"}
		if r.Legacy {
			files = []string{"/home/core/.ssh/authorized_keys.d/flatcar-ignition", "/home/core/.ssh/authorized_keys"}
		}
		for _, f := range files {
			keys := r.File(f, 0o600, coreUID, coreUID)
			if !strings.Contains(string(keys), e.SSHKey) {
				t.Errorf("%s: core's %s %q lacks %q", r.Name, f, keys, e.SSHKey)
			}
		}
	}
}

// wantAsset checks a downloaded binary: mode 0755, root, byte-identical to the asset.
func wantAsset(t *testing.T, r nodeRoot, rel, asset string) {
	t.Helper()
	got := r.File(rel, 0o755, 0, 0)
	want, err := os.ReadFile(asset)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %s (%d bytes) differs from the asset %s (%d bytes)", r.Name, rel, len(got), asset, len(want))
	}
}

var etcdFiles = []struct {
	rel  string
	mode os.FileMode
}{
	{"/etc/ssl/etcd/ca.crt", 0o644},
	{"/etc/ssl/etcd/server.crt", 0o644}, {"/etc/ssl/etcd/server.key", 0o600},
	{"/etc/ssl/etcd/peer.crt", 0o644}, {"/etc/ssl/etcd/peer.key", 0o600},
	{"/etc/ssl/etcd/client.crt", 0o644}, {"/etc/ssl/etcd/client.key", 0o600},
}

// CheckServer checks an etcd member + K3s server root.
func (e *ignEnv) CheckServer(r nodeRoot, m ignMachine) {
	t := e.t
	t.Helper()
	e.CheckCommon(r, m)
	wantAsset(t, r, "/opt/bin/etcd", filepath.Join(e.Assets, "etcd/etcd"))
	wantAsset(t, r, "/opt/bin/etcdctl", filepath.Join(e.Assets, "etcd/etcdctl"))
	r.File("/opt/bin/etcd-wait-healthy", 0o755, 0, 0)
	for _, f := range etcdFiles {
		r.File(f.rel, f.mode, etcdUID, etcdUID)
	}
	r.DirWith("/var/lib/etcd", 0o700, etcdUID, etcdUID)
	if ca := r.File("/etc/ssl/etcd/ca.crt", 0o644, etcdUID, etcdUID); !bytes.Equal(ca, e.pkiFile("ca.crt")) {
		t.Errorf("%s: /etc/ssl/etcd/ca.crt is not flint's CA (DATA/pki/ca.crt)", m.Name)
	}

	var peers, clients []string
	for _, s := range e.Machines {
		if s.server() {
			peers = append(peers, fmt.Sprintf("%s=https://%s:2380", s.Name, s.IP))
			clients = append(clients, fmt.Sprintf("https://%s:2379", s.IP))
		}
	}
	const etcdEnv = "/etc/etcd/etcd.env"
	env := r.Env(etcdEnv, r.File(etcdEnv, 0o644, 0, 0))
	for k, want := range map[string]string{
		"ETCD_NAME":                        m.Name,
		"ETCD_DATA_DIR":                    "/var/lib/etcd",
		"ETCD_ADVERTISE_CLIENT_URLS":       "https://" + m.IP + ":2379",
		"ETCD_LISTEN_PEER_URLS":            "https://" + m.IP + ":2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://" + m.IP + ":2380",
		"ETCD_INITIAL_CLUSTER_STATE":       "new",
		"ETCD_INITIAL_CLUSTER_TOKEN":       "flint-nucs",
		"ETCD_CLIENT_CERT_AUTH":            "true",
		"ETCD_PEER_CLIENT_CERT_AUTH":       "true",
	} {
		r.WantEnv(etcdEnv, env, k, want)
	}
	r.WantEnvList(etcdEnv, env, "ETCD_LISTEN_CLIENT_URLS", []string{"https://" + m.IP + ":2379", "https://127.0.0.1:2379"})
	r.WantEnvList(etcdEnv, env, "ETCD_INITIAL_CLUSTER", peers)
	for _, k := range []string{"ETCD_TRUSTED_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_PEER_TRUSTED_CA_FILE", "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE"} {
		r.WantPathInRoot(etcdEnv, env, k)
	}
	r.WantEnv(etcdEnv, env, "ETCD_CERT_FILE", "/etc/ssl/etcd/server.crt")
	r.WantEnv(etcdEnv, env, "ETCD_PEER_CERT_FILE", "/etc/ssl/etcd/peer.crt")
	for k := range env {
		if !strings.HasPrefix(k, "ETCD_") {
			t.Errorf("%s: %s sets %s, not an etcd variable", m.Name, etcdEnv, k)
		}
	}

	const k3sEnv = "/etc/rancher/k3s/k3s.env"
	kenv := r.Env(k3sEnv, r.File(k3sEnv, 0o600, 0, 0))
	r.WantEnv(k3sEnv, kenv, "K3S_TOKEN", strings.TrimSpace(string(e.pkiFile("k3s-token"))))
	r.WantEnv(k3sEnv, kenv, "K3S_AGENT_TOKEN", strings.TrimSpace(string(e.pkiFile("k3s-agent-token"))))
	r.WantEnvList(k3sEnv, kenv, "K3S_DATASTORE_ENDPOINT", clients)
	for _, k := range []string{"K3S_DATASTORE_CAFILE", "K3S_DATASTORE_CERTFILE", "K3S_DATASTORE_KEYFILE"} {
		r.WantPathInRoot(k3sEnv, kenv, k)
	}
	if u, ok := kenv["K3S_URL"]; ok {
		t.Errorf("%s: a server with an external datastore must not set K3S_URL (got %q)", m.Name, u)
	}

	r.Unit("etcd.service", "EnvironmentFile=/etc/etcd/etcd.env", "ExecStart=/opt/bin/etcd", "User=232", "Group=232")
	r.Unit("etcd-healthy.service", "ExecStart=/opt/bin/etcd-wait-healthy")
	r.Unit("k3s.service", "EnvironmentFile=/etc/rancher/k3s/k3s.env", "Requires=etcd-healthy.service",
		"ExecStart=/opt/bin/k3s server --tls-san "+e.Machines[0].IP+" --node-name "+m.Name)
	if r.Exists("/etc/systemd/system/k3s-agent.service") {
		t.Errorf("%s: a server got k3s-agent.service", m.Name)
	}
}

// CheckAgent checks a K3s agent root: no etcd anything.
func (e *ignEnv) CheckAgent(r nodeRoot, m ignMachine) {
	t := e.t
	t.Helper()
	e.CheckCommon(r, m)
	const k3sEnv = "/etc/rancher/k3s/k3s.env"
	kenv := r.Env(k3sEnv, r.File(k3sEnv, 0o600, 0, 0))
	r.WantEnv(k3sEnv, kenv, "K3S_URL", "https://"+e.Machines[0].IP+":6443")
	// The agent token, never the server's: that one reads K3s's bootstrap data.
	r.WantEnv(k3sEnv, kenv, "K3S_TOKEN", strings.TrimSpace(string(e.pkiFile("k3s-agent-token"))))
	server := strings.TrimSpace(string(e.pkiFile("k3s-token")))
	for k, v := range kenv {
		if v == server {
			t.Errorf("%s: the agent holds the server token in %s", r.Name, k)
		}
	}
	for k := range kenv {
		if strings.HasPrefix(k, "K3S_DATASTORE") {
			t.Errorf("%s: agent's k3s.env sets %s", m.Name, k)
		}
	}
	for _, rel := range []string{"/etc/ssl/etcd", "/etc/etcd", "/var/lib/etcd", "/opt/bin/etcd", "/opt/bin/etcdctl",
		"/etc/systemd/system/etcd.service", "/etc/systemd/system/k3s.service"} {
		r.Absent(rel)
	}
	r.Unit("k3s-agent.service", "EnvironmentFile=/etc/rancher/k3s/k3s.env", "ExecStart=/opt/bin/k3s agent --node-name "+m.Name)
	for _, p := range r.Presets() {
		if strings.Contains(p, "etcd") {
			t.Errorf("%s: agent preset %q", m.Name, p)
		}
	}
}

// certOf parses a PEM certificate from the root.
func certOf(t *testing.T, r nodeRoot, rel string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(r.path(rel))
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: %s is not exactly one PEM certificate", r.Name, rel)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %s: %v", r.Name, rel, err)
	}
	return c
}

// CheckCerts verifies the laid-down etcd certificates with Go's verifier:
// chains to the laid-down CA, SANs, key usages, keys matching.
func (e *ignEnv) CheckCerts(r nodeRoot, m ignMachine) {
	t := e.t
	t.Helper()
	ca := certOf(t, r, "/etc/ssl/etcd/ca.crt")
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Errorf("%s: ca.crt is not a CA certificate", m.Name)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	fqdn := m.Name + "." + ignDomain
	for _, c := range []struct {
		name       string
		usages     []x509.ExtKeyUsage
		names, ips []string // the certificate must verify for each
		exactIPs   []string // and carry exactly these SANs
		exactDNS   []string
	}{
		{name: "server", usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			names: []string{m.Name, fqdn, "localhost"}, ips: []string{m.IP, "127.0.0.1"},
			exactIPs: []string{m.IP, "127.0.0.1"}, exactDNS: []string{m.Name, fqdn, "localhost"}},
		{name: "peer", usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			names: []string{m.Name, fqdn}, ips: []string{m.IP}, exactIPs: []string{m.IP}, exactDNS: []string{m.Name, fqdn}},
		{name: "client", usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		crtRel, keyRel := "/etc/ssl/etcd/"+c.name+".crt", "/etc/ssl/etcd/"+c.name+".key"
		cert := certOf(t, r, crtRel)
		for _, u := range c.usages {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("%s: %s does not verify against the laid-down CA for usage %v: %v", m.Name, crtRel, u, err)
			}
		}
		for _, u := range c.usages {
			if !slices.Contains(cert.ExtKeyUsage, u) {
				t.Errorf("%s: %s lacks extended key usage %v (has %v)", m.Name, crtRel, u, cert.ExtKeyUsage)
			}
		}
		if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			t.Errorf("%s: %s lacks digitalSignature key usage", m.Name, crtRel)
		}
		for _, h := range append(slices.Clone(c.names), c.ips...) {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: h, KeyUsages: []x509.ExtKeyUsage{c.usages[0]}}); err != nil {
				t.Errorf("%s: %s is not valid for %s: %v", m.Name, crtRel, h, err)
			}
		}
		if c.exactIPs != nil {
			var got []string
			for _, ip := range cert.IPAddresses {
				got = append(got, ip.String())
			}
			if !sameSet(got, c.exactIPs) {
				t.Errorf("%s: %s IP SANs %v, want exactly %v", m.Name, crtRel, got, c.exactIPs)
			}
			if !sameSet(cert.DNSNames, c.exactDNS) {
				t.Errorf("%s: %s DNS SANs %v, want exactly %v", m.Name, crtRel, cert.DNSNames, c.exactDNS)
			}
		}
		// Backdated, so a NUC whose clock lags (no RTC battery, no NTP yet) accepts it.
		if lag := time.Since(cert.NotBefore); lag < 50*time.Minute {
			t.Errorf("%s: %s is valid only from %v (%v ago); want NotBefore backdated about an hour", m.Name, crtRel, cert.NotBefore, lag.Round(time.Second))
		}
		keyPEM, _ := os.ReadFile(r.path(keyRel))
		certPEM, _ := os.ReadFile(r.path(crtRel))
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("%s: %s does not match %s: %v", m.Name, keyRel, crtRel, err)
		}
		if blk, _ := pem.Decode(keyPEM); blk == nil || strings.Contains(blk.Type, "ENCRYPTED") || blk.Headers["Proc-Type"] != "" {
			t.Errorf("%s: %s is not an unencrypted PEM key", m.Name, keyRel)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}
