// Package vlab is flint's virtual lab: a network namespace with a bridge,
// flint serving DHCP, TFTP, HTTP and HTTPS on it, and QEMU machines that boot
// from the network through tap devices on the bridge. The e2e tests and
// `make lab` (cmd/flint-lab) share it. flint's admin API is read through its
// Unix socket (Admin); an Impostor namespace can stand in for a machine that
// is off.
//
// Everything lives inside one namespace (and the impostor's, linked to the
// bridge): the bridge, the taps, flint and the QEMU processes (started with
// `ip netns exec`), so the host's own network is never touched. Only 198.18.0.0/15 addresses are used and nothing is routed.
package vlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The lab network.
const (
	Bridge    = "br0"
	FlintIP   = "198.18.0.1"
	Subnet    = "198.18.0.0/24"
	HTTPPort  = 8080
	HTTPSPort = 8443
)

// FlintURL is flint's plain HTTP base URL inside the lab (firmware, iPXE,
// the pointer config); FlintHTTPSURL its HTTPS one (configs, node reports).
var (
	FlintURL      = fmt.Sprintf("http://%s:%d", FlintIP, HTTPPort)
	FlintHTTPSURL = fmt.Sprintf("https://%s:%d", FlintIP, HTTPSPort)
)

// Network is the lab's namespace with its bridge and one tap per machine.
type Network struct {
	NS   string   // namespace name, always starting with "flt-"
	Taps []string // tap devices on the bridge
}

// CreateNetwork makes namespace ns with bridge br0 at FlintIP and the given
// taps attached to it. On error it removes what it made.
func CreateNetwork(ns string, taps []string) (*Network, error) {
	if !strings.HasPrefix(ns, "flt-") {
		return nil, fmt.Errorf("namespace %q: lab namespaces are named flt-...", ns)
	}
	if err := ipCmd("netns", "add", ns); err != nil {
		return nil, err
	}
	n := &Network{NS: ns, Taps: taps}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", Bridge, "type", "bridge"},
		{"-n", ns, "addr", "add", FlintIP + "/24", "dev", Bridge},
		{"-n", ns, "link", "set", Bridge, "up"},
	}
	for _, tap := range taps {
		// Persistent taps, so QEMU (run in the namespace) only opens them.
		steps = append(steps,
			[]string{"-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"},
			[]string{"-n", ns, "link", "set", tap, "master", Bridge, "up"})
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			n.Destroy()
			return nil, err
		}
	}
	// No IPv6 router solicitations or DAD on the lab links: nothing answers them.
	_ = n.Exec(5*time.Second, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
	return n, nil
}

// Destroy deletes the namespace, and with it the bridge and the taps. The
// processes in it must have been stopped first (a running QEMU keeps its tap).
func (n *Network) Destroy() error {
	return ipCmd("netns", "del", n.NS)
}

// Exists reports whether the namespace is still there.
func (n *Network) Exists() bool {
	_, err := os.Stat("/run/netns/" + n.NS)
	return err == nil
}

// Command builds a command that runs inside the namespace.
func (n *Network) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

// Exec runs a short command in the namespace and returns an error with its
// output when it fails or outlives timeout.
func (n *Network) Exec(timeout time.Duration, name string, args ...string) error {
	_, err := n.Output(timeout, name, args...)
	return err
}

// Output runs a short command in the namespace and returns its stdout.
func (n *Network) Output(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v", timeout)
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("[%s] %s %s: %v: %s", n.NS, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
