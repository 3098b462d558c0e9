package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers for the issue-#3 tests (ignition_test.go): flint serving on
// loopback, and the real Ignition clients applying what it serves into
// temporary roots, fetched over HTTP the way a PXE-booted node does.

// ignMachine is one node of the Ignition test cluster.
type ignMachine struct {
	Name, MAC, IP, Role string
}

func (m ignMachine) server() bool { return m.Role == "server" }

// The cluster every Ignition test serves: three etcd/K3s servers and an agent.
// Their addresses are only written into configs; nothing listens on them.
func ignCluster() []ignMachine {
	return []ignMachine{
		{"nuc1", "52:54:00:f1:00:01", "198.18.0.61", "server"},
		{"nuc2", "52:54:00:f1:00:02", "198.18.0.62", "server"},
		{"nuc3", "52:54:00:f1:00:03", "198.18.0.63", "server"},
		{"nuc4", "52:54:00:f1:00:04", "198.18.0.64", "agent"},
	}
}

const (
	ignDomain = "lab.test"
	ignRouter = "198.18.0.254"
	ignDNS    = "198.18.0.53"
	ignPrefix = 24
	coreUID   = 500 // the core user in the roots we prepare
	etcdUID   = 232 // etcd's uid/gid on Flatcar
	// Accept headers the clients send (notes/cluster.md).
	acceptV3     = "application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1"
	acceptLegacy = "application/vnd.coreos.ignition+json; version=2.2.0, application/vnd.coreos.ignition+json; version=1; q=0.5, */*; q=0.1"
)

// ignEnv is one test's flint: config, data and assets directories, the
// running process. It uses a Lab without namespaces (everything is on
// loopback) for process bookkeeping and the transcript printed on failure.
type ignEnv struct {
	t        *testing.T
	top      *testing.T // the test that made the env: node roots live until it ends
	lab      *Lab
	clients  string // FLINT_IGNITION_BIN
	Machines []ignMachine
	SSHKey   string
	// ProfilesDir, if set, becomes cluster.profiles_dir.
	ProfilesDir string

	Dir, Data, Assets, ConfigPath string
	httpPort, httpsPort           int
	tftpPort, dhcpPort, proxyPort int
	Base                          string // http://127.0.0.1:PORT
	flint                         *Proc
	nstart                        int
}

// needIgnitionClients returns $FLINT_IGNITION_BIN after checking that both
// clients are there (fails in CI, skips elsewhere).
func needIgnitionClients(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FLINT_IGNITION_BIN")
	if dir == "" {
		unavailable(t, "FLINT_IGNITION_BIN is not set (build the clients with scripts/build-ignition.sh DIR; `make test` does)")
	}
	for _, c := range []string{"ignition", "ignition-legacy"} {
		if _, err := os.Stat(filepath.Join(dir, c)); err != nil {
			unavailable(t, "real Ignition client: %v (run scripts/build-ignition.sh %s)", err, dir)
		}
	}
	for _, tool := range []string{"timeout", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "missing program %s (coreutils / util-linux)", tool)
		}
	}
	return dir
}

// newIgnEnv prepares (but does not start) flint for the Ignition cluster.
// It needs root: Ignition chowns files to uid 232 and the legacy client
// reads its URL from a bind-mounted /proc/cmdline.
func newIgnEnv(t *testing.T) *ignEnv {
	t.Helper()
	needBinaries(t)
	if os.Geteuid() != 0 {
		unavailable(t, "not root: the real Ignition clients chown files and the legacy one needs a private mount namespace")
	}
	clients := needIgnitionClients(t)
	l := &Lab{t: t, ID: randHex(3), Dir: t.TempDir()}
	t.Cleanup(l.cleanup) // stops flint by PID; prints its log and the transcript on failure
	e := &ignEnv{t: t, top: t, lab: l, clients: clients, Machines: ignCluster(), SSHKey: testSSHKey(t)}
	e.Dir = l.Dir
	e.Data = filepath.Join(l.Dir, "data")
	e.Assets = filepath.Join(l.Dir, "assets")
	e.ConfigPath = filepath.Join(l.Dir, "flint.yaml")
	e.httpPort, e.httpsPort = freePort(t, "tcp"), freePort(t, "tcp")
	e.tftpPort, e.dhcpPort, e.proxyPort = freePort(t, "udp"), freePort(t, "udp"), freePort(t, "udp")
	e.Base = fmt.Sprintf("http://127.0.0.1:%d", e.httpPort)
	// Small fake binaries; random content so no two tests share a hash.
	for _, a := range []string{"k3s/k3s", "etcd/etcd", "etcd/etcdctl"} {
		body := append([]byte("#!/bin/sh\n# fake "+a+" for flint's tests\nexit 0\n"), randBytes(t, 48<<10)...)
		writeTestFile(t, filepath.Join(e.Assets, a), body, 0o644)
	}
	return e
}

// Yaml is flint's config for the env's current machines.
func (e *ignEnv) Yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by flint's Ignition integration tests
server:
  address: 127.0.0.1
  listen: 127.0.0.1
  http_port: %d
  https_port: %d
  tftp_port: %d
  dhcp_port: %d
  proxy_port: %d
dhcp:
  mode: "off"
  subnet: 198.18.0.0/%d
  router: %s
  dns: [%s]
  domain: %s
boot:
  assets_dir: %s
cluster:
  name: nucs
  install_mode: live
`, e.httpPort, e.httpsPort, e.tftpPort, e.dhcpPort, e.proxyPort, ignPrefix, ignRouter, ignDNS, ignDomain, e.Assets)
	if e.SSHKey != "" {
		fmt.Fprintf(&b, "  ssh_authorized_keys: [%q]\n", e.SSHKey)
	}
	if e.ProfilesDir != "" {
		fmt.Fprintf(&b, "  profiles_dir: %s\n", e.ProfilesDir)
	}
	b.WriteString("machines:\n")
	for _, m := range e.Machines {
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s}\n", m.MAC, m.Name, m.IP, m.Role)
	}
	return b.String()
}

// WriteConfig writes Yaml() to ConfigPath.
func (e *ignEnv) WriteConfig() {
	e.t.Helper()
	writeTestFile(e.t, e.ConfigPath, []byte(e.Yaml()), 0o644)
}

// Start writes the config, runs `flint serve` and waits for /healthz.
func (e *ignEnv) Start() {
	t := e.t
	t.Helper()
	e.WriteConfig()
	e.nstart++
	e.flint = e.lab.Start(t, "", fmt.Sprintf("flint#%d", e.nstart), flintBin, "serve", "--config", e.ConfigPath,
		"--data", e.Data, "--log-format", "text", "--log-level", "debug")
	start := time.Now()
	err := eventually(15*time.Second, 50*time.Millisecond, func() error {
		if e.flint.Exited() {
			return fmt.Errorf("flint exited during start-up: %v\nstderr:\n%s", e.flint.Cmd.ProcessState, e.flint.Stderr.String())
		}
		code, _, _, err := httpGet(e.Base+"/healthz", "")
		if err != nil || code != 200 {
			return fmt.Errorf("GET /healthz: %d %v", code, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flint did not become healthy: %v", err)
	}
	e.lab.logf("flint healthy after %v", time.Since(start).Round(time.Millisecond))
}

// Stop sends SIGTERM and requires exit 0 within 10 s.
func (e *ignEnv) Stop() {
	e.t.Helper()
	p := e.flint
	p.Signal(syscall.SIGTERM)
	code, ok := p.Wait(10 * time.Second)
	if !ok {
		e.t.Fatalf("%s did not exit within 10 s of SIGTERM", p.Name)
	}
	if code != 0 {
		e.t.Errorf("%s exited %d after SIGTERM, want 0", p.Name, code)
	}
}

// Machine returns the machine called name.
func (e *ignEnv) Machine(name string) ignMachine {
	for _, m := range e.Machines {
		if m.Name == name {
			return m
		}
	}
	e.t.Fatalf("no machine %s", name)
	return ignMachine{}
}

// Fetch gets machine mac's config the way a node does, with the given
// Accept header ("" for none): its iPXE script (a fresh boot token), the
// pointer config over plain HTTP, then what the pointer names over HTTPS,
// checked against the CA the pointer carries. A non-200 answer at any step
// is returned as it is.
func (e *ignEnv) Fetch(mac, accept string) (code int, ctype string, body []byte) {
	e.t.Helper()
	code, ctype, body, err := fetchConfig(e.Base, mac, accept)
	if err != nil {
		e.t.Fatalf("fetch the config of %s: %v", mac, err)
	}
	e.lab.logf("config of %s (Accept %q): %d %s, %d bytes", mac, accept, code, ctype, len(body))
	return code, ctype, body
}

// MustFetch is Fetch that requires a 200.
func (e *ignEnv) MustFetch(mac, accept string) []byte {
	e.t.Helper()
	code, _, body := e.Fetch(mac, accept)
	if code != 200 {
		e.t.Fatalf("config of %s: %d, want 200: %s", mac, code, body)
	}
	return body
}

var scriptTokenRE = regexp.MustCompile(`ignition\.config\.url=\S*[?&]token=([0-9a-f]{64})`)

// fetchConfig is Fetch without a test: script, pointer, HTTPS.
func fetchConfig(base, mac, accept string) (int, string, []byte, error) {
	code, ctype, script, err := httpGet(base+"/machines/"+mac+"/boot.ipxe", "")
	if err != nil || code != 200 {
		// No script (an unknown MAC gets 404): ask for the config anyway, with
		// a made-up token, to see what flint answers.
		code, ctype, body, err2 := httpGet(base+"/ignition?mac="+mac+"&token="+strings.Repeat("0", 64), accept)
		return code, ctype, body, errors.Join(err, err2)
	}
	m := scriptTokenRE.FindSubmatch(script)
	if m == nil {
		return 0, "", nil, fmt.Errorf("no boot token in the iPXE script of %s:\n%s", mac, script)
	}
	code, ctype, ptr, err := httpGet(base+"/ignition?mac="+mac+"&token="+string(m[1]), accept)
	if err != nil || code != 200 {
		return code, ctype, ptr, err
	}
	var p struct {
		Ignition struct {
			Config struct {
				Replace struct{ Source string }
			}
			Security struct {
				TLS struct {
					CertificateAuthorities []struct{ Source string }
				}
			}
		}
	}
	if err := json.Unmarshal(ptr, &p); err != nil || len(p.Ignition.Security.TLS.CertificateAuthorities) != 1 {
		return 0, "", nil, fmt.Errorf("the pointer config of %s is not a pointer (%v): %s", mac, err, ptr)
	}
	if bytes.Contains(ptr, []byte("PRIVATE KEY")) {
		return 0, "", nil, fmt.Errorf("the plain-HTTP pointer of %s carries a private key", mac)
	}
	ca, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p.Ignition.Security.TLS.CertificateAuthorities[0].Source, "data:;base64,"))
	if err != nil {
		return 0, "", nil, fmt.Errorf("the pointer's CA: %w", err)
	}
	return httpsGet(p.Ignition.Config.Replace.Source, accept, ca)
}

// httpsGet is httpGet over TLS, trusting only caPEM.
func httpsGet(url, accept string, caPEM []byte) (code int, ctype string, body []byte, err error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return 0, "", nil, fmt.Errorf("no certificate in the CA PEM")
	}
	return get(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, url, accept)
}

// perDelivery matches the tokens each delivery writes into a config (after
// "Bearer " in the report header and "token=" in the installed-config URL,
// URL-escaped in data URLs).
var perDelivery = regexp.MustCompile(`(Bearer%20|token%3D|token=)[0-9a-f]{64}`)

// canonical replaces the per-delivery tokens of a config with flint's
// placeholders (what `flint render` prints), so two deliveries compare equal.
func canonical(cfg []byte) []byte {
	return perDelivery.ReplaceAllFunc(cfg, func(m []byte) []byte {
		prefix := m[:len(m)-64]
		ph := "FLINT_PER_BOOT_REPORT_TOKEN_" + strings.Repeat("X", 36)
		if !bytes.HasPrefix(prefix, []byte("Bearer")) {
			ph = "FLINT_PER_BOOT_INSTALLED_TOKEN_" + strings.Repeat("X", 33)
		}
		return append(append([]byte{}, prefix...), ph...)
	})
}

// KernelCmdline is the kernel command line flint's iPXE script gives m, with
// ${mac:hexhyp} expanded as iPXE would: where a node learns its config URL.
func (e *ignEnv) KernelCmdline(m ignMachine) string {
	t := e.t
	t.Helper()
	hex := hexhyp(m.MAC)
	code, _, body, err := httpGet(e.Base+"/machines/"+hex+"/boot.ipxe", "")
	if err != nil || code != 200 {
		t.Fatalf("GET /machines/%s/boot.ipxe: %d %v", hex, code, err)
	}
	for _, ln := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(ln, "kernel ") {
			continue
		}
		ln, _, _ = strings.Cut(ln, " && ")
		f := strings.Fields(ln)[2:] // "kernel URL args..."
		cmdline := strings.ReplaceAll(strings.Join(f, " "), "${mac:hexhyp}", hex)
		want := "ignition.config.url=" + e.Base + "/ignition?mac=" + hex + "&token="
		if !regexp.MustCompile(`(^| )` + regexp.QuoteMeta(want) + `[0-9a-f]{64}( |$)`).MatchString(cmdline) {
			t.Fatalf("the iPXE script's kernel line %q lacks %s<boot token>", ln, want)
		}
		return cmdline
	}
	t.Fatalf("no kernel line in the iPXE script of %s:\n%s", m.Name, body)
	return ""
}

// clientRun is one real-client run: where it wrote and what it said.
type clientRun struct {
	Root   string // the node's root filesystem
	Output string // all stages' output
}

// nodeWorkDir is a scratch directory for one client run. Unlike t.TempDir
// (0700) every directory on its path is searchable by others: Ignition writes
// the core user's SSH keys as that user.
func (e *ignEnv) nodeWorkDir() string {
	t := e.t
	t.Helper()
	dir, err := os.MkdirTemp("", "flint-ignition-node-")
	if err != nil {
		t.Fatal(err)
	}
	e.top.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// prepareRoot makes a node root with the minimal /etc/passwd and /etc/group
// Ignition's passwd stage needs to find the core user (Flatcar has them).
func prepareRoot(t *testing.T, root string) {
	t.Helper()
	writeTestFile(t, filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:Flatcar Admin:/home/core:/bin/bash\n"), 0o644)
	writeTestFile(t, filepath.Join(root, "etc/group"), []byte("root:x:0:\ncore:x:500:\n"), 0o644)
	writeTestFile(t, filepath.Join(root, "etc/shadow"), []byte("root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n"), 0o600)
	writeTestFile(t, filepath.Join(root, "etc/gshadow"), []byte("root:*::\ncore:!::\n"), 0o600)
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "home/core"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/core"), coreUID, coreUID); err != nil {
		t.Fatal(err)
	}
}

// v3Setup is a prepared run of the current Ignition client for one node.
type v3Setup struct {
	e          *ignEnv
	work, root string
	env        []string
}

// setupV3 prepares a fresh root and the client's environment: `-platform
// metal` reads ignition.config.url from the kernel command line, here the
// file IGNITION_KERNEL_CMDLINE_PATH names, as a PXE-booted node does.
func (e *ignEnv) setupV3(m ignMachine) *v3Setup {
	t := e.t
	t.Helper()
	work := e.nodeWorkDir()
	root := filepath.Join(work, "root")
	prepareRoot(t, root)
	sys := filepath.Join(work, "system") // no base configs from the host's /usr/lib/ignition
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	cmdline := writeTestFile(t, filepath.Join(work, "cmdline"), []byte(e.KernelCmdline(m)+"\n"), 0o644)
	return &v3Setup{e: e, work: work, root: root, env: []string{
		"IGNITION_KERNEL_CMDLINE_PATH=" + cmdline,
		"IGNITION_SYSTEM_CONFIG_DIR=" + sys,
		"IGNITION_SYSTEM_RUNTIME_CONFIG_DIR=" + sys,
		"IGNITION_SYSTEM_LOCAL_CONFIG_DIR=" + sys,
	}}
}

// stage runs one stage under timeout(1). Safe to call from any goroutine.
func (s *v3Setup) stage(name string) clientResult {
	return s.e.runClient(s.env, "timeout", "-k", "5", "90", filepath.Join(s.e.clients, "ignition"),
		"-platform", "metal", "-stage", name, "-root", s.root, "-log-to-stdout",
		"-config-cache", filepath.Join(s.work, "config.json"), "-state-file", filepath.Join(s.work, "state"),
		"-neednet", filepath.Join(s.work, "neednet"))
}

// Apply runs the current Ignition client's fetch and files stages for m into
// a fresh root.
func (e *ignEnv) Apply(m ignMachine) clientRun {
	t := e.t
	t.Helper()
	s := e.setupV3(m)
	run := clientRun{Root: s.root}
	for _, stage := range []string{"fetch", "files"} {
		r := s.stage(stage)
		run.Output += r.Output() + "\n"
		if r.Err != nil {
			t.Fatalf("ignition %s stage for %s failed:\n%s", stage, m.Name, run.Output)
		}
	}
	e.logOnFailure(m.Name+" ignition", &run)
	return run
}

// ApplyLegacy runs the legacy client (flatcar/ignition v0.36, `-oem pxe`)
// with the fetch and files stages. It reads ignition.config.url only from
// /proc/cmdline, so it runs in a private mount namespace with the node's
// command line bind-mounted there. It also checks for the core user with
// `/usr/bin/chroot ROOT /usr/bin/id core`, as on old Flatcar: the root gets a
// static busybox as /usr/bin/id, and where the host keeps chroot in /usr/sbin
// (Debian) the namespace sees it in /usr/bin through a read-only overlay.
func (e *ignEnv) ApplyLegacy(m ignMachine) clientRun {
	t := e.t
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		unavailable(t, "busybox: %v (Debian package busybox-static): the legacy client runs `chroot ROOT /usr/bin/id core`", err)
	}
	work := e.nodeWorkDir()
	root := filepath.Join(work, "root")
	prepareRoot(t, root)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(root, "usr/bin/id"), bb, 0o755)
	sys := filepath.Join(work, "system")
	oem := filepath.Join(work, "oem")
	shim := filepath.Join(work, "hostbin")
	for _, d := range []string{sys, oem, shim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := `mount --bind "$0" /proc/cmdline && shift && exec "$@"`
	if _, err := os.Stat("/usr/bin/chroot"); err != nil {
		chroot, err := exec.LookPath("chroot")
		if err != nil {
			unavailable(t, "chroot: %v (coreutils)", err)
		}
		if err := os.Symlink(chroot, filepath.Join(shim, "chroot")); err != nil {
			t.Fatal(err)
		}
		script = `mount --bind "$0" /proc/cmdline && mount -t overlay flint-legacy-ignition -o lowerdir="$1":/usr/bin /usr/bin && shift && exec "$@"`
	}
	cmdline := writeTestFile(t, filepath.Join(work, "cmdline"), []byte(e.KernelCmdline(m)+"\n"), 0o644)
	cache := filepath.Join(work, "ignition.json")
	env := []string{"IGNITION_SYSTEM_CONFIG_DIR=" + sys, "IGNITION_OEM_LOOKASIDE_DIR=" + oem}
	run := clientRun{Root: root}
	for _, stage := range []string{"fetch", "files"} {
		if stage == "fetch" {
			os.Remove(cache) // never a config cached by an earlier run
		}
		r := e.runClient(env, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, cmdline, shim,
			"timeout", "-k", "5", "90", filepath.Join(e.clients, "ignition-legacy"),
			"-oem", "pxe", "-stage", stage, "-root", root, "-log-to-stdout", "-config-cache", cache)
		run.Output += r.Output() + "\n"
		if r.Err != nil {
			t.Fatalf("ignition-legacy %s stage for %s failed:\n%s", stage, m.Name, run.Output)
		}
	}
	e.logOnFailure(m.Name+" ignition-legacy", &run)
	return run
}

func (e *ignEnv) logOnFailure(what string, run *clientRun) {
	t := e.t
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("==== %s output ====\n%s", what, run.Output)
		}
	})
}

// runClient runs a command with extra environment and records it in the transcript.
func (e *ignEnv) runClient(env []string, name string, args ...string) clientResult {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := clientResult{Result: Result{Cmd: strings.Join(env, " ") + " " + describe("", name, args), Stdout: stdout.String(),
		Stderr: stderr.String(), Err: err, Code: -1, Dur: time.Since(start)}}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
		if r.Code == 124 {
			r.Err = fmt.Errorf("timed out (exit 124 from timeout): %w", err)
		}
	}
	// The transcript gets the command; its output goes with the failure it explains.
	e.lab.logf("$ %s\n(exit %d, %v, err %v)", r.Cmd, r.Code, r.Dur.Round(time.Millisecond), r.Err)
	return r
}

type clientResult struct{ Result }

// Output is the whole run, unclipped: Ignition's error is at its end.
func (r clientResult) Output() string {
	return fmt.Sprintf("$ %s\n(exit %d, %v, err %v)\n--- stdout ---\n%s\n--- stderr ---\n%s",
		r.Cmd, r.Code, r.Dur.Round(time.Millisecond), r.Err, r.Stdout, r.Stderr)
}

// httpGet is a plain GET with an optional Accept header.
func httpGet(url, accept string) (code int, ctype string, body []byte, err error) {
	return get(&http.Client{Timeout: 10 * time.Second}, url, accept)
}

func get(c *http.Client, url, accept string) (code int, ctype string, body []byte, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, err
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	default:
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeTestFile(t *testing.T, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// testSSHKey is a fresh ed25519 public key in authorized_keys format.
func testSSHKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	for _, field := range [][]byte{[]byte("ssh-ed25519"), pub} {
		wire = binary.BigEndian.AppendUint32(wire, uint32(len(field)))
		wire = append(wire, field...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire) + " flint-test@ignition"
}

// ignitionVersion is the "ignition.version" of a config.
func ignitionVersion(t *testing.T, cfg []byte) string {
	t.Helper()
	var c struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatalf("config is not JSON: %v\n%.300s", err, cfg)
	}
	return c.Ignition.Version
}
