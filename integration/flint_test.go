package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machine is one entry of the config's machines list.
type machine struct {
	MAC, Hostname, IP, Role string
	IPXEBinary              string
}

// The machines every test config knows.
var (
	node1 = machine{MAC: "52:54:00:aa:bb:01", Hostname: "node1", IP: "198.18.0.11", Role: "server"}
	node2 = machine{MAC: "52:54:00:aa:bb:02", Hostname: "node2", IP: "198.18.0.12", Role: "agent", IPXEBinary: "snponly.efi"}
	node3 = machine{MAC: "52:54:00:aa:bb:03", Hostname: "node3", IP: "198.18.0.13", Role: "agent"}
)

// hexhyp is iPXE's ${mac:hexhyp} form of a MAC: 52-54-00-aa-bb-01.
func hexhyp(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

// siteConfig is what a test changes in flint's YAML config.
type siteConfig struct {
	Mode            string // full or proxy
	Pool            bool
	DiscoverUnknown bool
	IPXEDir         string // "" = /usr/lib/ipxe
	AssetsDir       string // "" = DATA/assets
	Machines        []machine
}

// serverYAML is the server section of a test config: flint on iface at
// addr, HTTP on httpPort, the standard TFTP, DHCP and proxy ports.
func serverYAML(iface, addr string) string {
	return fmt.Sprintf("server:\n  interface: %s\n  address: %s\n  http_port: %d\n  tftp_port: 69\n  dhcp_port: 67\n  proxy_port: 4011\n", iface, addr, httpPort)
}

func (c siteConfig) yaml() string {
	var b strings.Builder
	b.WriteString("# written by flint's integration tests\n" + serverYAML("br0", flintIP))
	fmt.Fprintf(&b, `dhcp:
  mode: %s
  subnet: %s
  router: %s
  dns: [%s]
  domain: lab.test
  lease_time: 1h
  offer_hold: 30s
  discover_unknown: %v
`, c.Mode, subnet, routerIP, dnsIP, c.DiscoverUnknown)
	if c.Pool {
		fmt.Fprintf(&b, "  pool: {start: %s, end: %s}\n", poolStart, poolEnd)
	}
	dir := c.IPXEDir
	if dir == "" {
		dir = "/usr/lib/ipxe"
	}
	fmt.Fprintf(&b, "ipxe:\n  directory: %s\n", dir)
	b.WriteString("boot:\n  kernel: flatcar/flatcar_production_pxe.vmlinuz\n  initrd: flatcar/flatcar_production_pxe_image.cpio.gz\n")
	b.WriteString("  kernel_args: [\"console=ttyS0,115200n8\", \"flatcar.first_boot=1\"]\n")
	if c.AssetsDir != "" {
		fmt.Fprintf(&b, "  assets_dir: %s\n", c.AssetsDir)
	}
	b.WriteString("cluster:\n  install_mode: live\n") // no installer step: the tests boot from RAM
	b.WriteString("machines:\n")
	for _, m := range c.Machines {
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s", m.MAC, m.Hostname, m.IP, m.Role)
		if m.IPXEBinary != "" {
			fmt.Fprintf(&b, ", ipxe_binary: %s", m.IPXEBinary)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// Flint is a running `flint serve` in the lab's server namespace.
type Flint struct {
	*Proc
	ConfigPath string
	DataDir    string
}

// WriteConfig stores the config in the lab directory and returns its path.
func (l *Lab) WriteConfig(t testing.TB, c siteConfig) string {
	return l.writeFile(t, "flint.yaml", c.yaml(), 0o644)
}

// StartFlint runs bin/flint serve in the server namespace and waits until
// /healthz answers 200 (at most 10 s).
func (l *Lab) StartFlint(t testing.TB, configPath, dataDir string) *Flint {
	t.Helper()
	return l.StartFlintIn(t, l.Srv, flintHTTP, configPath, dataDir)
}

// StartFlintIn runs bin/flint serve in namespace ns and waits until
// base/healthz answers 200 there (at most 10 s).
func (l *Lab) StartFlintIn(t testing.TB, ns, base, configPath, dataDir string) *Flint {
	t.Helper()
	l.mu.Lock()
	n := 0
	for _, p := range l.procs {
		if strings.HasPrefix(p.Name, "flint") {
			n++
		}
	}
	l.mu.Unlock()
	p := l.Start(t, ns, fmt.Sprintf("flint#%d", n+1), flintBin, "serve", "--config", configPath, "--data", dataDir, "--log-format", "text", "--log-level", "debug")
	f := &Flint{Proc: p, ConfigPath: configPath, DataDir: dataDir}
	start := time.Now()
	err := eventually(10*time.Second, 100*time.Millisecond, func() error {
		if f.Exited() {
			return fmt.Errorf("flint exited during start-up: %v", f.Cmd.ProcessState)
		}
		r := l.Run(ns, 3*time.Second, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "1", base+"/healthz")
		if strings.TrimSpace(r.Stdout) != "200" {
			return fmt.Errorf("GET /healthz: %q %v", r.Stdout, r.Err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not become healthy: %v", p.Name, err)
	}
	l.logf("%s healthy after %v", p.Name, time.Since(start).Round(time.Millisecond))
	return f
}

// API asks the running flint's admin API over its socket (DATA/flint.sock),
// as the CLI does; code is the HTTP status.
func (f *Flint) API(l *Lab, path string) (code string, r Result) {
	return l.Curl("", "--unix-socket", filepath.Join(f.DataDir, "flint.sock"), "http://flint"+path)
}

// Leases is every lease flint has on record (GET /api/v1/leases over its
// admin socket), MAC by address; one address on record twice is an error.
func (f *Flint) Leases(l *Lab) (map[string]string, error) {
	code, r := f.API(l, "/api/v1/leases")
	if code != "200" {
		return nil, fmt.Errorf("GET /api/v1/leases: status %s\n%s", code, r)
	}
	var recs []struct{ IP, MAC string }
	if err := json.Unmarshal([]byte(r.Stdout), &recs); err != nil {
		return nil, fmt.Errorf("/api/v1/leases is not a JSON array of leases: %v\n%s", err, r.Stdout)
	}
	out := make(map[string]string, len(recs))
	for _, le := range recs {
		if prev, dup := out[le.IP]; dup && prev != le.MAC {
			return nil, fmt.Errorf("two leases of %s on record: %s and %s", le.IP, prev, le.MAC)
		}
		out[le.IP] = le.MAC
	}
	return out, nil
}

// Stop sends SIGTERM and requires a clean exit 0 within 10 s.
func (f *Flint) Stop(t testing.TB) {
	t.Helper()
	f.Signal(syscall.SIGTERM)
	code, ok := f.Wait(10 * time.Second)
	if !ok {
		t.Fatalf("%s did not exit within 10 s of SIGTERM", f.Name)
	}
	if code != 0 {
		t.Errorf("%s exited %d after SIGTERM, want 0 (%v)", f.Name, code, f.Cmd.ProcessState)
	}
}

// Kill sends SIGKILL (a crash: no shutdown code runs) and waits for the process to go.
func (f *Flint) Kill(t testing.TB) {
	t.Helper()
	f.Signal(syscall.SIGKILL)
	if _, ok := f.Wait(5 * time.Second); !ok {
		t.Fatalf("%s survived SIGKILL", f.Name)
	}
}

// ipxeCopy makes a private copy of the iPXE binaries (so TFTP escape tests
// have something outside the served directory to try to reach).
func ipxeCopy(t *testing.T, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ipxe.efi", "undionly.kpxe", "snponly.efi"} {
		b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", f))
		if err != nil {
			unavailable(t, "iPXE binaries: %v (Debian package ipxe)", err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
