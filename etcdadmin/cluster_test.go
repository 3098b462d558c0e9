package etcdadmin

// A real 3-member TLS etcd cluster on loopback for the tests: Debian 12's etcd
// 3.4 (/usr/bin/etcd), certificates from flint's own pki package.
//
// Addresses: pki refuses loopback node IPs, so no pki certificate can name
// 127.0.0.2-4, and peer certificates (pki.EtcdPeer) carry only the node IP.
// The only loopback address in a pki certificate is the 127.0.0.1 SAN of
// server certificates. So all members listen on 127.0.0.1 with kernel-chosen
// ports, and each member's server certificate (serverAuth + clientAuth) also
// serves as its peer certificate: etcd checks a peer's certificate against
// the address it connects to and from, which is 127.0.0.1. The node IPs in
// the certificates (198.18.0.11-13, a benchmarking range) are never used.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
	"github.com/flint-boot/flint/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const installHint = "apt-get install -y --no-install-recommends etcd-server etcd-client"

// requireEtcd skips the test when etcd or etcdctl is missing, except in CI
// (CI=true) where that must fail instead of silently testing nothing.
func requireEtcd(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("install it with %q (as root) to run this test", installHint), "%s not found", bin)
		}
	}
}

type testMember struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string

	certFile, keyFile string // server certificate, also used for peering

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

type testCluster struct {
	t              *testing.T
	dir            string
	caFile         string
	adminCert      string
	adminKey       string
	tls            *tls.Config
	members        []*testMember
	initialCluster string // as first bootstrapped
	healthyAt      time.Time
}

// newTestCluster starts three members and waits until all serve linearizable reads.
func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	requireEtcd(t)
	dir := t.TempDir()
	p, err := pki.Open(filepath.Join(dir, "pki"), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, dir: dir, caFile: filepath.Join(dir, "ca.crt")}
	writeTestFile(t, c.caFile, p.CACertPEM())
	admin, err := p.Admin()
	if err != nil {
		t.Fatal(err)
	}
	c.adminCert, c.adminKey = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	writeTestFile(t, c.adminCert, admin.CertPEM)
	writeTestFile(t, c.adminKey, admin.KeyPEM)
	if c.tls, err = TLSConfig(p.CACertPEM(), admin.CertPEM, admin.KeyPEM); err != nil {
		t.Fatal(err)
	}

	var initial []string
	for i := range 3 {
		m := &testMember{name: fmt.Sprintf("n%d", i+1)}
		m.clientURL = fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
		m.peerURL = fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
		m.dataDir = filepath.Join(dir, m.name+".etcd")
		m.logPath = filepath.Join(dir, m.name+".log")
		server, err := p.EtcdServer(pki.Node{Name: m.name, IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(server.Cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			t.Fatalf("server certificate of %s lacks the 127.0.0.1 SAN this cluster relies on: %v", m.name, server.Cert.IPAddresses)
		}
		m.certFile, m.keyFile = filepath.Join(dir, m.name+"-server.crt"), filepath.Join(dir, m.name+"-server.key")
		writeTestFile(t, m.certFile, server.CertPEM)
		writeTestFile(t, m.keyFile, server.KeyPEM)
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.initialCluster = strings.Join(initial, ",")
	t.Cleanup(c.stopAll)

	start := time.Now()
	for _, m := range c.members {
		c.start(m, c.initialCluster, "new")
	}
	for _, m := range c.members {
		c.waitReadable(m, 20*time.Second)
	}
	c.healthyAt = time.Now()
	t.Logf("3-member cluster healthy after %v", c.healthyAt.Sub(start).Round(time.Millisecond))
	return c
}

// settle waits until the members have been connected to each other for 5 s:
// before that etcd's --strict-reconfig-check refuses membership changes with
// "unhealthy cluster" (PrepareRejoin retries). A real cluster is older; a test
// that measures the rebuild itself waits this out first.
func (c *testCluster) settle() {
	if d := time.Until(c.healthyAt.Add(5500 * time.Millisecond)); d > 0 {
		c.t.Logf("waiting %v for the peer connections to be 5 s old", d.Round(time.Millisecond))
		time.Sleep(d)
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// could take it before etcd binds it; that is unlikely enough for a test.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs etcd for m with an existing or empty data dir.
func (c *testCluster) start(m *testMember, initialCluster, state string) {
	c.t.Helper()
	if m.running() {
		c.t.Fatalf("%s is already running", m.name)
	}
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== start %s state=%s initial-cluster=%s\n", m.name, state, initialCluster)
	cmd := exec.Command("etcd",
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "flint-etcdadmin-test",
		"--cert-file", m.certFile, "--key-file", m.keyFile,
		"--trusted-ca-file", c.caFile, "--client-cert-auth=true",
		"--peer-cert-file", m.certFile, "--peer-key-file", m.keyFile, // see the top of this file
		"--peer-trusted-ca-file", c.caFile, "--peer-client-cert-auth=true",
		"--logger", "zap", "--log-outputs", "stderr",
	)
	cmd.Env = envWithoutEtcd()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (e.g. -timeout), take etcd with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start etcd %s: %v", m.name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	done := m.done
	go func() {
		cmd.Wait()
		close(done)
	}()
}

// envWithoutEtcd drops ETCD_* variables so that the host cannot change the
// members' configuration.
func envWithoutEtcd() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD") {
			env = append(env, kv)
		}
	}
	return env
}

func (m *testMember) running() bool {
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

// kill stops m hard, like pulling the plug, and waits for it to exit.
func (c *testCluster) kill(m *testMember) {
	c.t.Helper()
	if !m.running() {
		return
	}
	m.cmd.Process.Kill() // by PID, ours only
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("etcd %s (pid %d) did not exit after SIGKILL", m.name, m.cmd.Process.Pid)
	}
}

// wipe deletes m's data dir, as reprovisioning the node does.
func (c *testCluster) wipe(m *testMember) {
	c.t.Helper()
	if err := os.RemoveAll(m.dataDir); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) stopAll() {
	for _, m := range c.members {
		if m.running() {
			m.cmd.Process.Kill()
			<-m.done
		}
	}
	if c.t.Failed() {
		for _, m := range c.members {
			c.t.Logf("last lines of %s's log:\n%s", m.name, tail(m.logPath, 15))
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// client returns a raw etcd client for the given members only.
func (c *testCluster) client(members ...*testMember) *clientv3.Client {
	c.t.Helper()
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.clientURL)
	}
	cli, err := newClient(endpoints, c.tls)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// admin returns an Admin for all three members.
func (c *testCluster) admin() *Admin {
	c.t.Helper()
	var endpoints []string
	for _, m := range c.members {
		endpoints = append(endpoints, m.clientURL)
	}
	a, err := New(endpoints, c.tls, slogForTest(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

// waitReadable waits until m answers a linearizable read.
func (c *testCluster) waitReadable(m *testMember, timeout time.Duration) {
	c.t.Helper()
	cli := c.client(m)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if !m.running() {
			c.t.Fatalf("etcd %s exited: %v\n%s", m.name, m.cmd.ProcessState, tail(m.logPath, 15))
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd %s not readable after %v: %v", m.name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctlMember is a member as etcdctl prints it: an independent view of the
// membership, not going through the code under test.
type ctlMember struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// etcdctlMembers runs `etcdctl member list` against the given members.
func (c *testCluster) etcdctlMembers(via ...*testMember) []ctlMember {
	c.t.Helper()
	out := c.etcdctl(via, "member", "list", "-w", "json")
	var resp struct {
		Members []ctlMember `json:"members"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		c.t.Fatalf("parse etcdctl member list: %v\n%s", err, out)
	}
	return resp.Members
}

func (c *testCluster) etcdctl(via []*testMember, args ...string) []byte {
	c.t.Helper()
	var endpoints []string
	for _, m := range via {
		endpoints = append(endpoints, m.clientURL)
	}
	args = append([]string{"--endpoints", strings.Join(endpoints, ","), "--cacert", c.caFile,
		"--cert", c.adminCert, "--key", c.adminKey, "--command-timeout", "5s"}, args...)
	cmd := exec.Command("etcdctl", args...)
	cmd.Env = append(envWithoutEtcd(), "ETCDCTL_API=3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// memberSummary is a stable description of a membership for comparisons.
func memberSummary(members []ctlMember) string {
	var parts []string
	for _, m := range members {
		parts = append(parts, strconv.FormatUint(m.ID, 16)+"/"+m.Name+"/"+strings.Join(m.PeerURLs, ","))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func slogForTest(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writer puts a key every 50 ms and records the longest stretch without a
// successful write: a lost quorum shows up as a long gap.
type writer struct {
	mu       sync.Mutex
	ok, fail int
	maxGap   time.Duration
	lastErr  error
	stop     context.CancelFunc
	done     chan struct{}
}

func startWriter(cli *clientv3.Client) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				w.record(time.Since(last), nil, false)
				return
			case <-tick.C:
			}
			opCtx, opCancel := context.WithTimeout(ctx, time.Second)
			_, err := cli.Put(opCtx, "writer/"+strconv.Itoa(i%10), strconv.Itoa(i))
			opCancel()
			if ctx.Err() != nil {
				continue // stopping; not a failure of the cluster
			}
			now := time.Now()
			w.record(now.Sub(last), err, true)
			if err == nil {
				last = now
			}
		}
	}()
	return w
}

func (w *writer) record(gap time.Duration, err error, counted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxGap = max(w.maxGap, gap)
	if !counted {
		return
	}
	if err != nil {
		w.fail++
		w.lastErr = err
	} else {
		w.ok++
	}
}

func (w *writer) finish() (ok, fail int, maxGap time.Duration, lastErr error) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, w.fail, w.maxGap, w.lastErr
}
