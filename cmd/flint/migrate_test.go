package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

// TestMigrateStore: flint serve on bolt records machines from script
// requests; flint store migrate --to etcd (refused while serve runs, and
// into a store that holds state) copies them; flint serve on etcd shows the
// same machines (flint machines --json) and timelines (its admin API);
// --to bolt into an empty data directory gives the same again. All flint
// commands run as processes of their own against a real TLS etcd.
func TestMigrateStore(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	sealKey := cl.EncryptionKeyFile()
	section := func(backend string) string {
		return cl.StoreSection(backend, "/flint/site-a/", sealKey)
	}
	httpPort := freePort(t)
	cfgBolt := loopbackConfig(t, httpPort, freePort(t), "")
	body, err := os.ReadFile(cfgBolt)
	if err != nil {
		t.Fatal(err)
	}
	// The operator's config before the switch: bolt, with the etcd store
	// it will move to prepared next to it.
	if err := os.WriteFile(cfgBolt, append(body, section("bolt")...), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgEtcd := cfgBolt + ".etcd.yaml"
	if err := os.WriteFile(cfgEtcd, append(body, section("etcd")...), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := cliProcess(args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return string(out) + stderr.String(), err
	}
	machines := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := cliProcess(append([]string{"machines", "--json"}, args...)...).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				out = append(out, ee.Stderr...)
			}
			t.Fatalf("flint machines %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	macs := []string{"02:00:00:00:00:91", "02:00:00:00:00:92", "52:54:00:00:00:01"}
	timelines := func(t *testing.T, data string) map[string][]store.Event {
		t.Helper()
		tl := map[string][]store.Event{}
		for _, mac := range macs {
			var evs []store.Event
			if err := adminCall(data, http.MethodGet, "/api/v1/machines/"+mac+"/events", nil, &evs, nil); err != nil {
				t.Fatal(err)
			}
			tl[mac] = evs
		}
		return tl
	}
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	data := t.TempDir()
	var (
		want   string                   // flint machines --json on bolt before the migration
		before map[string][]store.Event // the timelines flint serve on bolt showed
	)
	step("serve on bolt records machines, migrate is refused while it runs", func(t *testing.T) {
		startServe(t, cfgBolt, data) // stops when this step ends
		for round := range 2 {
			for _, mac := range macs {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/machines/%s/boot.ipxe", httpPort, mac))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if round == 0 {
					t.Logf("script request for %s: HTTP %d", mac, resp.StatusCode)
				}
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			before = timelines(t, data)
			if len(before[macs[0]]) >= 2 && len(before[macs[1]]) >= 2 && len(before[macs[2]]) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("flint serve on bolt did not record two requests of each machine within 5 s: %+v", before)
			}
			time.Sleep(100 * time.Millisecond)
		}
		out, err := run("store", "migrate", "--to", "etcd", "--config", cfgBolt, "--data", data)
		if err == nil || !strings.Contains(out, "stop it first") {
			t.Fatalf("migrate while flint serve holds the database: %v\n%s", err, out)
		}
		t.Logf("migrate while flint serve runs: %s", strings.TrimSpace(out))
	})
	step("migrate --to etcd", func(t *testing.T) {
		want = machines(t, "--data", data)
		t.Logf("on bolt, before the migration:\n%s", want)
		out, err := run("store", "migrate", "--to", "etcd", "--config", cfgBolt, "--data", data)
		if err != nil {
			t.Fatalf("flint store migrate --to etcd: %v\n%s", err, out)
		}
		t.Logf("flint store migrate --to etcd:\n%s", out)
		if next := "next step: set store.backend: etcd in the store section of " + cfgBolt; !strings.Contains(out, next) {
			t.Fatalf("migrate --to etcd does not say %q", next)
		}
		if !strings.Contains(out, "PKI: "+data+"/pki copied into etcd /flint/site-a/pki/") {
			t.Fatalf("migrate --to etcd does not say it copied the PKI")
		}
		// The store now has the data directory's CA and admin token.
		for file, flag := range map[string]string{"ca.crt": "ca.crt", "admin-token": "admin-token"} {
			got, err := cliProcess("pki", "--config", cfgEtcd, "--print", flag).Output()
			disk, derr := os.ReadFile(data + "/pki/" + file)
			if err != nil || derr != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(string(disk)) {
				t.Fatalf("flint pki --print %s on the etcd store after the migration is not %s/pki/%s: %v %v", flag, data, file, err, derr)
			}
		}
		out, err = run("store", "migrate", "--to", "etcd", "--config", cfgBolt, "--data", data)
		if err == nil || !strings.Contains(out, "already holds 0 leases, 3 machines, 6 timeline events") || !strings.Contains(out, "--force") {
			t.Fatalf("a second migrate into the filled etcd store: %v\n%s", err, out)
		}
		t.Logf("again without --force: %s", strings.TrimSpace(out))
	})
	step("serve on etcd shows the same machines and timelines", func(t *testing.T) {
		empty := t.TempDir()
		startServe(t, cfgEtcd, empty)
		if got := machines(t, "--config", cfgEtcd, "--data", empty); got != want {
			t.Fatalf("flint machines on etcd after the migration:\n%s\nwant (bolt before):\n%s", got, want)
		}
		if got := timelines(t, empty); !reflect.DeepEqual(got, before) {
			t.Fatalf("timelines of flint serve on etcd:\n%+v\nwant (bolt before):\n%+v", got, before)
		}
		t.Logf("the same machines (flint machines --json) and timelines (%d, %d, %d events)", len(before[macs[0]]), len(before[macs[1]]), len(before[macs[2]]))
	})
	step("migrate --to bolt into an empty data directory gives the same again", func(t *testing.T) {
		back := t.TempDir()
		out, err := run("store", "migrate", "--to", "bolt", "--config", cfgEtcd, "--data", back)
		if err != nil {
			t.Fatalf("flint store migrate --to bolt: %v\n%s", err, out)
		}
		t.Logf("flint store migrate --to bolt:\n%s", out)
		if next := "next step: set store.backend: bolt in the store section of " + cfgEtcd; !strings.Contains(out, next) {
			t.Fatalf("migrate --to bolt does not say %q", next)
		}
		if got := machines(t, "--data", back); got != want {
			t.Fatalf("flint machines on the bolt copy:\n%s\nwant:\n%s", got, want)
		}
		// The PKI came back: the same identity, private files.
		for _, file := range []string{"ca.crt", "ca.key", "k3s-token", "k3s-agent-token", "report-key", "admin-token"} {
			orig, err1 := os.ReadFile(data + "/pki/" + file)
			got, err2 := os.ReadFile(back + "/pki/" + file)
			if err1 != nil || err2 != nil || string(orig) != string(got) {
				t.Fatalf("pki/%s after the way back differs from the original (%v, %v)", file, err1, err2)
			}
			if fi, err := os.Stat(back + "/pki/" + file); err != nil || (file != "ca.crt" && fi.Mode().Perm() != 0o600) {
				t.Fatalf("pki/%s after the way back: %v %v, want 0600", file, fi.Mode(), err)
			}
		}
		// Into a data directory with another CA: refused, nothing copied.
		other := t.TempDir()
		startServe(t, cfgBolt, other).stop() // a PKI of its own
		out, err = run("store", "migrate", "--to", "bolt", "--config", cfgEtcd, "--data", other, "--force")
		if err == nil || !strings.Contains(out, "holds another CA") || !strings.Contains(out, "nothing was migrated") {
			t.Fatalf("migrate --to bolt into a data directory with another CA: %v\n%s", err, out)
		}
		t.Logf("into a data directory with another CA: %s", strings.TrimSpace(out))
		startServe(t, cfgBolt, back)
		if got := timelines(t, back); !reflect.DeepEqual(got, before) {
			t.Fatalf("timelines of flint serve on the bolt copy:\n%+v\nwant:\n%+v", got, before)
		}
		t.Log("the same machines and timelines again")
	})
}

// TestMigrateLargeInterrupted: 10,000 machines with three timeline events
// each go from bolt to etcd with progress on stderr (timed); a second copy
// (--force) interrupted by SIGINT stops within a second and leaves the etcd
// store marked incomplete: flint machines refuses it, migrate asks for
// --force, and with --force it completes.
func TestMigrateLargeInterrupted(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	sealKey := cl.EncryptionKeyFile()
	const n = 10000
	data := t.TempDir()
	st, err := store.OpenBolt(data, false, store.WithLimits(store.Limits{Discovered: n}))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	for i := 0; i < n; i += 1000 {
		var ss []store.Sighting
		for j := i; j < i+1000; j++ {
			for k := range 3 {
				ss = append(ss, store.Sighting{MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", j>>16, (j>>8)&0xff, j&0xff), At: at.Add(time.Duration(j*3+k) * time.Millisecond), Event: "dhcp ACK"})
			}
		}
		if err := st.RecordSightings(ss); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cfg := loopbackConfig(t, freePort(t), freePort(t), cl.StoreSection("bolt", "", sealKey))
	migrate := func(args ...string) *exec.Cmd {
		return cliProcess(append([]string{"store", "migrate", "--to", "etcd", "--config", cfg, "--data", data}, args...)...)
	}

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	step("10,000 machines to etcd with progress", func(t *testing.T) {
		start := time.Now()
		out, err := migrate().CombinedOutput()
		if err != nil || !strings.Contains(string(out), "copied 0 leases, 10000 machines, 30000 timeline events") || !strings.Contains(string(out), "flint store migrate: ") {
			t.Fatalf("migrate of %d machines: %v\n%s", n, err, out)
		}
		t.Logf("flint store migrate --to etcd of %d machines, whole process %v:\n%s", n, time.Since(start).Round(time.Millisecond), out)
	})
	step("SIGINT during a copy stops it within a second", func(t *testing.T) {
		// Again with --force; SIGINT once it reports progress.
		cmd := migrate("--force")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		var got strings.Builder
		for !strings.Contains(got.String(), "copied (") {
			k, err := stderr.Read(buf)
			got.Write(buf[:k])
			if err != nil {
				cmd.Wait()
				t.Fatalf("migrate --force ended before reporting progress: %v\n%s%s", err, stdout.String(), got.String())
			}
		}
		sent := time.Now()
		cmd.Process.Signal(os.Interrupt)
		rest, _ := io.ReadAll(stderr)
		got.Write(rest)
		err = cmd.Wait()
		took := time.Since(sent)
		if err == nil || !strings.Contains(got.String(), "interrupted") || !strings.Contains(got.String(), "marked incomplete") {
			t.Fatalf("migrate after SIGINT: %v\n%s%s", err, stdout.String(), got.String())
		}
		if took > time.Second {
			t.Fatalf("migrate took %v to stop after SIGINT", took)
		}
		t.Logf("SIGINT during the copy: exited %v later:\n%s", took.Round(time.Millisecond), got.String())
	})
	cfgEtcd := loopbackConfig(t, freePort(t), freePort(t), cl.StoreSection("etcd", "", sealKey))
	step("the interrupted store is refused by machines, serve and migrate without --force", func(t *testing.T) {
		if out, err := cliProcess("machines", "--config", cfgEtcd, "--data", t.TempDir()).CombinedOutput(); err == nil || !strings.Contains(string(out), "unfinished flint store migrate") {
			t.Fatalf("flint machines on the interrupted etcd store: %v\n%s", err, out)
		} else {
			t.Logf("flint machines on it: %s", strings.TrimSpace(string(out)))
		}
		serve := cliProcess("serve", "--config", cfgEtcd, "--data", t.TempDir())
		serve.WaitDelay = time.Second
		if out, err := serve.CombinedOutput(); err == nil || !strings.Contains(string(out), "unfinished flint store migrate") {
			t.Fatalf("flint serve on the interrupted etcd store: %v\n%s", err, out)
		} else {
			t.Logf("flint serve on it: %s", strings.TrimSpace(string(out)))
		}
		if out, err := migrate().CombinedOutput(); err == nil || !strings.Contains(string(out), "holds an unfinished migration") || !strings.Contains(string(out), "--force") {
			t.Fatalf("migrate without --force into the interrupted store: %v\n%s", err, out)
		} else {
			t.Logf("migrate without --force: %s", strings.TrimSpace(string(out)))
		}
	})
	step("migrate --force completes it", func(t *testing.T) {
		if out, err := migrate("--force").CombinedOutput(); err != nil || !strings.Contains(string(out), "10000 machines") {
			t.Fatalf("migrate --force after the interruption: %v\n%s", err, out)
		}
		if out, err := cliProcess("machines", "--config", cfgEtcd, "--data", t.TempDir()).CombinedOutput(); err != nil || strings.Count(string(out), "02:00:00:") != n {
			t.Fatalf("flint machines after migrate --force: %v, %d machines", err, strings.Count(string(out), "02:00:00:"))
		}
		t.Logf("migrate --force completed it; flint machines lists the %d machines", n)
	})
}

// movingSource is a real bolt store that gets a new sighting after its
// first dump, as a flint serve still running on an etcd source would.
type movingSource struct {
	*store.Bolt
	dumps int
}

func (m *movingSource) Dump(ctx context.Context, w io.Writer) (store.Summary, error) {
	m.dumps++
	sum, err := m.Bolt.Dump(ctx, w)
	if m.dumps == 1 {
		if err := m.RecordSighting(store.Sighting{MAC: "02:00:00:00:00:77", At: time.Now(), Event: "dhcp DISCOVER"}); err != nil {
			return sum, err
		}
	}
	return sum, err
}

// TestCopyStateNoticesAMovingSource: a source written to during the copy
// fails the migration and leaves the destination incomplete.
func TestCopyStateNoticesAMovingSource(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.RecordSighting(store.Sighting{MAC: "02:00:00:00:00:01", At: time.Now(), Event: "dhcp DISCOVER"}); err != nil {
		t.Fatal(err)
	}
	dst, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	_, err = copyState(t.Context(), side{"source", &movingSource{Bolt: b}}, side{"destination", dst}, io.Discard, time.Now())
	if err == nil || !strings.Contains(err.Error(), "source changed during the copy (now 0 leases, 2 machines, 2 timeline events, copied 0 leases, 1 machines, 1 timeline events): stop every flint serve") {
		t.Fatalf("copy from a source that moved: %v", err)
	}
	if inc, err := dst.Incomplete(); err != nil || !inc {
		t.Fatalf("destination after the failed copy: incomplete %v, %v", inc, err)
	}
	t.Log(err)
}
