package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test network: one bridge in the server namespace, flint on it, clients
// in namespaces of their own joined to the bridge by veth pairs. Only
// 198.18.0.0/15 addresses are used, and nothing is routed anywhere.
const (
	flintIP   = "198.18.0.1"
	subnet    = "198.18.0.0/24"
	routerIP  = "198.18.0.254" // dhcp.router; the dnsmasq "router" namespace in proxy mode
	dnsIP     = "198.18.0.53"
	poolStart = "198.18.0.100"
	poolEnd   = "198.18.0.199"
	httpPort  = 8080
	bridgeMAC = "02:00:c6:12:00:01"
)

var (
	flintHTTP  = fmt.Sprintf("http://%s:%d", flintIP, httpPort)
	flintHTTPS = fmt.Sprintf("https://%s:8443", flintIP) // server.https_port's default
)

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lab is one test's private network: namespaces, veths, processes and a
// transcript of every command, printed when the test fails.
type Lab struct {
	t   *testing.T
	ID  string // random, in every namespace name
	Dir string // scratch directory
	Srv string // the server namespace: bridge br0 at 198.18.0.1, flint runs here

	mu         sync.Mutex
	namespaces []string
	nveth      int
	transcript syncBuffer
	procs      []*Proc
}

// NewLab creates the server namespace with its bridge. Everything it and its
// hosts create is removed when the test ends, pass or fail.
func NewLab(t *testing.T) *Lab {
	t.Helper()
	needRoot(t)
	needBinaries(t)
	id := randHex(3)
	l := &Lab{t: t, ID: id, Dir: t.TempDir(), Srv: "flt-" + id + "-srv"}
	// Registered first, so it runs last: after every process was stopped.
	t.Cleanup(l.cleanup)
	l.addNS(t, l.Srv)
	l.mustIP(t, "-n", l.Srv, "link", "add", "br0", "address", bridgeMAC, "type", "bridge")
	l.mustIP(t, "-n", l.Srv, "addr", "add", flintIP+"/24", "dev", "br0")
	l.mustIP(t, "-n", l.Srv, "link", "set", "br0", "up")
	return l
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(&l.transcript, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (l *Lab) addNS(t testing.TB, name string) {
	t.Helper()
	l.mustIP(t, "netns", "add", name)
	l.mu.Lock()
	l.namespaces = append(l.namespaces, name)
	l.mu.Unlock()
	l.mustIP(t, "-n", name, "link", "set", "lo", "up")
	// No IPv6 chatter (router solicitations, DAD) on the test links.
	l.Run(name, 5*time.Second, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
}

func (l *Lab) cleanup() {
	t := l.t
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	nss := append([]string(nil), l.namespaces...)
	l.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i]).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", nss[i], err, out)
		}
	}
	if t.Failed() || os.Getenv("FLINT_TEST_TRANSCRIPT") != "" {
		for _, p := range procs {
			t.Logf("==== %s (%s) stdout ====\n%s", p.Name, p.state(), p.Stdout.String())
			t.Logf("==== %s stderr ====\n%s", p.Name, p.Stderr.String())
		}
		t.Logf("==== transcript of lab %s ====\n%s", l.ID, l.transcript.String())
	}
}

func (l *Lab) mustIP(t testing.TB, args ...string) {
	t.Helper()
	r := l.Run("", 10*time.Second, "ip", args...)
	if r.Err != nil {
		t.Fatalf("ip %s: %v\n%s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
}

// Host is a machine on the test network: a namespace with eth0 on the bridge.
type Host struct {
	lab  *Lab
	Name string
	NS   string
	MAC  string
}

// AddHost creates a namespace whose eth0 (with the given MAC, no address) is a port of br0.
func (l *Lab) AddHost(t testing.TB, name, mac string) *Host {
	t.Helper()
	ns := "flt-" + l.ID + "-" + name
	l.addNS(t, ns)
	l.mu.Lock()
	l.nveth++
	port := fmt.Sprintf("vp%d", l.nveth)
	l.mu.Unlock()
	l.mustIP(t, "-n", l.Srv, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.mustIP(t, "-n", l.Srv, "link", "set", port, "master", "br0", "up")
	l.mustIP(t, "-n", ns, "link", "set", "eth0", "address", mac, "up")
	return &Host{lab: l, Name: name, NS: ns, MAC: mac}
}

// SetAddress gives the host a static address (e.g. a router, or a PXE client
// that already has its lease).
func (h *Host) SetAddress(t testing.TB, cidr string) {
	t.Helper()
	h.lab.mustIP(t, "-n", h.NS, "addr", "replace", cidr, "dev", "eth0")
}

// Result is one finished command.
type Result struct {
	Cmd            string
	Stdout, Stderr string
	Err            error
	Code           int // exit status; -1 when killed or not started
	Dur            time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("$ %s\n(exit %d, %v, err %v)\n--- stdout ---\n%s\n--- stderr ---\n%s", r.Cmd, r.Code, r.Dur.Round(time.Millisecond), r.Err, clip(r.Stdout), clip(r.Stderr))
}

// clip shortens long output (atftp --trace prints a line per block) for logs.
func clip(s string) string {
	const head, tail = 3000, 1500
	if len(s) <= head+tail+100 {
		return s
	}
	return fmt.Sprintf("%s\n[... %d bytes clipped ...]\n%s", s[:head], len(s)-head-tail, s[len(s)-tail:])
}

func command(ns string, name string, args ...string) (string, []string) {
	if ns == "" {
		return name, args
	}
	return "ip", append([]string{"netns", "exec", ns, name}, args...)
}

// Run runs a command to completion under a timeout, in namespace ns ("" for
// the test's own), and records it in the transcript.
func (l *Lab) Run(ns string, timeout time.Duration, name string, args ...string) Result {
	r := runCmd(ns, timeout, name, args...)
	l.logf("%s", r.String())
	return r
}

// runCmd runs a command to completion under a timeout, in namespace ns ("" for the test's own).
func runCmd(ns string, timeout time.Duration, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bin, argv := command(ns, name, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := Result{Cmd: describe(ns, name, args), Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Code: -1, Dur: time.Since(start)}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return r
}

func describe(ns, name string, args []string) string {
	q := make([]string, 0, len(args)+1)
	for _, a := range append([]string{name}, args...) {
		if a == "" || strings.ContainsAny(a, " \t'\"$&;|<>*?()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q = append(q, a)
	}
	s := strings.Join(q, " ")
	if ns != "" {
		s = "[" + ns + "] " + s
	}
	return s
}

// Proc is a background process the test started and will stop.
type Proc struct {
	lab            *Lab
	Name           string
	Cmd            *exec.Cmd
	Stdout, Stderr *syncBuffer
	done           chan struct{}
	waitErr        error
}

// Start runs a long-lived process in namespace ns. The test's cleanup stops it
// (SIGTERM, then SIGKILL) by its PID.
func (l *Lab) Start(t testing.TB, ns, label string, name string, args ...string) *Proc {
	t.Helper()
	bin, argv := command(ns, name, args...)
	cmd := exec.Command(bin, argv...)
	// Do not wait forever for pipes a leaked grandchild may hold open.
	cmd.WaitDelay = 2 * time.Second
	// If the test binary dies (panic, -timeout), the process dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Proc{lab: l, Name: label, Cmd: cmd, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", describe(ns, name, args), err)
	}
	l.logf("started %s (pid %d): %s", label, cmd.Process.Pid, describe(ns, name, args))
	go func() {
		p.waitErr = cmd.Wait()
		l.logf("%s (pid %d) exited: %v", label, cmd.Process.Pid, cmd.ProcessState)
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end and returns its exit code
// (-1 if it was killed by a signal); ok is false on timeout.
func (p *Proc) Wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// Signal sends sig to the process (only if it still runs).
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		p.lab.logf("sending %v to %s (pid %d)", sig, p.Name, p.Cmd.Process.Pid)
		_ = p.Cmd.Process.Signal(sig)
	}
}

func (p *Proc) state() string {
	if !p.Exited() {
		return fmt.Sprintf("pid %d running", p.Cmd.Process.Pid)
	}
	return fmt.Sprintf("pid %d %v", p.Cmd.Process.Pid, p.Cmd.ProcessState)
}

// stop ends the process if it still runs: SIGTERM, then SIGKILL after 5 s.
func (p *Proc) stop() {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	if _, ok := p.Wait(5 * time.Second); ok {
		return
	}
	p.Signal(syscall.SIGKILL)
	if _, ok := p.Wait(5 * time.Second); !ok {
		p.lab.t.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.Cmd.Process.Pid)
	}
}

// writeFile writes a file in the lab's scratch directory and returns its path.
func (l *Lab) writeFile(t testing.TB, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(l.Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually polls f every interval until it returns nil or timeout passes.
func eventually(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

var errNotYet = errors.New("not yet")
