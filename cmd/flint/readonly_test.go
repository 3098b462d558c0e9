package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/pki"
)

// A MAC of the embedded example cluster.
const exampleMAC = "02:00:0a:00:00:3c"

// filesUnder lists everything below dir (relative paths), directories too.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenderWithoutPKICreatesNothing(t *testing.T) {
	t.Run("empty --data: error names the PKI directory, nothing written", func(t *testing.T) {
		data := t.TempDir()
		_, _, err := runCLI(t, "render", "--mac", exampleMAC, "--data", data)
		if err == nil {
			t.Fatal("render succeeded without a PKI")
		}
		for _, want := range []string{"no PKI: " + filepath.Join(data, "pki") + " has no ca.crt and ca.key", "flint serve --data " + data, "pass --data"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		if got := filesUnder(t, data); len(got) > 0 {
			t.Fatalf("render created %v", got)
		}
	})
	t.Run("no --data: ./flint-data is not created", func(t *testing.T) {
		cwd := t.TempDir()
		t.Chdir(cwd)
		_, _, err := runCLI(t, "render", "--mac", exampleMAC)
		if err == nil || !strings.Contains(err.Error(), "no PKI: flint-data/pki has no ca.crt and ca.key (full path "+filepath.Join(cwd, "flint-data", "pki")+")") {
			t.Fatalf("want an error naming flint-data/pki, got %v", err)
		}
		if got := filesUnder(t, cwd); len(got) > 0 {
			t.Fatalf("render created %v", got)
		}
	})
	t.Run("existing PKI: renders, writes nothing, says what it made up", func(t *testing.T) {
		data := renderData(t)
		before := filesUnder(t, data)
		out, stderr, err := runCLI(t, "render", "--mac", exampleMAC, "--data", data)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `"ignition"`) {
			t.Fatalf("no Ignition config on stdout: %.200s", out)
		}
		if !strings.Contains(stderr, "note: nuc1 has no ") || !strings.Contains(stderr, "etcd/nuc1-server.crt") || !strings.Contains(stderr, "node-passwords/nuc1") {
			t.Errorf("stderr does not say which secrets were made for the output only: %s", stderr)
		}
		if after := filesUnder(t, data); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Fatalf("render changed the data directory: before %v, after %v", before, after)
		}
	})
	t.Run("pki and validate write nothing either", func(t *testing.T) {
		data := t.TempDir()
		if _, _, err := runCLI(t, "pki", "--data", data); err == nil || !strings.Contains(err.Error(), "no PKI: ") {
			t.Fatalf("pki: want a no-PKI error, got %v", err)
		}
		if _, _, err := runCLI(t, "validate", "--data", data); err != nil {
			t.Fatalf("validate: %v", err)
		}
		if _, _, err := runCLI(t, "machines", "--data", data); err == nil {
			t.Fatal("machines succeeded on an empty data directory")
		}
		if got := filesUnder(t, data); len(got) > 0 {
			t.Fatalf("read-only commands created %v", got)
		}
	})
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	// The kernel may hand out a port it just gave back: never return one
	// twice in this process (two "free" ports of one config were equal).
	givenMu.Lock()
	defer givenMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
}

var (
	givenMu sync.Mutex
	given   = map[int]bool{} // ports freePort returned
)

// loopbackConfig writes a config that serves on 127.0.0.1 with DHCP off, so
// serve needs no root; extra is appended under cluster:.
func loopbackConfig(t *testing.T, httpPort, httpsPort int, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`server:
  address: 127.0.0.1
  listen: 127.0.0.1
  http_port: %d
  https_port: %d
  tftp_port: %d
dhcp:
  mode: "off"
  subnet: 198.18.0.0/24
ipxe:
  directory: %s
cluster:
  name: test
  install_mode: live
%smachines:
  - {mac: '52:54:00:00:00:01', hostname: nuc1, ip: 198.18.0.11, role: server}
`, httpPort, httpsPort, freePort(t), dir, extra)
	f := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// brokenProfiles is a profiles_dir whose server profile does not render.
func brokenProfiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.yaml"), []byte("variant: flatcar\nversion: 1.1.0\nstorage: {files: [{path: relative/path}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFailedServeLeavesNoPKI(t *testing.T) {
	t.Run("HTTP port busy", func(t *testing.T) {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		f := loopbackConfig(t, busy.Addr().(*net.TCPAddr).Port, freePort(t), "")
		data := filepath.Join(t.TempDir(), "data")
		_, _, err = runCLI(t, "serve", "--log-level", "error", "--config", f, "--data", data)
		if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "change server.http_port in "+f) {
			t.Fatalf("want an error naming the busy %s and the field to change, got %v", busy.Addr(), err)
		}
		if _, err := os.Stat(filepath.Join(data, "pki")); !os.IsNotExist(err) {
			t.Fatalf("a failed serve left %s/pki behind: %v", data, filesUnder(t, data))
		}
	})
	t.Run("profile that does not render", func(t *testing.T) {
		f := loopbackConfig(t, freePort(t), freePort(t), "  profiles_dir: "+brokenProfiles(t)+"\n")
		data := filepath.Join(t.TempDir(), "data")
		_, _, err := runCLI(t, "serve", "--log-level", "error", "--config", f, "--data", data)
		if err == nil || !strings.Contains(err.Error(), "1 machine config does not render") || !strings.Contains(err.Error(), "server.yaml") {
			t.Fatalf("want a render failure, got %v", err)
		}
		if _, err := os.Stat(filepath.Join(data, "pki")); !os.IsNotExist(err) {
			t.Fatalf("a failed serve left %s/pki behind: %v", data, filesUnder(t, data))
		}
	})
}

func TestFailedServeKeepsExistingPKI(t *testing.T) {
	data := t.TempDir()
	if _, err := pki.Open(filepath.Join(data, "pki"), time.Now, nil); err != nil {
		t.Fatal(err)
	}
	before := filesUnder(t, filepath.Join(data, "pki"))
	key, err := os.ReadFile(filepath.Join(data, "pki", "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := loopbackConfig(t, freePort(t), freePort(t), "  profiles_dir: "+brokenProfiles(t)+"\n")
	if _, _, err := runCLI(t, "serve", "--log-level", "error", "--config", f, "--data", data); err == nil {
		t.Fatal("serve started with a profile that does not render")
	}
	after, err := os.ReadFile(filepath.Join(data, "pki", "ca.key"))
	if err != nil || string(after) != string(key) {
		t.Fatalf("a failed serve removed or replaced the existing CA key (err %v)", err)
	}
	// It may have issued certificates into it, but removed nothing.
	have := map[string]bool{}
	for _, f := range filesUnder(t, filepath.Join(data, "pki")) {
		have[f] = true
	}
	for _, f := range before {
		if !have[f] {
			t.Errorf("a failed serve removed pki/%s", f)
		}
	}
}

func TestServedPKIStays(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	f := loopbackConfig(t, freePort(t), freePort(t), "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"serve", "--log-level", "error", "--config", f, "--data", data})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()

	sc := bufio.NewScanner(pr)
	served := false
	for !served && sc.Scan() {
		served = strings.HasPrefix(sc.Text(), "flint "+version+" serving")
	}
	go io.Copy(io.Discard, pr)
	if !served {
		t.Fatalf("serve printed no banner: %v", <-done)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve stopped with %v", err)
	}
	for _, name := range []string{"ca.key", "ca.crt", "k3s-token", "admin-token"} {
		if _, err := os.Stat(filepath.Join(data, "pki", name)); err != nil {
			t.Errorf("the PKI of a serve that started is gone after it stopped: %v", err)
		}
	}
}

// A port flint may not bind gets advice about capabilities, not about
// another server using it.
func TestBindErrorAdvice(t *testing.T) {
	denied := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	err := bindError("127.0.0.1:80", "server.http_port", "site.yaml", denied)
	if !strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") || strings.Contains(err.Error(), "another server") || !strings.Contains(err.Error(), "server.http_port in site.yaml") {
		t.Errorf("permission denied: %v", err)
	}
	busy := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	if err := bindError("127.0.0.1:80", "server.http_port", "site.yaml", busy); !strings.Contains(err.Error(), "another server") {
		t.Errorf("address in use: %v", err)
	}
}
