package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

// TestMain lets a test run this binary as the flint command, in a process
// of its own (cliProcess).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("FLINT_TEST_AS_CLI"); ok {
		os.Args = append([]string{"flint"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cliProcess prepares flint ARGS as a separate process.
func cliProcess(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLINT_TEST_AS_CLI="+strings.Join(args, "\n"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// served is a flint serve process a test started.
type served struct {
	stderr *lockedBuffer
	stop   func() // SIGTERM by PID, and wait (at most 5 s)
}

// lockedBuffer is a log a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs flint serve in its own process until the test ends or
// stop (SIGTERM by PID) and returns once it printed its banner.
func startServe(t *testing.T, cfgFile, data string) served {
	t.Helper()
	cmd := cliProcess("serve", "--log-level", "warn", "--config", cfgFile, "--data", data)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Errorf("flint serve (pid %d) did not stop within 5 s of SIGTERM", cmd.Process.Pid)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("flint serve %s stderr:\n%s", cfgFile, stderr.String())
		}
	})
	banner := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		served := false
		for sc.Scan() {
			if !served && strings.HasPrefix(sc.Text(), "flint "+version+" serving") {
				served = true
				banner <- true
			}
		}
		if !served {
			banner <- false
		}
	}()
	select {
	case ok := <-banner:
		if !ok {
			<-exited
			t.Fatalf("flint serve exited without serving: %v\n%s", cmd.ProcessState, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("flint serve printed no banner within 30 s\n%s", stderr.String())
	}
	t.Logf("flint serve (pid %d) serving %s from the etcd store", cmd.Process.Pid, cfgFile)
	return served{stderr: stderr, stop: stop}
}

// TestServeOnEtcdStore: two flint serve processes run on one etcd store
// (store.backend: etcd; no data directory lock between them), requests to
// one write records to etcd, and flint machines and flint reprovision, each
// in a process of its own with a data directory that holds no state, read
// and change them there.
func TestServeOnEtcdStore(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	storeSection := fmt.Sprintf("store:\n  backend: etcd\n  endpoints: [%s]\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  prefix: /flint/site-a/\n",
		strings.Join(cl.Endpoints(), ", "), cl.CAFile, cl.ClientCert, cl.ClientKey)
	config := func() (file string, httpPort int) {
		httpPort = freePort(t)
		file = loopbackConfig(t, httpPort, freePort(t), "")
		f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(storeSection); err != nil {
			t.Fatal(err)
		}
		return file, httpPort
	}
	cfgA, portA := config()
	cfgB, _ := config()
	dataA, dataB, empty := t.TempDir(), t.TempDir(), t.TempDir()
	startServe(t, cfgA, dataA)
	startServe(t, cfgB, dataB)

	get := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// An unknown MAC asks instance A for its script: A records it
	// (batched, within a moment) as a discovered machine.
	stranger := "02:00:00:00:00:99"
	code := get(fmt.Sprintf("http://127.0.0.1:%d/machines/%s/boot.ipxe", portA, stranger))
	t.Logf("script request for %s to instance A: HTTP %d", stranger, code)

	machines := func(args ...string) ([]store.Machine, string) {
		t.Helper()
		cmd := cliProcess(append([]string{"machines", "--config", cfgB, "--data", empty}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("flint machines: %v\n%s%s", err, out, stderr)
		}
		if len(args) == 0 {
			return nil, string(out)
		}
		var ms []store.Machine
		if err := json.Unmarshal(out, &ms); err != nil {
			t.Fatalf("flint machines --json: %v\n%s", err, out)
		}
		return ms, string(out)
	}
	find := func(ms []store.Machine, mac string) (store.Machine, bool) {
		for _, m := range ms {
			if m.MAC == mac {
				return m, true
			}
		}
		return store.Machine{}, false
	}
	deadline := time.Now().Add(5 * time.Second)
	var ms []store.Machine
	for {
		ms, _ = machines("--json")
		if m, ok := find(ms, stranger); ok && m.LastEvent != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flint machines (config of instance B, data directory without state) does not show %s 5 s after its request to A: %+v", stranger, ms)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m, ok := find(ms, "52:54:00:00:00:01"); !ok || !m.Known || m.Hostname != "nuc1" {
		t.Fatalf("the config's machine, synced by serve into etcd: %+v %v", m, ok)
	}
	_, table := machines()
	t.Logf("flint machines, another process, from etcd:\n%s", table)
	// --watch redraws from one connection until SIGTERM.
	watch := cliProcess("machines", "--config", cfgB, "--data", empty, "--watch", "--interval", "100ms")
	var watched strings.Builder
	watch.Stdout = &watched
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	watch.Process.Signal(syscall.SIGTERM)
	if err := watch.Wait(); err != nil {
		t.Fatalf("flint machines --watch: %v\n%s", err, watched.String())
	}
	if n := strings.Count(watched.String(), stranger); n < 3 {
		t.Fatalf("flint machines --watch drew %s %d times in 0.7 s at 100 ms:\n%s", stranger, n, watched.String())
	}
	for _, d := range []string{dataA, dataB, empty} {
		if _, err := os.Stat(filepath.Join(d, store.FileName)); !os.IsNotExist(err) {
			t.Errorf("a bolt database appeared in %s with the etcd backend: %v", d, err)
		}
	}
	// Mark nuc1 installed (as its report would), then arm it from a
	// separate flint reprovision process with instance A's config.
	st, err := store.OpenEtcd(store.EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: "/flint/site-a/"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.UpdateMachine("52:54:00:00:00:01", func(m *store.Machine) error { m.State = store.StateInstalled; return nil }); err != nil {
		t.Fatal(err)
	}
	out, err := cliProcess("reprovision", "nuc1", "--yes", "--config", cfgA, "--data", empty).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "armed") {
		t.Fatalf("flint reprovision: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if m, _, err := st.Machine("52:54:00:00:00:01"); err != nil || m.State != store.StateReprovision || !m.Rebuilding {
		t.Fatalf("nuc1 after flint reprovision: %+v %v", m, err)
	}
	if r, err := cl.Client().Get(ctx, "/flint/site-a/rebuild"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "52:54:00:00:00:01" {
		t.Fatalf("rebuild slot in etcd: %v %v", r, err)
	}
	_, table = machines()
	t.Logf("after flint reprovision nuc1 --yes:\n%s", table)
}
