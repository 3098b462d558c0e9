// Package etcdtest starts a real TLS etcd cluster on loopback for tests:
// Debian 12's etcd 3.4 (/usr/bin/etcd from etcd-server), certificates from
// flint's own pki package. Tests import it; a benchmark program may run one
// too (StartProgram).
//
// Addresses: pki refuses loopback node IPs, so no pki certificate can name
// 127.0.0.2-4, and peer certificates (pki.EtcdPeer) carry only the node IP.
// The only loopback address in a pki certificate is the 127.0.0.1 SAN of
// server certificates. So all members listen on 127.0.0.1 with kernel-chosen
// ports, and each member's server certificate (serverAuth + clientAuth) also
// serves as its peer certificate: etcd checks a peer's certificate against
// the address it connects to and from, which is 127.0.0.1. The node IPs in
// the certificates (198.18.0.11-13, a benchmarking range) are never used.
// Clients authenticate with flint's admin client certificate, as in
// production (--client-cert-auth).
//
// StartIn instead puts each member in a network namespace of its own at a
// real address (198.18.0.0/15 in flint's tests), as the members of a site's
// store etcd run on separate hosts: there the peer certificates are pki's
// (pki.EtcdPeer, the node IP), the ports etcd's defaults (2379, 2380), and
// the test reaches the members from a namespace it names.
package etcdtest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
	"github.com/flint-boot/flint/pki"
)

// InstallHint installs what Require needs.
const InstallHint = "apt-get install -y --no-install-recommends etcd-server etcd-client"

// Require skips the test when etcd or etcdctl is missing, except in CI
// (CI=true) where that must fail instead of silently testing nothing.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("install it with %q (as root) to run this test", InstallHint), "%s not found", bin)
		}
	}
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	LogPath   string

	CertFile, KeyFile         string // server certificate (on loopback also used for peering)
	PeerCertFile, PeerKeyFile string // peer certificate; the server's on loopback

	NS string     // network namespace (StartIn); "" on loopback
	IP netip.Addr // its address in NS (StartIn)

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// TB is what a Cluster needs from whoever runs it: a test's testing.TB, or
// StartProgram's stand-in in a program.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	TempDir() string
}

// Cluster is a running test cluster; t.Cleanup stops it (by PID).
type Cluster struct {
	t    TB
	Dir  string
	PKI  *pki.PKI
	TLS  *tls.Config // CA and the admin client certificate
	Name string      // --initial-cluster-token

	CAFile, ClientCert, ClientKey string // files of the CA and the admin client pair (0600)

	Members        []*Member
	InitialCluster string // as first bootstrapped
	HealthyAt      time.Time

	// ClientNS is the namespace the test's clients (Client, Etcdctl) dial
	// from; "" for loopback clusters.
	ClientNS string
}

// Place is where StartIn runs one member: a network namespace (made by the
// caller, with an interface carrying IP) and the member's address there.
type Place struct {
	NS string
	IP netip.Addr
}

// Start starts n members named n1..nN on loopback and waits until all
// serve linearizable reads.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	Require(t)
	return startLoopback(t, n)
}

// startLoopback is Start for any TB (StartProgram's too).
func startLoopback(t TB, n int) *Cluster {
	t.Helper()
	c := newCluster(t)
	c.start(func() { c.members(n) })
	return c
}

// StartIn starts one member per place, named n1..nN, each in its namespace
// listening on its address (clients on 2379, peers on 2380), and waits until
// all serve linearizable reads. clientNS is the namespace from which the
// test's own clients reach the members (Client, Etcdctl).
func StartIn(t testing.TB, clientNS string, places []Place) *Cluster {
	t.Helper()
	Require(t)
	c := newCluster(t)
	c.ClientNS = clientNS
	c.start(func() { c.membersIn(places) })
	return c
}

// newCluster makes the cluster's CA and the admin client certificate.
func newCluster(t TB) *Cluster {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.Open(filepath.Join(dir, "pki"), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Dir: dir, PKI: p, Name: "flint-test", CAFile: filepath.Join(dir, "ca.crt")}
	WriteFile(t, c.CAFile, p.CACertPEM())
	admin, err := p.Admin()
	if err != nil {
		t.Fatal(err)
	}
	c.ClientCert, c.ClientKey = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	WriteFile(t, c.ClientCert, admin.CertPEM)
	WriteFile(t, c.ClientKey, admin.KeyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.CACertPEM())
	cert, err := tls.X509KeyPair(admin.CertPEM, admin.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c.TLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	t.Cleanup(c.StopAll)
	return c
}

// start makes the members (makeMembers) and starts them until all serve.
func (c *Cluster) start(makeMembers func()) {
	t := c.t
	t.Helper()
	start := time.Now()
	// A port FreePort chose may be taken by another process before etcd
	// binds it: then start over with new ports, a few times.
	for attempt := 1; ; attempt++ {
		makeMembers()
		for _, m := range c.Members {
			c.StartMember(m, c.InitialCluster, "new")
		}
		var err error
		for _, m := range c.Members {
			if err = c.waitReadable(m, 20*time.Second); err != nil {
				break
			}
		}
		if err == nil {
			break
		}
		busy := false
		for _, m := range c.Members {
			busy = busy || strings.Contains(Tail(m.LogPath, 30), "address already in use")
		}
		if !busy || attempt == 3 || c.ClientNS != "" {
			t.Fatal(err)
		}
		t.Logf("a port was taken before etcd bound it (attempt %d): starting over with other ports", attempt)
		c.StopAll()
		for _, m := range c.Members {
			os.RemoveAll(m.DataDir)
			os.Remove(m.LogPath)
		}
	}
	c.HealthyAt = time.Now()
	t.Logf("%d-member etcd cluster healthy after %v", len(c.Members), c.HealthyAt.Sub(start).Round(time.Millisecond))
}

// members makes n members with fresh ports and their certificates.
func (c *Cluster) members(n int) {
	c.t.Helper()
	c.Members = nil
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("n%d", i+1)}
		m.ClientURL = fmt.Sprintf("https://127.0.0.1:%d", FreePort(c.t))
		m.PeerURL = fmt.Sprintf("https://127.0.0.1:%d", FreePort(c.t))
		m.DataDir = filepath.Join(c.Dir, m.Name+".etcd")
		m.LogPath = filepath.Join(c.Dir, m.Name+".log")
		server, err := c.PKI.EtcdServer(pki.Node{Name: m.Name, IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})})
		if err != nil {
			c.t.Fatal(err)
		}
		if !slices.ContainsFunc(server.Cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			c.t.Fatalf("server certificate of %s lacks the 127.0.0.1 SAN this cluster relies on: %v", m.Name, server.Cert.IPAddresses)
		}
		m.CertFile, m.KeyFile = filepath.Join(c.Dir, m.Name+"-server.crt"), filepath.Join(c.Dir, m.Name+"-server.key")
		WriteFile(c.t, m.CertFile, server.CertPEM)
		WriteFile(c.t, m.KeyFile, server.KeyPEM)
		m.PeerCertFile, m.PeerKeyFile = m.CertFile, m.KeyFile // see the package comment
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.InitialCluster = strings.Join(initial, ",")
}

// membersIn makes a member per place with pki's server and peer
// certificates for its address.
func (c *Cluster) membersIn(places []Place) {
	c.t.Helper()
	c.Members = nil
	var initial []string
	for i, p := range places {
		m := &Member{Name: fmt.Sprintf("n%d", i+1), NS: p.NS, IP: p.IP}
		m.ClientURL = "https://" + net.JoinHostPort(p.IP.String(), "2379")
		m.PeerURL = "https://" + net.JoinHostPort(p.IP.String(), "2380")
		m.DataDir = filepath.Join(c.Dir, m.Name+".etcd")
		m.LogPath = filepath.Join(c.Dir, m.Name+".log")
		node := pki.Node{Name: m.Name, IP: p.IP}
		server, err := c.PKI.EtcdServer(node)
		if err != nil {
			c.t.Fatal(err)
		}
		peer, err := c.PKI.EtcdPeer(node)
		if err != nil {
			c.t.Fatal(err)
		}
		m.CertFile, m.KeyFile = filepath.Join(c.Dir, m.Name+"-server.crt"), filepath.Join(c.Dir, m.Name+"-server.key")
		m.PeerCertFile, m.PeerKeyFile = filepath.Join(c.Dir, m.Name+"-peer.crt"), filepath.Join(c.Dir, m.Name+"-peer.key")
		WriteFile(c.t, m.CertFile, server.CertPEM)
		WriteFile(c.t, m.KeyFile, server.KeyPEM)
		WriteFile(c.t, m.PeerCertFile, peer.CertPEM)
		WriteFile(c.t, m.PeerKeyFile, peer.KeyPEM)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.InitialCluster = strings.Join(initial, ",")
}

// WriteFile writes a 0600 file or fails the test.
func WriteFile(t TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// could take it before etcd binds it; that is unlikely enough for a test.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
