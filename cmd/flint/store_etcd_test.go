package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/pki"
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

// lastLine is the last non-empty line of a command's output.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
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
	// The key that seals the PKI in etcd, as the README says to make it.
	sealKey := filepath.Join(t.TempDir(), "store.key")
	if out, err := exec.Command("sh", "-c", "head -c 32 /dev/urandom > "+sealKey+" && chmod 600 "+sealKey).CombinedOutput(); err != nil {
		t.Fatalf("make the encryption key: %v\n%s", err, out)
	}
	storeSection := cl.StoreSection("etcd", "/flint/site-a/", sealKey)
	config := func() (file string, httpPort, httpsPort int) {
		httpPort, httpsPort = freePort(t), freePort(t)
		file = loopbackConfig(t, httpPort, httpsPort, "")
		f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(storeSection); err != nil {
			t.Fatal(err)
		}
		return file, httpPort, httpsPort
	}
	cfgA, portA, tlsPortA := config()
	cfgB, portB, tlsPortB := config()
	dataA, dataB, empty := t.TempDir(), t.TempDir(), t.TempDir()
	// Read-only commands on the empty store mint no PKI there.
	for _, args := range [][]string{{"pki", "--config", cfgA, "--data", empty}, {"render", "--mac", "nuc1", "--config", cfgA, "--data", empty}} {
		out, err := cliProcess(args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no PKI") || !strings.Contains(string(out), "run flint serve with that config once") {
			t.Fatalf("flint %s on an empty etcd store: %v\n%s", args[0], err, out)
		}
		t.Logf("flint %s on the empty store: %s", args[0], strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	if out := cl.Etcdctl(nil, "get", "--prefix", "/flint/site-a/", "--keys-only"); len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("read-only commands wrote to the etcd store:\n%s", out)
	}
	// Both start at once on an empty etcd: one CA and one report key win.
	// (startServe fails the test from its goroutine with Goexit, which runs
	// the deferred close; the test goroutine then stops.)
	started := make(chan struct{})
	go func() { defer close(started); startServe(t, cfgA, dataA) }()
	startServe(t, cfgB, dataB)
	<-started
	if t.Failed() {
		t.FailNow()
	}
	t.Run("one PKI for both instances", func(t *testing.T) { checkSharedPKI(t, cl, cfgB, portA, portB, tlsPortA, tlsPortB, dataA, dataB) })
	t.Run("a data directory's PKI moves into an empty store", func(t *testing.T) {
		dataC := t.TempDir()
		old, err := pki.Open(filepath.Join(dataC, "pki"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfgC := loopbackConfig(t, freePort(t), freePort(t), "")
		f, err := os.OpenFile(cfgC, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(strings.Replace(storeSection, "/flint/site-a/", "/flint/site-c/", 1))
		f.Close()
		startServe(t, cfgC, dataC)
		ca, err := cliProcess("pki", "--config", cfgC, "--print", "ca.crt").Output()
		if err != nil || !bytes.Equal(ca, old.CACertPEM()) {
			t.Fatalf("the store's CA after a start with DATA/pki: %v\n%s\nwant DATA/pki/ca.crt:\n%s", err, ca, old.CACertPEM())
		}
		tok, err := cliProcess("pki", "--config", cfgC, "--print", "admin-token").Output()
		if err != nil || string(bytes.TrimSpace(tok)) != old.AdminToken() {
			t.Fatalf("the store's admin token is not DATA/pki's: %v", err)
		}
		t.Logf("flint serve on an empty store (prefix /flint/site-c/) with DATA/pki: the store holds DATA/pki's CA and admin token")
	})
	t.Run("a second serve on one data directory is refused", func(t *testing.T) {
		// Other ports, so that only the data directory is shared.
		cfgD := loopbackConfig(t, freePort(t), freePort(t), "")
		f, err := os.OpenFile(cfgD, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(storeSection)
		f.Close()
		out, err := cliProcess("serve", "--config", cfgD, "--data", dataA).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "another flint serve uses --data "+dataA) {
			t.Fatalf("a second flint serve on A's data directory: %v\n%s", err, out)
		}
		t.Logf("a second flint serve on A's data directory: %s", lastLine(out))
	})
	t.Run("another encryption key does not open the PKI", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.key")
		if err := os.WriteFile(other, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		text, err := os.ReadFile(cfgB)
		if err != nil {
			t.Fatal(err)
		}
		cfgOther := filepath.Join(t.TempDir(), "site.yaml")
		if err := os.WriteFile(cfgOther, bytes.ReplaceAll(text, []byte(sealKey), []byte(other)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := cliProcess("pki", "--config", cfgOther, "--print", "ca.crt").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "does not open with this encryption key: check that store.encryption_key_file") || bytes.Contains(out, []byte("BEGIN")) {
			t.Fatalf("flint pki with another key: %v\n%s", err, out)
		}
		t.Logf("flint pki with another key: %s", bytes.TrimSpace(out))
		out, err = cliProcess("validate", "--config", cfgOther, "--store").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "does not open with this encryption key") {
			t.Fatalf("flint validate --store with another key: %v\n%s", err, out)
		}
		out, err = cliProcess("validate", "--config", cfgB, "--store").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PKI: etcd /flint/site-a/pki/ opens with store.encryption_key_file") {
			t.Fatalf("flint validate --store with the right key: %v\n%s", err, out)
		}
		t.Logf("flint validate --store with the instances' key:\n%s", bytes.TrimSpace(out))
	})

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
	// With only --data, a command asks the instance of that directory over
	// its admin socket (the directory holds no flint.db: the state is in
	// etcd), as it asks a serve that holds DIR/flint.db.
	out, err := cliProcess("machines", "--json", "--data", dataA).CombinedOutput()
	var viaSocket []store.Machine
	if err != nil || json.Unmarshal(out, &viaSocket) != nil {
		t.Fatalf("flint machines --data (instance A's directory, no --config): %v\n%s", err, out)
	}
	if m, ok := find(viaSocket, stranger); !ok || m.LastEvent == "" {
		t.Fatalf("flint machines --data of instance A does not list %s from the shared store: %s", stranger, out)
	}
	// A lock no serve holds (one that stopped) is no running instance.
	stopped := t.TempDir()
	if err := os.WriteFile(filepath.Join(stopped, "serve.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{empty, stopped} {
		if out, err := cliProcess("machines", "--data", d).CombinedOutput(); err == nil || !strings.Contains(string(out), "no flint state") {
			t.Fatalf("flint machines --data of a directory without state and without a running serve: %v, want the no-state error\n%s", err, out)
		}
	}
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
	out, err = cliProcess("reprovision", "nuc1", "--yes", "--config", cfgA, "--data", empty).CombinedOutput()
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

// checkSharedPKI: two instances on one etcd serve the same CA (in the
// pointer config), a boot token from A's script is accepted by B, B's HTTPS
// certificate chains to that CA, and the PKI is in etcd, sealed, not in the
// data directories.
func checkSharedPKI(t *testing.T, cl *etcdtest.Cluster, cfgB string, portA, portB, tlsPortA, tlsPortB int, dataA, dataB string) {
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tokenRE := regexp.MustCompile(`token=([0-9a-f]{64})`)
	bootToken := func(port int) string {
		t.Helper()
		code, script := get(fmt.Sprintf("http://127.0.0.1:%d/machines/52-54-00-00-00-01/boot.ipxe", port))
		m := tokenRE.FindStringSubmatch(script)
		if code != http.StatusOK || m == nil {
			t.Fatalf("nuc1's script from port %d: HTTP %d without a boot token:\n%s", port, code, script)
		}
		return m[1]
	}
	pointerCA := func(port int, token string) (int, string) {
		t.Helper()
		code, body := get(fmt.Sprintf("http://127.0.0.1:%d/ignition?mac=52-54-00-00-00-01&token=%s", port, token))
		if code != http.StatusOK {
			return code, body
		}
		var ptr struct {
			Ignition struct {
				Security struct {
					TLS struct {
						CertificateAuthorities []struct{ Source string }
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &ptr); err != nil || len(ptr.Ignition.Security.TLS.CertificateAuthorities) != 1 {
			t.Fatalf("pointer config from port %d: %v\n%s", port, err, body)
		}
		return code, ptr.Ignition.Security.TLS.CertificateAuthorities[0].Source
	}
	tokA := bootToken(portA)
	codeB, caViaB := pointerCA(portB, tokA)
	if codeB != http.StatusOK {
		t.Fatalf("instance B refused the boot token from instance A's script: HTTP %d %s", codeB, caViaB)
	}
	_, caViaA := pointerCA(portA, bootToken(portA))
	if caViaA != caViaB || !strings.HasPrefix(caViaA, "data:") {
		t.Fatalf("the instances serve different CAs:\nA: %.120s\nB: %.120s", caViaA, caViaB)
	}
	t.Logf("boot token from A's script accepted by B: HTTP %d; both pointer configs carry the same CA (%d bytes of data URL)", codeB, len(caViaA))
	// A token B did not (and A did not) issue is still refused.
	bad := []byte(tokA)
	bad[0] ^= 1
	if code, _ := pointerCA(portB, string(bad)); code == http.StatusOK {
		t.Fatalf("instance B accepted a forged token")
	} else {
		t.Logf("a forged token at B: HTTP %d", code)
	}
	// B's HTTPS certificate chains to the CA in the pointer config.
	caPEM, err := dataURLBytes(caViaA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("the pointer config's CA is no PEM certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", tlsPortB))
	if err != nil {
		t.Fatalf("HTTPS to B verified with the shared CA: %v", err)
	}
	resp.Body.Close()
	t.Logf("HTTPS to instance B verifies against the CA both serve: HTTP %d", resp.StatusCode)
	// The PKI lives in etcd, sealed; the data directories hold none.
	for _, d := range []string{dataA, dataB} {
		if _, err := os.Stat(filepath.Join(d, "pki")); !os.IsNotExist(err) {
			t.Errorf("%s/pki exists with the etcd backend: %v", d, err)
		}
	}
	var dump struct {
		Kvs []struct {
			Key, Value []byte
			Version    int64
		}
	}
	if err := json.Unmarshal(cl.Etcdctl(nil, "get", "--prefix", "/flint/site-a/pki/", "-w", "json"), &dump); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range dump.Kvs {
		keys = append(keys, strings.TrimPrefix(string(kv.Key), "/flint/site-a/pki/"))
		if bytes.Contains(kv.Value, []byte("-----BEGIN")) || bytes.Contains(kv.Value, []byte(tokA)) || !bytes.HasPrefix(kv.Value, []byte("flint-pki-aes256gcm-v1:")) {
			t.Errorf("%s is not sealed in etcd", kv.Key)
		}
		if string(kv.Key) == "/flint/site-a/pki/ca.crt" && kv.Version != 1 {
			t.Errorf("ca.crt was written %d times", kv.Version)
		}
	}
	if !slices.Contains(keys, "ca.key") || !slices.Contains(keys, "report-key") {
		t.Fatalf("etcd lacks the CA key or the report key: %v", keys)
	}
	t.Logf("PKI in etcd under /flint/site-a/pki/, every value sealed: %s", strings.Join(keys, " "))
	// flint pki --config lists the PKI in etcd (another process, no data).
	out, err := cliProcess("pki", "--config", cfgB, "--data", t.TempDir()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ca.crt") || !strings.Contains(string(out), "etcd/nuc1-server.crt") {
		t.Fatalf("flint pki --config on the etcd store: %v\n%s", err, out)
	}
	t.Logf("flint pki --config, from etcd:\n%s", out)
	// The CA and the admin token come out of etcd with flint pki --print;
	// the admin token is one for both instances.
	ca, err := cliProcess("pki", "--config", cfgB, "--print", "ca.crt").Output()
	if err != nil || !bytes.Equal(ca, caPEM) {
		t.Fatalf("flint pki --print ca.crt: %v\n%s\nwant the pointer config's CA:\n%s", err, ca, caPEM)
	}
	tok, err := cliProcess("pki", "--config", cfgB, "--print", "admin-token").Output()
	if err != nil || len(bytes.TrimSpace(tok)) != 64 {
		t.Fatalf("flint pki --print admin-token: %v (%d bytes)", err, len(tok))
	}
	for name, port := range map[string]int{"A": tlsPortA, "B": tlsPortB} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/api/v1/machines", port), nil)
		req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(tok)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin API of instance %s with the token from etcd: HTTP %d", name, resp.StatusCode)
		}
		t.Logf("admin API of instance %s with the admin token flint pki --print read from etcd: HTTP %d", name, resp.StatusCode)
	}
}

// dataURLBytes decodes a data: URL as Ignition writes them (base64 or
// percent-encoded).
func dataURLBytes(u string) ([]byte, error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ",")
	if !ok {
		return nil, fmt.Errorf("not a data URL: %.40q", u)
	}
	if strings.HasSuffix(meta, ";base64") {
		return base64.StdEncoding.DecodeString(data)
	}
	s, err := url.PathUnescape(data)
	return []byte(s), err
}
