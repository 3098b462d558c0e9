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
	"bytes"
	"context"
	"crypto/rand"
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
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/netns"
	"github.com/flint-boot/flint/internal/testenv"
	"github.com/flint-boot/flint/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
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

// StartMember runs etcd for m with an existing or empty data dir.
func (c *Cluster) StartMember(m *Member, initialCluster, state string) {
	c.t.Helper()
	if m.Running() {
		c.t.Fatalf("%s is already running", m.Name)
	}
	logFile, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== start %s state=%s initial-cluster=%s\n", m.Name, state, initialCluster)
	args := []string{"etcd",
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", state,
		"--initial-cluster-token", c.Name,
		"--cert-file", m.CertFile, "--key-file", m.KeyFile,
		"--trusted-ca-file", c.CAFile, "--client-cert-auth=true",
		"--peer-cert-file", m.PeerCertFile, "--peer-key-file", m.PeerKeyFile,
		"--peer-trusted-ca-file", c.CAFile, "--peer-client-cert-auth=true",
		"--logger", "zap", "--log-outputs", "stderr",
	}
	if m.NS != "" {
		// ip netns exec enters the namespace and execs etcd: the PID is etcd's.
		args = append([]string{"ip", "netns", "exec", m.NS}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = EnvWithoutEtcd()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (e.g. -timeout), take etcd with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	done := m.done
	go func() {
		cmd.Wait()
		close(done)
	}()
}

// EnvWithoutEtcd drops ETCD_* variables so that the host cannot change the
// members' configuration.
func EnvWithoutEtcd() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD") {
			env = append(env, kv)
		}
	}
	return env
}

// Running reports whether m's process is alive.
func (m *Member) Running() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Done is closed when m's process has exited.
func (m *Member) Done() <-chan struct{} { return m.done }

// ExitState is how m's process ended (nil while it runs).
func (m *Member) ExitState() *os.ProcessState {
	if m.Running() || m.cmd == nil {
		return nil
	}
	return m.cmd.ProcessState
}

// PID is the process id of m's etcd (0 before it started).
func (m *Member) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill stops m hard, like pulling the plug, and waits for it to exit.
func (c *Cluster) Kill(m *Member) {
	c.t.Helper()
	if !m.Running() {
		return
	}
	m.cmd.Process.Kill() // by PID, ours only
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("etcd %s (pid %d) did not exit after SIGKILL", m.Name, m.cmd.Process.Pid)
	}
}

// Wipe deletes m's data dir, as reprovisioning the node does.
func (c *Cluster) Wipe(m *Member) {
	c.t.Helper()
	if err := os.RemoveAll(m.DataDir); err != nil {
		c.t.Fatal(err)
	}
}

// StopAll kills every member (by PID); on failure it logs their last lines.
func (c *Cluster) StopAll() {
	for _, m := range c.Members {
		if m.Running() {
			m.cmd.Process.Kill()
			<-m.done
		}
	}
	if c.t.Failed() {
		for _, m := range c.Members {
			c.t.Logf("last lines of %s's log:\n%s", m.Name, Tail(m.LogPath, 15))
		}
	}
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Endpoints are the client URLs of the given members (all when none given).
func (c *Cluster) Endpoints(members ...*Member) []string {
	if len(members) == 0 {
		members = c.Members
	}
	var out []string
	for _, m := range members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a raw etcd client (admin certificate) for the given
// members only, closed by t.Cleanup.
func (c *Cluster) Client(members ...*Member) *clientv3.Client {
	c.t.Helper()
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(members...),
		TLS:         c.TLS,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c.ClientNS != "" {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return netns.Dialer(netns.Path(c.ClientNS))(ctx, "tcp", addr)
		})}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitReadable waits until m answers a linearizable read.
func (c *Cluster) WaitReadable(m *Member, timeout time.Duration) {
	c.t.Helper()
	if err := c.waitReadable(m, timeout); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) waitReadable(m *Member, timeout time.Duration) error {
	c.t.Helper()
	cli := c.Client(m)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if !m.Running() {
			return fmt.Errorf("etcd %s exited: %v\n%s", m.Name, m.cmd.ProcessState, Tail(m.LogPath, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd %s not readable after %v: %v", m.Name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Etcdctl runs etcdctl (API 3, admin certificate) against the given
// members and returns its standard output: an independent view that does
// not go through the code under test.
func (c *Cluster) Etcdctl(via []*Member, args ...string) []byte {
	c.t.Helper()
	args = append([]string{"--endpoints", strings.Join(c.Endpoints(via...), ","), "--cacert", c.CAFile,
		"--cert", c.ClientCert, "--key", c.ClientKey, "--command-timeout", "5s"}, args...)
	name := "etcdctl"
	if c.ClientNS != "" {
		name, args = "ip", append([]string{"netns", "exec", c.ClientNS, "etcdctl"}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(EnvWithoutEtcd(), "ETCDCTL_API=3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// StoreSection is the `store:` section of a flint config on this cluster:
// backend (etcd, or bolt for the destination of a migration), the
// endpoints, the CA and admin client files, keyFile as
// store.encryption_key_file, and prefix (left out when "").
func (c *Cluster) StoreSection(backend, prefix, keyFile string) string {
	s := fmt.Sprintf("store:\n  backend: %s\n  endpoints: [%s]\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  encryption_key_file: %s\n",
		backend, strings.Join(c.Endpoints(), ", "), c.CAFile, c.ClientCert, c.ClientKey, keyFile)
	if prefix != "" {
		s += "  prefix: " + prefix + "\n"
	}
	return s
}

// EncryptionKeyFile writes a random 32-byte store.encryption_key_file (0600)
// for configs on this cluster and returns its path; every call makes a new
// key, so instances meant to share the PKI share one file.
func (c *Cluster) EncryptionKeyFile() string {
	c.t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		c.t.Fatal(err)
	}
	f, err := os.CreateTemp(c.Dir, "store-*.key")
	if err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	WriteFile(c.t, f.Name(), key)
	return f.Name()
}
