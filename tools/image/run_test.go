package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
)

// serveUnprivileged starts the unpacked image's flint the way a container
// runtime would (uid 65532, the layer's file capabilities on the binary,
// no_new_privs off) in a network namespace of its own, serving HTTP, HTTPS
// and TFTP on ports 80, 443 and 69 of its loopback; it must bind them all,
// answer /healthz, and hold exactly CAP_NET_BIND_SERVICE and CAP_NET_RAW.
func serveUnprivileged(t *testing.T, dir, root string) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "run the test as root (sudo make test)", "starting flint as another user with file capabilities needs root")
	}
	for _, tool := range []string{"ip", "setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "install iproute2, util-linux and curl (make deps)", "%s not found", tool)
		}
	}
	// The user must reach the binary and the config through the test's
	// directories (t.TempDir makes them 0700).
	for d := dir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		if d == os.TempDir() {
			break
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ns := fmt.Sprintf("flt-img-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v %s", ns, err, out)
	}
	data := filepath.Join(root, dataPath)
	cfg := filepath.Join(dir, "serve.yaml")
	text := fmt.Sprintf(`server: {address: 127.0.0.1, listen: 127.0.0.1, http_port: 80, https_port: 443, tftp_port: 69}
dhcp: {mode: "off", subnet: 198.18.0.0/24}
ipxe: {directory: %s}
cluster: {install_mode: live}
machines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.11, role: server}
`, filepath.Join(root, ipxePath))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(flintUID)
	cmd := exec.Command("ip", "netns", "exec", ns, "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--",
		filepath.Join(root, binPath), "serve", "--config", cfg, "--data", data)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log strings.Builder
	deadline := time.After(20 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("flint exited before serving:\n%s", log.String())
			}
			log.WriteString(l + "\n")
			ready = strings.Contains(l, "listening") || strings.Contains(l, "serving")
		case <-deadline:
			t.Fatalf("flint did not say it serves within 20 s:\n%s", log.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	if b, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "5", "http://127.0.0.1:80/healthz").CombinedOutput(); err != nil {
		t.Errorf("GET /healthz on port 80: %v %s\n%s", err, b, log.String())
	}
	// The flint process itself: setpriv and ip exec it in place.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(fields["Uid"], uid+"\t") || fields["CapEff"] != fmt.Sprintf("%016x", 1<<capNetBindService|1<<capNetRaw) {
		t.Errorf("flint runs with Uid %q CapEff %q; want uid %s and exactly CAP_NET_BIND_SERVICE and CAP_NET_RAW (%016x)", fields["Uid"], fields["CapEff"], uid, 1<<capNetBindService|1<<capNetRaw)
	}
	if fi, err := os.Stat(filepath.Join(data, "pki")); err != nil || fi.Sys() == nil {
		t.Errorf("flint wrote no PKI into %s: %v", data, err)
	}
}
