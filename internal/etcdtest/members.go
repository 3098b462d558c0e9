package etcdtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// A member's process: start, state, kill, wipe.

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
