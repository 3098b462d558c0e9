package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

func openEtcd(t testing.TB, cl *etcdtest.Cluster, prefix string, opts ...Option) *Etcd {
	t.Helper()
	st, err := OpenEtcd(EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: prefix}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestEtcd holds what only the etcd backend has: several clients (flint
// instances) on one store, its key layout, and a cluster that stops answering.
func TestEtcd(t *testing.T) {
	cl := etcdtest.Start(t, 1)

	t.Run("two clients lose no update", func(t *testing.T) {
		a, b := openEtcd(t, cl, "/flint/two/"), openEtcd(t, cl, "/flint/two/")
		hammer(t, []Store{a, b}, 6, 10)
	})

	t.Run("Version sees the other instances' writes", func(t *testing.T) {
		a, b := openEtcd(t, cl, "/flint/version/"), openEtcd(t, cl, "/flint/version/")
		other := openEtcd(t, cl, "/flint/version-other/")
		v0 := a.Version()
		if err := other.PutLease(Lease{IP: ip("198.18.0.7"), State: LeaseBound}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if v := a.Version(); v != v0 {
			t.Fatalf("a write under another prefix moved the version from %d to %d", v0, v)
		}
		start := time.Now()
		if _, err := b.UpdateMachine("52:54:00:00:00:01", func(m *Machine) error { m.Role = "agent"; return nil }); err != nil {
			t.Fatal(err)
		}
		for a.Version() == v0 {
			if time.Since(start) > 2*time.Second {
				t.Fatal("another client's write did not move the version within 2 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("another client's write moved the version from %d to %d after %v", v0, a.Version(), time.Since(start).Round(time.Millisecond))
	})

	t.Run("keys under the prefix, looked up by key", func(t *testing.T) {
		st := openEtcd(t, cl, "/flint/site-a/")
		mac := "52:54:00:dd:00:01"
		if err := st.SyncConfig([]KnownMachine{{MAC: mac, Hostname: "nuc1", Role: "server"}}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutLease(Lease{IP: ip("198.18.0.100"), MAC: mac, State: LeaseBound}); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordSighting(Sighting{MAC: mac, At: time.Unix(1, 0), Event: "dhcp ACK"}); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordSighting(Sighting{MAC: "02:00:00:00:00:01", At: time.Unix(2, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateMachine(mac, func(m *Machine) error { m.State = StateInstalled; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ClaimRebuild(mac, func(m *Machine) error { m.State = StateReprovision; return nil }); err != nil {
			t.Fatal(err)
		}
		// etcdctl's view, not through the code under test.
		keys := strings.Fields(string(cl.Etcdctl(nil, "get", "--prefix", "--keys-only", "/flint/site-a/")))
		want := []string{
			"/flint/site-a/discovered/000000007735940002:00:00:00:00:01",
			"/flint/site-a/discovered_count",
			"/flint/site-a/events/52:54:00:dd:00:01",
			"/flint/site-a/events/52:54:00:dd:00:01/000000003b9aca00.0000000000000001",
			"/flint/site-a/known/52:54:00:dd:00:01",
			"/flint/site-a/leases/198.18.0.100",
			"/flint/site-a/machines/02:00:00:00:00:01",
			"/flint/site-a/machines/52:54:00:dd:00:01",
			"/flint/site-a/rebuild",
		}
		if strings.Join(keys, "\n") != strings.Join(want, "\n") {
			t.Fatalf("keys in etcd:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
		}
		if v := strings.TrimSpace(string(cl.Etcdctl(nil, "get", "--print-value-only", "/flint/site-a/rebuild"))); v != mac {
			t.Fatalf("rebuild slot holds %q", v)
		}
		// Another prefix is another store.
		other := openEtcd(t, cl, "/flint/site-b/")
		if ms, err := other.Machines(); err != nil || len(ms) != 0 {
			t.Fatalf("site-b sees %d machines (%v)", len(ms), err)
		}
	})

	t.Run("sync reads only the config's machines and writes nothing unchanged", func(t *testing.T) {
		st := openEtcd(t, cl, "/flint/sync/")
		var strangers []Sighting
		for i := range 300 {
			strangers = append(strangers, Sighting{MAC: fmt.Sprintf("0a:00:00:00:%02x:%02x", i>>8, i&255), At: time.Now(), Event: "dhcp DISCOVER"})
		}
		if err := st.RecordSightings(strangers); err != nil {
			t.Fatal(err)
		}
		nuc1 := KnownMachine{MAC: "52:54:00:00:00:01", Hostname: "nuc1", Role: "server", ReservedIP: ip("198.18.0.60")}
		nuc2 := KnownMachine{MAC: "52:54:00:00:00:02", Hostname: "nuc2", Role: "agent", ReservedIP: ip("198.18.0.61")}
		if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
			t.Fatal(err)
		}
		cli := cl.Client()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		// Corrupt one stranger's record: a sync that read it would fail.
		if _, err := cli.Put(ctx, "/flint/sync/machines/0a:00:00:00:00:07", "{"); err != nil {
			t.Fatal(err)
		}
		rev := func() int64 {
			r, err := cli.Get(ctx, "/flint/sync/rebuild")
			if err != nil {
				t.Fatal(err)
			}
			return r.Header.Revision
		}
		before := rev()
		if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
			t.Fatalf("a sync read a discovered machine's record: %v", err)
		}
		if after := rev(); after != before {
			t.Errorf("a re-sync of the same config moved etcd from revision %d to %d", before, after)
		}
		nuc2.Role = "server"
		if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := st.Machine(nuc2.MAC); m.Role != "server" {
			t.Errorf("nuc2's change was not written: %+v", m)
		}
		if _, _, err := st.Machine("0a:00:00:00:00:07"); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("reading the corrupt record: %v", err)
		}
	})

	t.Run("a cluster that stops answering", func(t *testing.T) {
		// Its own cluster: this one is killed.
		dead := etcdtest.Start(t, 1)
		open := func() *Etcd {
			st, err := OpenEtcd(EtcdConfig{Endpoints: dead.Endpoints(), TLS: dead.TLS, Prefix: "/flint/dead/", Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		st, closing := open(), open()
		dead.Kill(dead.Members[0])

		// Close stops a write in flight within about a second.
		werr := make(chan error, 1)
		go func() {
			_, err := closing.UpdateMachine("52:54:00:00:00:01", func(*Machine) error { return nil })
			werr <- err
		}()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		if err := closing.Close(); err != nil {
			t.Logf("close: %v", err)
		}
		err := <-werr
		took := time.Since(start)
		t.Logf("close with a write in flight: %v; the write got %v", took.Round(time.Millisecond), err)
		if took > 2*time.Second || !errors.Is(err, ErrClosed) { // a second of grace, and room for a loaded machine
			t.Fatalf("close took %v; the write in flight got %v, want ErrClosed", took, err)
		}

		// Either a write times out, or the killed member's closed
		// connection says so sooner; both say what to check. After a
		// timeout the store is down.
		for try := 1; st.Up(); try++ {
			start = time.Now()
			_, err = st.UpdateMachine("52:54:00:00:00:01", func(*Machine) error { return nil })
			took = time.Since(start)
			t.Logf("write to a dead cluster: %v after %v", err, took.Round(time.Millisecond))
			if err == nil || !strings.Contains(err.Error(), "check that a quorum of etcd members is up and reachable") || took > 4*time.Second {
				t.Fatalf("write to a dead cluster: %v after %v", err, took)
			}
			if try == 3 {
				t.Fatal("the store is still up after three writes found no quorum")
			}
		}
		// From then on operations fail at once, as no quorum (a renewal
		// answered from memory must not wait for etcd).
		_, _, err = st.Machine("52:54:00:00:00:01")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "checked again every") {
			t.Fatalf("a read while the store is down: %v, want ErrUnavailable without waiting for etcd", err)
		}
		// The member comes back: the probe finds it, operations go through.
		dead.StartMember(dead.Members[0], dead.InitialCluster, "new")
		start = time.Now()
		for !st.Up() {
			if time.Since(start) > 20*time.Second {
				t.Fatal("the store is still down 20 s after its member came back")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := st.UpdateMachine("52:54:00:00:00:01", func(*Machine) error { return nil }); err != nil {
			t.Fatalf("a write once the member is back: %v", err)
		}
		t.Logf("up again %v after the member was restarted", time.Since(start).Round(time.Millisecond))
		dead.Kill(dead.Members[0])
		if err := st.Close(); err != nil {
			t.Logf("close: %v", err)
		}
		// Opening one fails with what to check.
		_, err = OpenEtcd(EtcdConfig{Endpoints: dead.Endpoints(), TLS: dead.TLS, Prefix: "/flint/dead/", Timeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), "store.endpoints") {
			t.Fatalf("open of a dead cluster: %v", err)
		}
		if _, err := OpenEtcd(EtcdConfig{Endpoints: dead.Endpoints(), TLS: dead.TLS, Prefix: "flint"}); err == nil || !strings.Contains(err.Error(), "must start and end with '/'") {
			t.Fatalf("open with a bad prefix: %v", err)
		}
	})
}

// BenchmarkRecord compares one UpdateMachine plus one Record (what a
// lifecycle step costs) on bbolt and on a 1-member etcd on loopback. Run it
// alone: flock /tmp/flint-heavy.lock go test -run '^$' -bench Record ./store/
func BenchmarkRecord(b *testing.B) {
	run := func(b *testing.B, st Store) {
		i := 0
		for b.Loop() {
			mac := fmt.Sprintf("52:54:00:ee:%02x:%02x", (i>>8)&255, i&255)
			i++
			if _, err := st.UpdateMachine(mac, func(m *Machine) error { m.Role = "agent"; return nil }); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Record(Sighting{MAC: mac, At: time.Now(), Event: "http script"}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bolt", func(b *testing.B) {
		st, err := OpenBolt(b.TempDir(), false)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
	b.Run("etcd", func(b *testing.B) {
		cl := etcdtest.Start(b, 1)
		run(b, openEtcd(b, cl, "/flint/bench/"))
	})
}
