package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is a whole second: certificates store times with second precision.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source for Open.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var (
	nuc1 = Node{Name: "nuc1", FQDN: "nuc1.rack.example", IP: netip.MustParseAddr("198.18.0.11")}
	nuc2 = Node{Name: "nuc2", FQDN: "nuc2.rack.example", IP: netip.MustParseAddr("198.18.0.12")}
	nuc3 = Node{Name: "nuc3", IP: netip.MustParseAddr("198.18.0.13")} // no FQDN

	// What flint passes for its HTTPS certificate.
	flintNames = []string{"flint.rack.example", "localhost"}
	flintIPs   = []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("127.0.0.1")}
)

func openPKI(t *testing.T, dir string, c *clock) *PKI {
	t.Helper()
	p, err := Open(dir, c.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return p
}

// must returns v, or stops the test by panicking on err (Go cannot pass a
// two-value call together with t, so this helper takes no t).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// snapshot returns every regular file below dir (path relative to dir -> content).
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		data, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// changedFiles lists files whose content differs between two snapshots (including added and removed ones).
func changedFiles(before, after map[string][]byte) []string {
	var out []string
	for name, b := range before {
		if a, ok := after[name]; !ok || !bytes.Equal(a, b) {
			out = append(out, name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func caPool(t *testing.T, p *PKI) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	return pool
}

func TestCA(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)

	ca, err := parseCertPEM(p.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Error("CA certificate is not marked IsCA")
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA key usage = %v, want certSign|crlSign", ca.KeyUsage)
	}
	if ca.Subject.CommonName != CACommonName || ca.Issuer.CommonName != CACommonName {
		t.Errorf("CA subject/issuer = %q/%q", ca.Subject.CommonName, ca.Issuer.CommonName)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if life := ca.NotAfter.Sub(t0); life < 9*365*24*time.Hour || life > 11*365*24*time.Hour {
		t.Errorf("CA lifetime from now = %v, want about 10 years", life)
	}
	if !ca.NotBefore.Equal(t0.Add(-time.Hour)) {
		t.Errorf("CA NotBefore = %v, want %v", ca.NotBefore, t0.Add(-time.Hour))
	}
	if len(ca.SubjectKeyId) == 0 {
		t.Error("CA has no SubjectKeyId")
	}
	// ca.key on disk is the CA's key.
	keyPEM := must(os.ReadFile(filepath.Join(dir, "ca.key")))
	if _, err := tls.X509KeyPair(p.CACertPEM(), keyPEM); err != nil {
		t.Errorf("ca.key does not match ca.crt: %v", err)
	}
	if onDisk := must(os.ReadFile(filepath.Join(dir, "ca.crt"))); !bytes.Equal(onDisk, p.CACertPEM()) {
		t.Error("CACertPEM differs from ca.crt")
	}
}

func TestLeafCertificates(t *testing.T) {
	c := newClock()
	p := openPKI(t, t.TempDir(), c)
	ca := must(parseCertPEM(p.CACertPEM()))
	server, client := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth

	tests := []struct {
		name     string
		get      func() (KeyPair, error)
		cn       string
		dns      []string
		ips      []string
		usages   []x509.ExtKeyUsage
		notUsage []x509.ExtKeyUsage // usages the cert must not verify for
	}{
		{"server", func() (KeyPair, error) { return p.EtcdServer(nuc1) }, "nuc1",
			[]string{"nuc1", "nuc1.rack.example", "localhost"}, []string{"198.18.0.11", "127.0.0.1"}, []x509.ExtKeyUsage{server, client}, nil},
		{"server without FQDN", func() (KeyPair, error) { return p.EtcdServer(nuc3) }, "nuc3",
			[]string{"nuc3", "localhost"}, []string{"198.18.0.13", "127.0.0.1"}, []x509.ExtKeyUsage{server, client}, nil},
		{"peer", func() (KeyPair, error) { return p.EtcdPeer(nuc1) }, "nuc1",
			[]string{"nuc1", "nuc1.rack.example"}, []string{"198.18.0.11"}, []x509.ExtKeyUsage{server, client}, nil},
		{"peer without FQDN", func() (KeyPair, error) { return p.EtcdPeer(nuc3) }, "nuc3",
			[]string{"nuc3"}, []string{"198.18.0.13"}, []x509.ExtKeyUsage{server, client}, nil},
		{"client", func() (KeyPair, error) { return p.EtcdClient("k3s-datastore") }, "k3s-datastore",
			nil, nil, []x509.ExtKeyUsage{client}, []x509.ExtKeyUsage{server}},
		{"admin", p.Admin, AdminName, nil, nil, []x509.ExtKeyUsage{client}, []x509.ExtKeyUsage{server}},
		// Never clientAuth: etcd members trust this CA for clients and peers.
		{"serving", func() (KeyPair, error) { return p.Serving(flintNames, flintIPs) }, "flint",
			[]string{"flint.rack.example", "localhost"}, []string{"198.18.0.1", "127.0.0.1"}, []x509.ExtKeyUsage{server}, []x509.ExtKeyUsage{client}},
	}
	serials := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := tt.get()
			if err != nil {
				t.Fatal(err)
			}
			cert := must(parseCertPEM(kp.CertPEM))
			if !bytes.Equal(cert.Raw, kp.Cert.Raw) {
				t.Error("KeyPair.Cert is not the certificate in CertPEM")
			}
			for _, u := range tt.usages {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(t, p), CurrentTime: c.Now(), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for %v: %v", usageNames([]x509.ExtKeyUsage{u}), err)
				}
			}
			for _, u := range tt.notUsage {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(t, p), CurrentTime: c.Now(), KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
					t.Errorf("verifies for %v, must not", usageNames([]x509.ExtKeyUsage{u}))
				}
			}
			if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(tt.usages)) {
				t.Errorf("ExtKeyUsage = %v, want %v", usageNames(cert.ExtKeyUsage), usageNames(tt.usages))
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want digitalSignature", cert.KeyUsage)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if cert.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tt.cn)
			}
			if !slices.Equal(cert.DNSNames, tt.dns) {
				t.Errorf("DNS SANs = %q, want %q", cert.DNSNames, tt.dns)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.ips) {
				t.Errorf("IP SANs = %q, want %q", ips, tt.ips)
			}
			if len(cert.EmailAddresses) != 0 || len(cert.URIs) != 0 {
				t.Errorf("unexpected SANs: %v %v", cert.EmailAddresses, cert.URIs)
			}
			// Hostname checks as a TLS client would make them.
			for _, h := range append(slices.Clone(tt.dns), tt.ips...) {
				if err := cert.VerifyHostname(h); err != nil {
					t.Errorf("VerifyHostname(%s): %v", h, err)
				}
			}
			if _, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
				t.Errorf("key does not match certificate: %v", err)
			}
			if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", cert.PublicKey)
			}
			if !cert.NotBefore.Equal(t0.Add(-time.Hour)) {
				t.Errorf("NotBefore = %v, want now-1h = %v", cert.NotBefore, t0.Add(-time.Hour))
			}
			if !cert.NotAfter.Equal(t0.Add(LeafValidity)) {
				t.Errorf("NotAfter = %v, want now+%v", cert.NotAfter, LeafValidity)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %x is not a positive 128-bit number", cert.SerialNumber)
			}
			if cert.SerialNumber.BitLen() < 64 {
				t.Errorf("serial %x looks too small to be random", cert.SerialNumber)
			}
			if prev, dup := serials[cert.SerialNumber.String()]; dup {
				t.Errorf("serial also used by %s", prev)
			}
			serials[cert.SerialNumber.String()] = tt.name
			if len(cert.SubjectKeyId) == 0 {
				t.Error("no SubjectKeyId")
			}
			if !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
				t.Errorf("AuthorityKeyId %x, want the CA's SubjectKeyId %x", cert.AuthorityKeyId, ca.SubjectKeyId)
			}
		})
	}

	// The peer certificate is for the node's own addresses only.
	peer := must(p.EtcdPeer(nuc1))
	for _, h := range []string{"localhost", "127.0.0.1", "198.18.0.12"} {
		if peer.Cert.VerifyHostname(h) == nil {
			t.Errorf("peer certificate is valid for %s", h)
		}
	}
}

// allSecrets requests everything a three-node cluster needs and returns it.
func allSecrets(t *testing.T, p *PKI) map[string]string {
	t.Helper()
	out := map[string]string{"ca": string(p.CACertPEM()), "token": p.K3sToken(), "agent-token": p.K3sAgentToken(),
		"report-key": hex.EncodeToString(p.ReportKey()), "admin-token": p.AdminToken()}
	add := func(name string, kp KeyPair, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out[name+".crt"], out[name+".key"] = string(kp.CertPEM), string(kp.KeyPEM)
	}
	for _, n := range []Node{nuc1, nuc2, nuc3} {
		kp, err := p.EtcdServer(n)
		add(n.Name+"-server", kp, err)
		kp, err = p.EtcdPeer(n)
		add(n.Name+"-peer", kp, err)
		kp, err = p.EtcdClient(n.Name)
		add(n.Name+"-client", kp, err)
		out[n.Name+"-password"] = must(p.NodePassword(n.Name))
	}
	kp, err := p.EtcdClient("k3s-datastore")
	add("k3s-datastore", kp, err)
	kp, err = p.Admin()
	add("admin", kp, err)
	kp, err = p.Serving(flintNames, flintIPs)
	add("serving", kp, err)
	return out
}

func TestReuseAcrossCallsAndReopen(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	first := allSecrets(t, p)
	files := snapshot(t, dir)

	if again := allSecrets(t, p); !maps.Equal(first, again) {
		t.Errorf("second round of calls changed: %v", diffKeys(first, again))
	}

	c.Set(t0.Add(24 * time.Hour)) // a restart a day later
	p2 := openPKI(t, dir, c)
	if reopened := allSecrets(t, p2); !maps.Equal(first, reopened) {
		t.Errorf("after reopen changed: %v", diffKeys(first, reopened))
	}
	if changed := changedFiles(files, snapshot(t, dir)); len(changed) != 0 {
		t.Errorf("files changed by reopen: %v", changed)
	}
	// Sanity check that the snapshot covers what it should.
	for _, f := range []string{"ca.crt", "ca.key", "k3s-token", "k3s-agent-token", "report-key", "admin-token", "etcd/nuc2-server.key", "etcd/nuc3-peer.crt",
		"clients/flint-admin.crt", "clients/k3s-datastore.key", "serving/flint.crt", "serving/flint.key", "node-passwords/nuc1"} {
		if _, ok := files[f]; !ok {
			t.Errorf("%s not on disk", f)
		}
	}
}

func diffKeys(a, b map[string]string) []string {
	var out []string
	for k := range a {
		if a[k] != b[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestReissueOnChangedNode(t *testing.T) {
	tests := []struct {
		name   string
		change func(Node) Node
		want   string // in the certificates afterwards
	}{
		{"IP changed", func(n Node) Node { n.IP = netip.MustParseAddr("198.19.1.11"); return n }, "198.19.1.11"},
		{"FQDN changed", func(n Node) Node { n.FQDN = "nuc1.other.example"; return n }, "nuc1.other.example"},
		{"FQDN removed", func(n Node) Node { n.FQDN = ""; return n }, "nuc1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			dir := t.TempDir()
			p := openPKI(t, dir, c)
			allSecrets(t, p)
			before := snapshot(t, dir)

			moved := tt.change(nuc1)
			srv := must(p.EtcdServer(moved))
			peer := must(p.EtcdPeer(moved))
			// The other nodes and clients again: all unchanged.
			for _, n := range []Node{nuc2, nuc3} {
				must(p.EtcdServer(n))
				must(p.EtcdPeer(n))
				must(p.NodePassword(n.Name))
			}
			must(p.EtcdClient("nuc1"))
			must(p.EtcdClient("k3s-datastore"))
			must(p.NodePassword("nuc1"))
			must(p.Admin())

			want := []string{"etcd/nuc1-peer.crt", "etcd/nuc1-peer.key", "etcd/nuc1-server.crt", "etcd/nuc1-server.key"}
			if changed := changedFiles(before, snapshot(t, dir)); !slices.Equal(changed, want) {
				t.Errorf("changed files = %v, want exactly %v", changed, want)
			}
			for _, kp := range []KeyPair{srv, peer} {
				if err := kp.Cert.VerifyHostname(tt.want); err != nil {
					t.Errorf("re-issued %s certificate: %v", kp.Cert.Subject.CommonName, err)
				}
			}
			// The old names are gone from the new certificates.
			if tt.name == "IP changed" && peer.Cert.VerifyHostname("198.18.0.11") == nil {
				t.Error("re-issued peer certificate still carries the old IP")
			}
			// And the new ones are kept from now on.
			if again := must(p.EtcdServer(moved)); !bytes.Equal(again.CertPEM, srv.CertPEM) {
				t.Error("server certificate re-issued again for the same node")
			}
		})
	}
}

func TestRenewalWindow(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	old := must(p.EtcdServer(nuc1))
	oldPeer := must(p.EtcdPeer(nuc1))
	oldAdmin := must(p.Admin())
	oldServing := must(p.Serving(flintNames, flintIPs))

	// Just outside the window: kept.
	c.Set(old.Cert.NotAfter.Add(-RenewBefore - time.Minute))
	if kp := must(p.EtcdServer(nuc1)); !bytes.Equal(kp.CertPEM, old.CertPEM) {
		t.Fatal("re-issued before the renewal window")
	}
	// Inside the window: re-issued, valid from the new now.
	now := old.Cert.NotAfter.Add(-RenewBefore + time.Minute)
	c.Set(now)
	kp := must(p.EtcdServer(nuc1))
	if bytes.Equal(kp.CertPEM, old.CertPEM) || bytes.Equal(kp.KeyPEM, old.KeyPEM) {
		t.Fatal("not re-issued inside the renewal window")
	}
	if !kp.Cert.NotAfter.Equal(now.Add(LeafValidity)) || !kp.Cert.NotBefore.Equal(now.Add(-Backdate)) {
		t.Errorf("renewed validity %v..%v, want %v..%v", kp.Cert.NotBefore, kp.Cert.NotAfter, now.Add(-Backdate), now.Add(LeafValidity))
	}
	// Every certificate has the same age, so all renew when asked for.
	if peer := must(p.EtcdPeer(nuc1)); bytes.Equal(peer.CertPEM, oldPeer.CertPEM) {
		t.Error("peer certificate not renewed")
	}
	if serving := must(p.Serving(flintNames, flintIPs)); bytes.Equal(serving.CertPEM, oldServing.CertPEM) {
		t.Error("serving certificate not renewed")
	}
	// Reopening renews the admin certificate right away.
	p2 := openPKI(t, dir, c)
	if admin := must(p2.Admin()); bytes.Equal(admin.CertPEM, oldAdmin.CertPEM) {
		t.Error("admin certificate not renewed")
	}
	// Already expired certificates are renewed too.
	c.Set(kp.Cert.NotAfter.Add(time.Hour))
	if again := must(p2.EtcdServer(nuc1)); bytes.Equal(again.CertPEM, kp.CertPEM) {
		t.Error("expired certificate not renewed")
	}
}

func TestReissueWhenSignedByAnotherCA(t *testing.T) {
	c := newClock()
	dir, otherDir := t.TempDir(), t.TempDir()
	p := openPKI(t, dir, c)
	other := openPKI(t, otherDir, c)
	foreign := must(other.EtcdServer(nuc1))
	foreignAdmin := must(other.Admin())
	foreignServing := must(other.Serving(flintNames, flintIPs))

	// Plant the foreign certificates as if they were ours.
	for _, f := range []string{"etcd/nuc1-server.crt", "etcd/nuc1-server.key", "clients/flint-admin.crt", "clients/flint-admin.key", "serving/flint.crt", "serving/flint.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), must(os.ReadFile(filepath.Join(otherDir, f))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kp := must(p.EtcdServer(nuc1))
	if bytes.Equal(kp.CertPEM, foreign.CertPEM) {
		t.Fatal("certificate from another CA was reused")
	}
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: caPool(t, p), CurrentTime: c.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("re-issued certificate does not verify against our CA: %v", err)
	}
	if admin := must(p.Admin()); bytes.Equal(admin.CertPEM, foreignAdmin.CertPEM) {
		t.Error("admin certificate from another CA was reused")
	}
	serving := must(p.Serving(flintNames, flintIPs))
	if bytes.Equal(serving.CertPEM, foreignServing.CertPEM) {
		t.Error("serving certificate from another CA was reused")
	}
	if _, err := serving.Cert.Verify(x509.VerifyOptions{Roots: caPool(t, p), CurrentTime: c.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("re-issued serving certificate does not verify against our CA: %v", err)
	}
}

func TestReissueWhenKeyDoesNotMatch(t *testing.T) {
	// A crash between writing a new key and its certificate leaves this state.
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	old := must(p.EtcdPeer(nuc2))
	must(p.EtcdServer(nuc2))
	otherKey := must(os.ReadFile(filepath.Join(dir, "etcd/nuc2-server.key")))
	if err := os.WriteFile(filepath.Join(dir, "etcd/nuc2-peer.key"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	kp := must(p.EtcdPeer(nuc2))
	if bytes.Equal(kp.CertPEM, old.CertPEM) {
		t.Fatal("certificate with a foreign key was reused")
	}
	if _, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
		t.Errorf("re-issued pair does not match: %v", err)
	}

	oldServing := must(p.Serving(flintNames, flintIPs))
	if err := os.WriteFile(filepath.Join(dir, "serving/flint.key"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	serving := must(p.Serving(flintNames, flintIPs))
	if bytes.Equal(serving.CertPEM, oldServing.CertPEM) {
		t.Fatal("serving certificate with a foreign key was reused")
	}
	if _, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM); err != nil {
		t.Errorf("re-issued serving pair does not match: %v", err)
	}
}

func TestFileModes(t *testing.T) {
	c := newClock()
	dir := filepath.Join(t.TempDir(), "pki") // Open creates it
	p := openPKI(t, dir, c)
	allSecrets(t, p)

	var keys int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		mode := fi.Mode().Perm()
		switch {
		case d.IsDir():
			if mode != 0o700 {
				t.Errorf("directory %s has mode %o, want 700", rel, mode)
			}
		case strings.HasSuffix(rel, ".key") || slices.Contains([]string{"k3s-token", "k3s-agent-token", "report-key", "admin-token"}, rel) ||
			strings.HasPrefix(rel, "node-passwords/"):
			keys++
			if mode != 0o600 {
				t.Errorf("%s has mode %o, want 600", rel, mode)
			}
		case strings.HasSuffix(rel, ".crt"):
			if mode&0o022 != 0 {
				t.Errorf("certificate %s is writable by others: %o", rel, mode)
			}
		default:
			t.Errorf("unexpected file %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// ca.key, 3x(server, peer, client) keys, k3s-datastore, admin, serving keys,
	// server and agent token, report key, admin token, 3 passwords
	if keys != 1+9+3+4+3 {
		t.Errorf("checked %d secret files, want 20", keys)
	}
}

func TestLooseModesAreTightened(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	must(p.NodePassword("nuc1"))
	must(p.Serving(flintNames, flintIPs))
	// As if restored from a backup without modes.
	private := map[string]fs.FileMode{"": 0o700, "etcd": 0o700, "serving": 0o700, "ca.key": 0o600, "k3s-token": 0o600, "k3s-agent-token": 0o600,
		"report-key": 0o600, "admin-token": 0o600, "clients/flint-admin.key": 0o600, "serving/flint.key": 0o600, "node-passwords/nuc1": 0o600}
	for f := range private {
		if err := os.Chmod(filepath.Join(dir, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p = openPKI(t, dir, c)
	must(p.NodePassword("nuc1"))
	must(p.Serving(flintNames, flintIPs))
	for f, want := range private {
		fi := must(os.Stat(filepath.Join(dir, f)))
		if fi.Mode().Perm() != want {
			t.Errorf("%q has mode %o after reopen, want %o", f, fi.Mode().Perm(), want)
		}
	}
}

func TestBrokenCAFailsAndIsKept(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir, otherDir string)
		wantErr []string
	}{
		{"ca.key missing", func(t *testing.T, dir, _ string) { remove(t, dir, "ca.key") }, []string{"ca.key is missing", "restore ca.key"}},
		{"ca.crt missing", func(t *testing.T, dir, _ string) { remove(t, dir, "ca.crt") }, []string{"ca.crt is missing", "restore ca.crt"}},
		{"ca.crt corrupt", func(t *testing.T, dir, _ string) { write(t, dir, "ca.crt", []byte("garbage\n")) }, []string{"ca.crt is corrupt", "restore ca.crt"}},
		{"ca.crt truncated", func(t *testing.T, dir, _ string) {
			data := must(os.ReadFile(filepath.Join(dir, "ca.crt")))
			write(t, dir, "ca.crt", data[:len(data)/2])
		}, []string{"ca.crt is corrupt"}},
		{"ca.key corrupt", func(t *testing.T, dir, _ string) { write(t, dir, "ca.key", nil) }, []string{"ca.key is corrupt", "restore ca.key"}},
		{"ca.key of another CA", func(t *testing.T, dir, otherDir string) {
			write(t, dir, "ca.key", must(os.ReadFile(filepath.Join(otherDir, "ca.key"))))
		}, []string{"does not belong to", "restore the matching pair"}},
		{"ca.crt is a leaf", func(t *testing.T, dir, _ string) {
			write(t, dir, "ca.crt", must(os.ReadFile(filepath.Join(dir, "clients/flint-admin.crt"))))
			write(t, dir, "ca.key", must(os.ReadFile(filepath.Join(dir, "clients/flint-admin.key"))))
		}, []string{"not a CA certificate"}},
		{"both CA files lost after issuing", func(t *testing.T, dir, _ string) {
			remove(t, dir, "ca.crt")
			remove(t, dir, "ca.key")
		}, []string{"ca.crt and", "are missing", "clients/flint-admin.crt", "restore ca.crt and ca.key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			dir, otherDir := t.TempDir(), t.TempDir()
			p := openPKI(t, dir, c)
			must(p.EtcdServer(nuc1))
			openPKI(t, otherDir, c)
			tt.damage(t, dir, otherDir)
			before := snapshot(t, dir)

			_, err := Open(dir, c.Now, nil)
			if err == nil {
				t.Fatal("Open succeeded on a damaged CA")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Nothing was created or replaced.
			if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
				t.Errorf("failed Open changed files: %v", changed)
			}
		})
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCAFromOpenSSLStyleKeyIsAccepted(t *testing.T) {
	// An operator may bring a CA whose key is in SEC 1 form ("EC PRIVATE KEY").
	c := newClock()
	dir := t.TempDir()
	openPKI(t, dir, c)
	key := must(parseKeyPEM(must(os.ReadFile(filepath.Join(dir, "ca.key"))))).(*ecdsa.PrivateKey)
	der := must(x509.MarshalECPrivateKey(key))
	write(t, dir, "ca.key", pemBlock("EC PRIVATE KEY", der))
	p := openPKI(t, dir, c)
	if _, err := p.EtcdServer(nuc1); err != nil {
		t.Fatal(err)
	}
}

func TestTokenAndNodePasswords(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)

	token := p.K3sToken()
	if b, err := hex.DecodeString(token); err != nil || len(b) != 32 {
		t.Errorf("token %d chars, want 64 hex digits", len(token))
	}
	if onDisk := strings.TrimSpace(string(must(os.ReadFile(filepath.Join(dir, "k3s-token"))))); onDisk != token {
		t.Error("token on disk differs from K3sToken")
	}
	pw1, pw2 := must(p.NodePassword("nuc1")), must(p.NodePassword("nuc2"))
	if pw1 == pw2 || pw1 == token {
		t.Error("node passwords are not distinct")
	}
	if b, err := hex.DecodeString(pw1); err != nil || len(b) != 32 {
		t.Errorf("node password %d chars, want 64 hex digits", len(pw1))
	}
	if again := must(p.NodePassword("nuc1")); again != pw1 {
		t.Error("node password changed between calls")
	}
	// A fresh directory gets a different token.
	if other := openPKI(t, t.TempDir(), c); other.K3sToken() == token {
		t.Error("two PKIs share a token")
	}
	// An operator-provided token (e.g. from an existing K3s cluster) is kept as is.
	write(t, dir, "k3s-token", []byte("K10abc::server:s3cret\n"))
	if got := openPKI(t, dir, c).K3sToken(); got != "K10abc::server:s3cret" {
		t.Errorf("operator token read as %q", got)
	}
}

func TestDamagedSecretsFail(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	must(p.NodePassword("nuc1"))

	write(t, dir, "node-passwords/nuc1", []byte("\n"))
	if _, err := p.NodePassword("nuc1"); err == nil || !strings.Contains(err.Error(), "restore") {
		t.Errorf("empty node password: err = %v, want a restore hint", err)
	}
	if got := string(must(os.ReadFile(filepath.Join(dir, "node-passwords/nuc1")))); got != "\n" {
		t.Error("damaged node password was replaced")
	}

	write(t, dir, "k3s-token", []byte("two words\n"))
	if _, err := Open(dir, c.Now, nil); err == nil || !strings.Contains(err.Error(), "K3s token") {
		t.Errorf("corrupt token: err = %v", err)
	}
	if got := string(must(os.ReadFile(filepath.Join(dir, "k3s-token")))); got != "two words\n" {
		t.Error("damaged token was replaced")
	}
}

func TestAgentTokenReportKeyAndAdminToken(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)

	agent, key, admin := p.K3sAgentToken(), p.ReportKey(), p.AdminToken()
	if b, err := hex.DecodeString(agent); err != nil || len(b) != 32 {
		t.Errorf("agent token %d chars, want 64 hex digits", len(agent))
	}
	if len(key) != 32 {
		t.Errorf("report key is %d bytes, want 32", len(key))
	}
	if b, err := hex.DecodeString(admin); err != nil || len(b) != 32 {
		t.Errorf("admin token %d chars, want 64 hex digits (256 bits)", len(admin))
	}
	if all := []string{p.K3sToken(), agent, hex.EncodeToString(key), admin}; len(slices.Compact(slices.Sorted(slices.Values(all)))) != len(all) {
		t.Error("the token, agent token, report key and admin token are not all distinct")
	}
	// On disk: one line each, private; the report key in hex.
	if got := p.AdminTokenPath(); got != filepath.Join(dir, "admin-token") {
		t.Errorf("AdminTokenPath = %s, want %s", got, filepath.Join(dir, "admin-token"))
	}
	for file, want := range map[string]string{"k3s-agent-token": agent, "report-key": hex.EncodeToString(key), "admin-token": admin} {
		if got := string(must(os.ReadFile(filepath.Join(dir, file)))); got != want+"\n" {
			t.Errorf("%s holds %d bytes, want the secret and a newline", file, len(got))
		}
		if mode := must(os.Stat(filepath.Join(dir, file))).Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", file, mode)
		}
	}
	// ReportKey hands out a copy.
	key[0] ^= 0xff
	if bytes.Equal(p.ReportKey(), key) {
		t.Error("changing the slice ReportKey returned changed the key")
	}
	key[0] ^= 0xff

	// Reopening (a restart a day later) reads them back and writes nothing.
	before := snapshot(t, dir)
	c.Set(t0.Add(24 * time.Hour))
	p2 := openPKI(t, dir, c)
	if p2.K3sAgentToken() != agent || !bytes.Equal(p2.ReportKey(), key) || p2.AdminToken() != admin {
		t.Error("a secret changed across reopen")
	}
	if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
		t.Errorf("files changed by reopen: %v", changed)
	}
	// A fresh directory gets different ones.
	other := openPKI(t, t.TempDir(), c)
	if other.K3sAgentToken() == agent || bytes.Equal(other.ReportKey(), key) || other.AdminToken() == admin {
		t.Error("two PKIs share a secret")
	}

	// Operator-provided values are kept as they are: an agent token from an
	// existing K3s cluster, a base64url admin token, a report key in upper case.
	ownKey := bytes.Repeat([]byte{0xab}, 32)
	write(t, dir, "k3s-agent-token", []byte("K10abc::node:agent-s3cret\n"))
	write(t, dir, "admin-token", []byte("  "+base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfe}, 32))+"\n"))
	write(t, dir, "report-key", []byte(strings.ToUpper(hex.EncodeToString(ownKey))+"\n"))
	p3 := openPKI(t, dir, c)
	if got := p3.K3sAgentToken(); got != "K10abc::node:agent-s3cret" {
		t.Errorf("operator agent token read as %q", got)
	}
	if got := p3.AdminToken(); got != base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfe}, 32)) {
		t.Errorf("operator admin token read as %q", got)
	}
	if got := p3.ReportKey(); !bytes.Equal(got, ownKey) {
		t.Errorf("operator report key read as %x", got)
	}
}

// A data directory from a flint that had only the K3s token gets the new
// secrets on its next start, and nothing else changes.
func TestOlderDirGetsNewSecrets(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	old := allSecrets(t, p)
	for _, f := range []string{"k3s-agent-token", "report-key", "admin-token", "serving/flint.crt", "serving/flint.key", "serving"} {
		remove(t, dir, f)
	}
	before := snapshot(t, dir)

	p = openPKI(t, dir, c)
	want := []string{"admin-token", "k3s-agent-token", "report-key"}
	if changed := changedFiles(before, snapshot(t, dir)); !slices.Equal(changed, want) {
		t.Errorf("Open changed %v, want it to add exactly %v", changed, want)
	}
	if p.K3sToken() != old["token"] {
		t.Error("the K3s token changed")
	}
	if p.K3sAgentToken() == old["agent-token"] || p.AdminToken() == old["admin-token"] || hex.EncodeToString(p.ReportKey()) == old["report-key"] {
		t.Error("a removed secret came back with the old value")
	}
	if p.K3sAgentToken() == p.K3sToken() {
		t.Error("the new agent token is the server token")
	}
	if fi := must(os.Stat(filepath.Join(dir, "serving"))); fi.Mode().Perm() != 0o700 {
		t.Errorf("serving directory has mode %o, want 700", fi.Mode().Perm())
	}
}

func TestDamagedNewSecretsFailOpen(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		data    func(p *PKI) string
		wantErr []string
	}{
		{"empty agent token", "k3s-agent-token", func(*PKI) string { return "\n" }, []string{"K3s agent token", "is empty"}},
		{"agent token of two words", "k3s-agent-token", func(*PKI) string { return "agent secret\n" }, []string{"K3s agent token", "corrupt"}},
		{"agent token is the server token", "k3s-agent-token", func(p *PKI) string { return p.K3sToken() + "\n" },
			[]string{"k3s-agent-token holds the same value as", "k3s-token", "agents would join with the server token", "write a different secret"}},
		{"empty report key", "report-key", func(*PKI) string { return "" }, []string{"report key", "is empty"}},
		{"report key not hex", "report-key", func(*PKI) string { return strings.Repeat("zz", 32) + "\n" }, []string{"report key", "want 64 hex digits"}},
		{"report key truncated", "report-key", func(p *PKI) string { return hex.EncodeToString(p.ReportKey())[:40] }, []string{"report key", "found 40 characters"}},
		{"report key of two words", "report-key", func(p *PKI) string { h := hex.EncodeToString(p.ReportKey()); return h[:32] + " " + h[32:] }, []string{"report key", "corrupt"}},
		{"empty admin token", "admin-token", func(*PKI) string { return " \n" }, []string{"admin API token", "is empty"}},
		{"admin token too short", "admin-token", func(*PKI) string { return "s3cret-admin\n" }, []string{"admin API token", "too short", "at least 43"}},
		{"admin token not header-safe", "admin-token", func(*PKI) string { return strings.Repeat("a", 50) + "\"ok\n" }, []string{"admin API token", "bearer token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			dir := t.TempDir()
			p := openPKI(t, dir, c)
			data := tt.data(p)
			write(t, dir, tt.file, []byte(data))
			before := snapshot(t, dir)

			_, err := Open(dir, c.Now, nil)
			if err == nil {
				t.Fatal("Open succeeded on a damaged secret")
			}
			for _, w := range append(tt.wantErr, filepath.Join(dir, tt.file)) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "restore") && !strings.Contains(err.Error(), "write a different secret") {
				t.Errorf("error %q says nothing about what to do", err)
			}
			// The error may end up in a log: it must not quote the secret.
			if s := strings.TrimSpace(data); len(s) >= 8 && strings.Contains(err.Error(), s) {
				t.Errorf("error %q quotes the file", err)
			}
			if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
				t.Errorf("failed Open changed files: %v", changed)
			}
		})
	}
}

func TestServingCertificate(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)
	kp := must(p.Serving(flintNames, flintIPs))

	// A node that trusts ca.crt reaches flint over HTTPS by any of its names and addresses.
	for _, host := range []string{"198.18.0.1", "127.0.0.1", "localhost", "flint.rack.example"} {
		serverErr, clientErr := handshake(t, c,
			&tls.Config{Certificates: []tls.Certificate{tlsCert(t, kp)}},
			&tls.Config{RootCAs: caPool(t, p), ServerName: host})
		if serverErr != nil || clientErr != nil {
			t.Errorf("HTTPS to %s: server %v, client %v", host, serverErr, clientErr)
		}
	}
	if err := kp.Cert.VerifyHostname("198.18.0.2"); err == nil {
		t.Error("serving certificate is valid for an address flint did not pass")
	}

	// An etcd member (client certificates required, this CA trusted) refuses it
	// as a client or peer certificate, while it accepts flint's admin certificate.
	etcd := tlsCert(t, must(p.EtcdServer(nuc1)))
	for _, tc := range []struct {
		name   string
		client KeyPair
		ok     bool
	}{{"admin client certificate", must(p.Admin()), true}, {"serving certificate", kp, false}} {
		serverErr, clientErr := handshake(t, c,
			&tls.Config{Certificates: []tls.Certificate{etcd}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: caPool(t, p)},
			&tls.Config{Certificates: []tls.Certificate{tlsCert(t, tc.client)}, RootCAs: caPool(t, p), ServerName: "198.18.0.11"})
		if tc.ok && (serverErr != nil || clientErr != nil) {
			t.Errorf("etcd with the %s: server %v, client %v", tc.name, serverErr, clientErr)
		}
		if !tc.ok && (serverErr == nil || !strings.Contains(serverErr.Error(), "key usage")) {
			t.Errorf("etcd with the %s: server error %v, want a refusal for its key usage", tc.name, serverErr)
		}
	}

	// The same names and addresses in another order, spelling or with
	// duplicates keep the certificate; so does a restart.
	before := snapshot(t, dir)
	same := []KeyPair{
		must(p.Serving([]string{"LOCALHOST", "flint.rack.example.", "localhost"}, []netip.Addr{flintIPs[1], netip.MustParseAddr("::ffff:198.18.0.1"), flintIPs[1]})),
		must(openPKI(t, dir, c).Serving(flintNames, flintIPs)),
	}
	for _, again := range same {
		if !bytes.Equal(again.CertPEM, kp.CertPEM) || !bytes.Equal(again.KeyPEM, kp.KeyPEM) {
			t.Error("serving certificate re-issued for the same names and addresses")
		}
	}
	if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
		t.Errorf("files changed: %v", changed)
	}

	// Other addresses or names: re-issued, with a new key, and nothing else changes.
	moved := []netip.Addr{netip.MustParseAddr("198.18.0.2"), flintIPs[1]}
	kp2 := must(p.Serving(flintNames, moved))
	if bytes.Equal(kp2.CertPEM, kp.CertPEM) || bytes.Equal(kp2.KeyPEM, kp.KeyPEM) {
		t.Fatal("serving certificate not re-issued for a new address")
	}
	if changed, want := changedFiles(before, snapshot(t, dir)), []string{"serving/flint.crt", "serving/flint.key"}; !slices.Equal(changed, want) {
		t.Errorf("changed files = %v, want exactly %v", changed, want)
	}
	if err := kp2.Cert.VerifyHostname("198.18.0.2"); err != nil {
		t.Errorf("re-issued certificate: %v", err)
	}
	if kp2.Cert.VerifyHostname("198.18.0.1") == nil {
		t.Error("re-issued certificate still carries the old address")
	}
	if !slices.Equal(kp2.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("re-issued certificate has usages %v, want serverAuth only", usageNames(kp2.Cert.ExtKeyUsage))
	}
	kp3 := must(p.Serving([]string{"flint.other.example"}, moved))
	if bytes.Equal(kp3.CertPEM, kp2.CertPEM) || !slices.Equal(kp3.Cert.DNSNames, []string{"flint.other.example"}) {
		t.Errorf("new names: DNS SANs %v, want re-issued for [flint.other.example]", kp3.Cert.DNSNames)
	}
	// Addresses only is fine too.
	kp4 := must(p.Serving(nil, moved))
	if len(kp4.Cert.DNSNames) != 0 || kp4.Cert.VerifyHostname("198.18.0.2") != nil {
		t.Errorf("addresses only: DNS SANs %v, IPs %v", kp4.Cert.DNSNames, kp4.Cert.IPAddresses)
	}
}

func TestServingValidation(t *testing.T) {
	p := openPKI(t, t.TempDir(), newClock())
	ip := []netip.Addr{netip.MustParseAddr("198.18.0.1")}
	tests := []struct {
		names []string
		ips   []netip.Addr
		want  string
	}{
		{nil, nil, "no DNS name and no IP address"},
		{[]string{""}, ip, "DNS name"},
		{[]string{"flint..example"}, ip, "DNS name"},
		{[]string{"*.rack.example"}, ip, "DNS name"},
		{[]string{"flint_1"}, ip, "DNS name"},
		{[]string{"flint rack"}, ip, "DNS name"},
		{[]string{strings.Repeat("a.", 127) + "a"}, ip, "longer than 253"},
		{[]string{"localhost"}, []netip.Addr{{}}, "IP address is missing"},
		{nil, []netip.Addr{netip.MustParseAddr("0.0.0.0")}, "wildcard address"},
		{nil, []netip.Addr{netip.MustParseAddr("::")}, "wildcard address"},
		{nil, []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}, "zone"},
		{nil, []netip.Addr{netip.MustParseAddr("224.0.0.1")}, "cannot be flint's address"},
		{nil, []netip.Addr{netip.MustParseAddr("255.255.255.255")}, "cannot be flint's address"},
	}
	for _, tt := range tests {
		if _, err := p.Serving(tt.names, tt.ips); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Serving(%q, %v): err = %v, want one saying %q", tt.names, tt.ips, err, tt.want)
		}
	}
	if entries := must(os.ReadDir(filepath.Join(p.Dir(), "serving"))); len(entries) != 0 {
		t.Errorf("invalid requests left files: %v", entries)
	}
	// IPv6 addresses are fine.
	kp := must(p.Serving(nil, []netip.Addr{netip.MustParseAddr("2001:db8::1")}))
	if err := kp.Cert.VerifyHostname("2001:db8::1"); err != nil {
		t.Error(err)
	}
}

func tlsCert(t *testing.T, kp KeyPair) tls.Certificate {
	t.Helper()
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// handshake runs a TLS handshake between server and client over a pipe at the
// clock's time and returns each side's error.
func handshake(t *testing.T, c *clock, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	server.Time, client.Time = c.Now, c.Now
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		serverErr = tls.Server(sc, server).Handshake()
		sc.Close() // unblock the client if the server gave up
	})
	clientErr = tls.Client(cc, client).Handshake()
	cc.Close()
	wg.Wait()
	return serverErr, clientErr
}

func TestValidation(t *testing.T) {
	p := openPKI(t, t.TempDir(), newClock())
	ip := netip.MustParseAddr("198.18.0.20")
	tests := []struct {
		node Node
		want string
	}{
		{Node{Name: "", IP: ip}, "Name"},
		{Node{Name: "NUC1", IP: ip}, "Name"},
		{Node{Name: "nuc_1", IP: ip}, "Name"},
		{Node{Name: "-nuc", IP: ip}, "Name"},
		{Node{Name: "../ca", IP: ip}, "Name"},
		{Node{Name: "nuc1.example", IP: ip}, "Name"},
		{Node{Name: strings.Repeat("a", 64), IP: ip}, "Name"},
		{Node{Name: "nuc1"}, "IP is missing"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("2001:db8::1")}, "IP"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("::ffff:198.18.0.20")}, "IP"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("0.0.0.0")}, "IP"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("127.0.0.1")}, "IP"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("224.0.0.1")}, "IP"},
		{Node{Name: "nuc1", IP: netip.MustParseAddr("255.255.255.255")}, "IP"},
		{Node{Name: "nuc1", FQDN: "nuc1", IP: ip}, "FQDN"},
		{Node{Name: "nuc1", FQDN: "nuc1..example", IP: ip}, "FQDN"},
		{Node{Name: "nuc1", FQDN: "nuc1.exa mple", IP: ip}, "FQDN"},
		{Node{Name: "nuc1", FQDN: "nuc1.-x.example", IP: ip}, "FQDN"},
	}
	for _, tt := range tests {
		for kind, get := range map[string]func(Node) (KeyPair, error){"EtcdServer": p.EtcdServer, "EtcdPeer": p.EtcdPeer} {
			_, err := get(tt.node)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s(%+v): err = %v, want one naming %s", kind, tt.node, err, tt.want)
			}
		}
	}
	for _, name := range []string{"", "K3S", "a/b", "..", AdminName} {
		if _, err := p.EtcdClient(name); err == nil {
			t.Errorf("EtcdClient(%q) succeeded", name)
		}
		if name != AdminName {
			if _, err := p.NodePassword(name); err == nil {
				t.Errorf("NodePassword(%q) succeeded", name)
			}
		}
	}
	// Nothing was written for invalid input.
	entries := must(os.ReadDir(filepath.Join(p.Dir(), "etcd")))
	if len(entries) != 0 {
		t.Errorf("invalid requests left files: %v", entries)
	}

	// FQDNs are compared case-insensitively and without a trailing dot.
	n := Node{Name: "nuc9", FQDN: "NUC9.Rack.Example.", IP: ip}
	kp := must(p.EtcdServer(n))
	if !slices.Contains(kp.Cert.DNSNames, "nuc9.rack.example") {
		t.Errorf("DNS SANs %v, want the normalised FQDN", kp.Cert.DNSNames)
	}
	n.FQDN = "nuc9.rack.example"
	if again := must(p.EtcdServer(n)); !bytes.Equal(again.CertPEM, kp.CertPEM) {
		t.Error("same FQDN in another spelling re-issued the certificate")
	}
}

func TestConcurrentCalls(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	p := openPKI(t, dir, c)

	const workers = 16
	results := make([]map[string]string, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			out := map[string]string{}
			for _, n := range []Node{nuc1, nuc2} {
				kp, err := p.EtcdServer(n)
				if err != nil {
					t.Error(err)
					return
				}
				out[n.Name+"-server"] = string(kp.CertPEM) + string(kp.KeyPEM)
				kp, err = p.EtcdPeer(n)
				if err != nil {
					t.Error(err)
					return
				}
				out[n.Name+"-peer"] = string(kp.CertPEM)
				pw, err := p.NodePassword(n.Name)
				if err != nil {
					t.Error(err)
					return
				}
				out[n.Name+"-password"] = pw
			}
			kp, err := p.Serving(flintNames, flintIPs)
			if err != nil {
				t.Error(err)
				return
			}
			out["serving"] = string(kp.CertPEM) + string(kp.KeyPEM)
			if _, err := p.List(); err != nil {
				t.Error(err)
			}
			results[i] = out
		})
	}
	wg.Wait()
	for i := 1; i < workers; i++ {
		if !maps.Equal(results[0], results[i]) {
			t.Fatalf("worker %d got different secrets: %v", i, diffKeys(results[0], results[i]))
		}
	}
	// What the workers got is what is on disk.
	if got := string(must(os.ReadFile(filepath.Join(dir, "etcd/nuc1-peer.crt")))); got != results[0]["nuc1-peer"] {
		t.Error("returned peer certificate is not the one on disk")
	}
}

func TestList(t *testing.T) {
	c := newClock()
	dir, otherDir := t.TempDir(), t.TempDir()
	p := openPKI(t, dir, c)
	must(p.EtcdServer(nuc1))
	must(p.EtcdPeer(nuc1))
	must(p.EtcdClient("k3s-datastore"))
	serving := must(p.Serving(flintNames, flintIPs))

	infos := must(p.List())
	var files []string
	for _, in := range infos {
		files = append(files, in.File)
		if in.RenewalDue {
			t.Errorf("%s due for renewal right after issuing: %s", in.File, in.Reason)
		}
	}
	// The secret files next to ca.crt and the keys are not listed.
	want := []string{"ca.crt", "clients/flint-admin.crt", "clients/k3s-datastore.crt", "etcd/nuc1-peer.crt", "etcd/nuc1-server.crt", "serving/flint.crt"}
	if !slices.Equal(files, want) {
		t.Fatalf("files = %v, want %v", files, want)
	}
	if in := infos[5]; in.CommonName != "flint" || in.Serial != serving.Cert.SerialNumber.Text(16) ||
		!slices.Equal(in.DNSNames, flintNames) || !slices.Equal(in.IPs, flintIPs) ||
		!slices.Equal(in.Usages, []string{"digitalSignature", "serverAuth"}) {
		t.Errorf("serving entry = %+v", in)
	}
	ca, server := infos[0], infos[4]
	if !ca.IsCA || ca.CommonName != CACommonName || !slices.Equal(ca.Usages, []string{"certSign", "crlSign"}) {
		t.Errorf("CA entry = %+v", ca)
	}
	kp := must(p.EtcdServer(nuc1))
	if server.CommonName != "nuc1" || server.Serial != kp.Cert.SerialNumber.Text(16) ||
		!server.NotBefore.Equal(kp.Cert.NotBefore) || !server.NotAfter.Equal(kp.Cert.NotAfter) ||
		!slices.Equal(server.DNSNames, []string{"nuc1", "nuc1.rack.example", "localhost"}) ||
		!slices.Equal(server.IPs, []netip.Addr{nuc1.IP, netip.MustParseAddr("127.0.0.1")}) ||
		!slices.Equal(server.Usages, []string{"digitalSignature", "serverAuth", "clientAuth"}) {
		t.Errorf("server entry = %+v", server)
	}

	// Within the renewal window every leaf is due, the CA is not.
	c.Set(kp.Cert.NotAfter.Add(-RenewBefore + time.Hour))
	for _, in := range must(p.List()) {
		if in.RenewalDue != !in.IsCA {
			t.Errorf("%s: RenewalDue = %v (%s)", in.File, in.RenewalDue, in.Reason)
		}
	}
	// Within a leaf's lifetime of the CA's expiry, the CA is flagged for rotation.
	c.Set(ca.NotAfter.Add(-LeafValidity / 2))
	if in := must(p.List())[0]; !in.RenewalDue || !strings.Contains(in.Reason, "rotation") {
		t.Errorf("CA close to expiry: %+v", in)
	}
	c.Set(t0)

	// A certificate of another CA, and a broken file.
	other := openPKI(t, otherDir, c)
	must(other.EtcdPeer(nuc2))
	write(t, dir, "etcd/nuc2-peer.crt", must(os.ReadFile(filepath.Join(otherDir, "etcd/nuc2-peer.crt"))))
	write(t, dir, "etcd/nuc3-peer.crt", []byte("junk"))
	found := map[string]CertInfo{}
	for _, in := range must(p.List()) {
		found[in.File] = in
	}
	if in := found["etcd/nuc2-peer.crt"]; !in.RenewalDue || !strings.Contains(in.Reason, "CA") {
		t.Errorf("foreign certificate: %+v", in)
	}
	if in := found["etcd/nuc3-peer.crt"]; !in.RenewalDue || !strings.Contains(in.Reason, "unreadable") {
		t.Errorf("broken certificate: %+v", in)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	openPKI(t, dir, c)
	stale := []string{".ca.key.tmp-123", ".admin-token.tmp-4", "etcd/.nuc1-server.key.tmp-9", "serving/.flint.key.tmp-7", "node-passwords/.nuc1.tmp-1"}
	for _, f := range stale {
		write(t, dir, f, []byte("half"))
	}
	p := openPKI(t, dir, c)
	for _, f := range stale {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there after Open (err %v)", f, err)
		}
	}
	if _, err := p.List(); err != nil {
		t.Fatal(err)
	}
}

func TestLogsReasonsButNoSecrets(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := Open(dir, c.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	secrets := allSecrets(t, p)
	moved := nuc1
	moved.IP = netip.MustParseAddr("198.18.9.9")
	must(p.EtcdPeer(moved))
	c.Set(t0.Add(LeafValidity - time.Hour))
	must(p.EtcdClient("k3s-datastore"))

	must(p.Serving(flintNames, flintIPs[:1]))

	out := buf.String()
	for _, want := range []string{"created etcd CA", "generated K3s token", "generated K3s agent token", "generated report key", "generated admin API token",
		"no certificate on disk yet", "IP addresses are [198.18.0.11], want [198.18.9.9]", "within the renewal window", "etcd/nuc1-peer.crt",
		"IP addresses are [127.0.0.1 198.18.0.1], want [198.18.0.1]", "serving/flint.crt"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("log contains a private key:\n%s", out)
	}
	key := p.ReportKey()
	for name, secret := range map[string]string{
		"K3s token": p.K3sToken(), "agent token": p.K3sAgentToken(), "admin token": p.AdminToken(), "node password": secrets["nuc1-password"],
		"report key (hex)": hex.EncodeToString(key), "report key (HEX)": strings.ToUpper(hex.EncodeToString(key)), "report key (raw)": string(key),
		"report key (base64)": base64.StdEncoding.EncodeToString(key), "report key (%v)": strings.Trim(fmt.Sprint(key), "[]"),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains the %s:\n%s", name, out)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
