package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers for the issue-#4 proof (cluster_test.go): flint in full DHCP mode
// in the lab's server namespace, four NUCs as namespaces on its bridge, each
// booting with real clients (udhcpc, curl, Ignition), the servers running
// Debian's etcd from what Ignition laid down.

const (
	clFlatcarVersion = "4152.2.0"
	clInstallDisk    = "/dev/disk/by-id/nvme-FLINT_TEST_NUC_DISK"
	clClusterName    = "nucs"
	clIntruderMAC    = "52:54:00:c1:00:99" // not in the config: gets a pool address
	clEtcdUID        = 232                 // etcd's uid/gid on Flatcar; etcd runs as this user here too
	clBuildArch      = "x86_64"            // what iPXE fills into ${buildarch}
)

// clNodeSpec is one machine of the config.
type clNodeSpec struct {
	Name, MAC, IP, Role string
}

func clMachines() []clNodeSpec {
	return []clNodeSpec{
		{"nuc1", "52:54:00:c1:00:01", "198.18.0.11", "server"},
		{"nuc2", "52:54:00:c1:00:02", "198.18.0.12", "server"},
		{"nuc3", "52:54:00:c1:00:03", "198.18.0.13", "server"},
		{"nuc4", "52:54:00:c1:00:04", "198.18.0.14", "agent"},
	}
}

// clusterEnv is the whole lab: flint, its data, the nodes.
type clusterEnv struct {
	t        *testing.T
	lab      *Lab
	ignition string // the real Ignition client (v2)
	ipBin    string // ip(8), for the DHCP client script
	// work is the nodes' scratch tree. Unlike t.TempDir (0700) every directory
	// on the path is searchable by others: etcd runs as uid 232 and reads its
	// files below a node's root.
	work                     string
	data, assets, configPath string
	caFile                   string // flint's CA (DATA/pki/ca.crt; with ha, the one both instances serve)
	flint                    *Flint
	nodes                    []*clNode

	// ha is set by TestHACluster: two flint instances on an etcd store
	// (ha_env_test.go) serve the nodes; flint, data and configPath are then
	// instance A's. nil: TestCluster's single flint.
	ha *haEnv

	// Optional, set before start (TestAttack); the zero values are
	// TestCluster's: full DHCP mode, every machine installed to disk,
	// Debian's iPXE binaries, nothing more in the config.
	dhcpMode     string            // "" or "full": flint leases; "proxy": another server does
	installModes map[string]string // machines[].install_mode by hostname
	ipxeDir      string            // ipxe.directory; "" is /usr/lib/ipxe
	extraYAML    string            // appended to the config (security:, limits:)
}

// proxy reports whether flint runs in proxy DHCP mode (dnsmasq hands out
// the addresses).
func (e *clusterEnv) proxy() bool { return e.dhcpMode == "proxy" }

// newClusterEnv checks the prerequisites and prepares (does not start) the lab.
func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	e := newClusterWork(t)
	e.lab = NewLab(t)
	e.data = filepath.Join(e.work, "flint-data")
	e.caFile = filepath.Join(e.data, "pki", "ca.crt")
	e.configPath = filepath.Join(e.work, "flint.yaml")
	e.addNodes()
	return e
}

// newClusterWork checks the prerequisites and makes the nodes' scratch tree
// with the assets they download; the lab and the nodes come after.
func newClusterWork(t *testing.T) *clusterEnv {
	t.Helper()
	needBinaries(t)
	if os.Geteuid() != 0 {
		unavailable(t, "not root: network namespaces, Ignition's chown to uid 232 and etcd as uid 232 need root")
	}
	needTools(t, "ip", "udhcpc", "curl")
	for tool, pkg := range map[string]string{"timeout": "coreutils", "setpriv": "util-linux", "mount": "mount", "bash": "bash", "sh": "dash"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "missing program %s (Debian package %s)", tool, pkg)
		}
	}
	for _, bin := range []string{"/usr/bin/etcd", "/usr/bin/etcdctl"} {
		if _, err := os.Stat(bin); err != nil {
			unavailable(t, "%v: install Debian's etcd-server and etcd-client (scripts/install-deps.sh)", err)
		}
	}
	dir := os.Getenv("FLINT_IGNITION_BIN")
	if dir == "" {
		unavailable(t, "FLINT_IGNITION_BIN is not set (build the clients with scripts/build-ignition.sh DIR; `make test` does)")
	}
	ign := filepath.Join(dir, "ignition")
	if _, err := os.Stat(ign); err != nil {
		unavailable(t, "real Ignition client: %v (run scripts/build-ignition.sh %s)", err, dir)
	}
	ipBin, _ := exec.LookPath("ip")

	// Made before the lab, so it is removed after the lab's cleanup has
	// stopped every process (t.Cleanup runs last-in, first-out).
	work, err := os.MkdirTemp("", "flint-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &clusterEnv{t: t, ignition: ign, ipBin: ipBin, work: work}
	e.assets = filepath.Join(work, "assets")

	// The nodes download these. etcd and etcdctl are Debian's real binaries:
	// a server runs the copy Ignition wrote (and checked against flint's
	// sha512) into its root. K3s can't run here: a small stand-in.
	copyFile(t, "/usr/bin/etcd", filepath.Join(e.assets, "etcd/etcd"))
	copyFile(t, "/usr/bin/etcdctl", filepath.Join(e.assets, "etcd/etcdctl"))
	writeTestFile(t, filepath.Join(e.assets, "k3s/k3s"), []byte("#!/bin/sh\necho 'k3s stand-in of flint'\"'\"'s cluster test'\nexit 0\n"), 0o755)
	return e
}

// addNodes puts the config's machines on the lab's bridge.
func (e *clusterEnv) addNodes() {
	t, work := e.t, e.work
	for _, s := range clMachines() {
		n := &clNode{env: e, clNodeSpec: s, dir: filepath.Join(work, s.Name)}
		n.root = filepath.Join(n.dir, "root")
		n.host = e.lab.AddHost(t, s.Name, s.MAC)
		e.nodes = append(e.nodes, n)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range e.nodes {
				t.Logf("==== %s: what its clients said (DHCP, scripts, Ignition, installer, reports) ====\n%s", n.Name, n.log.String())
			}
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// yaml is flint's config: full DHCP mode on the lab bridge, a pool for
// strangers, every machine installed to disk (unless dhcpMode, installModes,
// ipxeDir or extraYAML say otherwise).
func (e *clusterEnv) yaml() string {
	return "# written by flint's cluster test (integration/cluster_test.go)\n" + serverYAML("br0", flintIP) + e.siteYAML(subnet, poolStart, poolEnd)
}

// siteYAML is the config below the server section (dhcp:, boot:, cluster:,
// machines: ...) on the segment subnet with the pool for strangers.
func (e *clusterEnv) siteYAML(subnet, poolStart, poolEnd string) string {
	mode, pool, ipxeDir := "full", fmt.Sprintf("\n  pool: {start: %s, end: %s}", poolStart, poolEnd), "/usr/lib/ipxe"
	if e.proxy() {
		mode, pool = "proxy", "" // the LAN's DHCP server owns the addresses
	}
	if e.ipxeDir != "" {
		ipxeDir = e.ipxeDir
	}
	var b strings.Builder
	fmt.Fprintf(&b, `dhcp:
  mode: %s
  subnet: %s
  router: %s
  dns: [%s]
  domain: lab.test
  lease_time: 1h
  offer_hold: 30s%s
ipxe:
  directory: %s
boot:
  assets_dir: %s
  kernel_args: ["console=ttyS0,115200n8"]
assets:
  flatcar:
    version: %s
cluster:
  name: %s
  install_mode: disk
  install_disk: %s
machines:
`, mode, subnet, routerIP, dnsIP, pool, ipxeDir, e.assets, clFlatcarVersion, clClusterName, clInstallDisk)
	for _, n := range clMachines() {
		if im := e.installModes[n.Name]; im != "" {
			fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s, install_mode: %s}\n", n.MAC, n.Name, n.IP, n.Role, im)
			continue
		}
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s}\n", n.MAC, n.Name, n.IP, n.Role)
	}
	b.WriteString(e.extraYAML)
	return b.String()
}

// start writes the config, checks it with flint validate and starts flint serve.
func (e *clusterEnv) start() {
	t := e.t
	t.Helper()
	if e.ha != nil {
		e.startHA()
		return
	}
	writeTestFile(t, e.configPath, []byte(e.yaml()), 0o644)
	if r := e.lab.Run("", 60*time.Second, flintBin, "validate", "--config", e.configPath); r.Code != 0 {
		t.Fatalf("flint validate rejects the test config:\n%s\nconfig:\n%s", r, e.yaml())
	}
	e.flint = e.lab.StartFlint(t, e.configPath, e.data)
}

// node returns the node called name.
func (e *clusterEnv) node(name string) *clNode {
	for _, n := range e.nodes {
		if n.Name == name {
			return n
		}
	}
	e.t.Fatalf("test bug: no node %s", name)
	return nil
}

func (e *clusterEnv) servers() []*clNode {
	var s []*clNode
	for _, n := range e.nodes {
		if n.Role == "server" {
			s = append(s, n)
		}
	}
	return s
}

// cli runs a flint command where an operator would: on flint's host (its
// network namespace), against the running serve's data directory.
func (e *clusterEnv) cli(args ...string) Result {
	return e.lab.Run(e.lab.Srv, 30*time.Second, flintBin, append(args, "--data", e.data)...)
}

// clMachine is what `flint machines --json` says about one machine.
type clMachine struct {
	MAC        string `json:"mac"`
	Hostname   string `json:"hostname"`
	IP         string `json:"ip"`
	State      string `json:"state"`
	LastEvent  string `json:"last_event"`
	EtcdRejoin bool   `json:"etcd_rejoin"`
	Rebuilding bool   `json:"rebuilding"`
	Known      bool   `json:"known"`
}

// httpBases are the plain HTTP base URLs of every flint serving the nodes.
func (e *clusterEnv) httpBases() []string {
	if e.ha != nil {
		return []string{e.ha.A.HTTP(), e.ha.B.HTTP()}
	}
	return []string{flintHTTP}
}

// machines runs `flint machines --json` and returns the records by hostname
// (discovered machines by MAC).
func (e *clusterEnv) machines() (map[string]clMachine, error) {
	return e.machinesIn(e.lab.Srv, e.data)
}

// machinesIn is machines asked of the flint serve of data, running in ns.
func (e *clusterEnv) machinesIn(ns, data string) (map[string]clMachine, error) {
	r := e.lab.Run(ns, 30*time.Second, flintBin, "machines", "--json", "--data", data)
	if r.Code != 0 {
		return nil, fmt.Errorf("flint machines --json: exit %d\n%s", r.Code, r)
	}
	var ms []clMachine
	if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil {
		return nil, fmt.Errorf("flint machines --json printed no JSON list: %v\n%s", err, r.Stdout)
	}
	out := map[string]clMachine{}
	for _, m := range ms {
		k := m.Hostname
		if k == "" {
			k = m.MAC
		}
		out[k] = m
	}
	return out, nil
}

// wantState checks a machine's lifecycle state in `flint machines --json`;
// with two instances, both say so.
func (e *clusterEnv) wantState(name, want string) error {
	if err := e.wantStateIn(e.lab.Srv, e.data, name, want); err != nil || e.ha == nil {
		return err
	}
	if err := e.wantStateIn(e.ha.B.NS, e.ha.B.DataDir, name, want); err != nil {
		return fmt.Errorf("instance B: %w", err)
	}
	return nil
}

func (e *clusterEnv) wantStateIn(ns, data, name, want string) error {
	ms, err := e.machinesIn(ns, data)
	if err != nil {
		return err
	}
	m, ok := ms[name]
	if !ok {
		return fmt.Errorf("flint machines --json does not list %s", name)
	}
	if m.State != want {
		return fmt.Errorf("flint machines: %s is %q (last event %q), want %q", name, m.State, m.LastEvent, want)
	}
	return nil
}

// clEvent is one entry of a machine's timeline.
type clEvent struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	IP     string    `json:"ip"`
	Detail string    `json:"detail"`
	By     string    `json:"by"` // the flint instance that recorded it (several on one store)
}

// timeline fetches GET /api/v1/machines/MAC/events over flint's admin socket.
func (e *clusterEnv) timeline(mac string) ([]clEvent, error) {
	code, r := e.flint.API(e.lab, "/api/v1/machines/"+hexhyp(mac)+"/events")
	if code != "200" {
		return nil, fmt.Errorf("GET /api/v1/machines/%s/events: %s\n%s", hexhyp(mac), code, r)
	}
	var ev []clEvent
	if err := json.Unmarshal([]byte(r.Stdout), &ev); err != nil {
		return nil, fmt.Errorf("timeline of %s is not JSON: %v\n%s", mac, err, r.Stdout)
	}
	return ev, nil
}

// findEvents returns the timeline entries named event (after since).
func findEvents(ev []clEvent, event string, since time.Time) []clEvent {
	var out []clEvent
	for _, e := range ev {
		if e.Event == event && !e.At.Before(since) {
			out = append(out, e)
		}
	}
	return out
}

func formatTimeline(ev []clEvent) string {
	var b strings.Builder
	for _, e := range ev {
		by := ""
		if e.By != "" {
			by = " (by " + e.By + ")"
		}
		fmt.Fprintf(&b, "  %s %-15s %-28s %s%s\n", e.At.Format("15:04:05.000"), e.IP, e.Event, e.Detail, by)
	}
	return b.String()
}

// runEnv runs a command to completion in namespace ns ("" for the test's
// own) with extra environment, under a timeout, and records it in the
// transcript. `ip netns exec` passes the environment on.
func (l *Lab) runEnv(ns string, env []string, timeout time.Duration, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bin, argv := command(ns, name, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := Result{Cmd: strings.TrimSpace(strings.Join(env, " ") + " " + describe(ns, name, args)), Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Code: -1, Dur: time.Since(start)}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	l.logf("%s", r.String())
	return r
}

// runParallel runs f for every node at once and returns the errors by node.
func runParallel(nodes []*clNode, f func(n *clNode) error) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(n); err != nil {
				mu.Lock()
				errs[n.Name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
