package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestLookupsByKey(t *testing.T) {
	st, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Run("lease", func(t *testing.T) {
		if _, ok, err := st.Lease(ip("198.18.0.60")); ok || err != nil {
			t.Fatalf("lease of an empty store: %v %v", ok, err)
		}
		want := Lease{IP: ip("198.18.0.60"), MAC: "52:54:00:00:00:01", State: LeaseBound, Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
		if err := st.PutLease(want); err != nil {
			t.Fatal(err)
		}
		got, ok, err := st.Lease(ip("::ffff:198.18.0.60"))
		if !ok || err != nil || got.MAC != want.MAC || !got.Expires.Equal(want.Expires) {
			t.Fatalf("Lease = %+v %v %v", got, ok, err)
		}
	})
	t.Run("machine", func(t *testing.T) {
		if _, ok, err := st.Machine("52:54:00:00:00:02"); ok || err != nil {
			t.Fatalf("machine of an empty store: %v %v", ok, err)
		}
		if err := st.RecordSighting(Sighting{MAC: "52:54:00:00:00:02", At: time.Now(), IP: ip("198.18.0.9"), Event: "dhcp ACK", DHCPAddr: true}); err != nil {
			t.Fatal(err)
		}
		m, ok, err := st.Machine("52:54:00:00:00:02")
		if !ok || err != nil || m.State != StateDiscovered || m.DHCPAddr != ip("198.18.0.9") {
			t.Fatalf("Machine = %+v %v %v", m, ok, err)
		}
	})
}

// TestDiscoveredCapped: a flood of unknown MACs keeps at most the limit of
// discovered records (the oldest go, with their timelines); machines of the
// config are never evicted.
func TestDiscoveredCapped(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenBolt(dir, false, WithLimits(Limits{Discovered: 10}))
	if err != nil {
		t.Fatal(err)
	}
	known := KnownMachine{MAC: "52:54:00:aa:00:01", Hostname: "nuc1", Role: "server", ReservedIP: ip("198.18.0.60")}
	if err := st.SyncConfig([]KnownMachine{known}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50 {
		mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
		if err := st.RecordSighting(Sighting{MAC: mac, At: t0.Add(time.Duration(i) * time.Second), Event: "dhcp DISCOVER"}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, st *Bolt) {
		t.Helper()
		ms, err := st.Machines()
		if err != nil {
			t.Fatal(err)
		}
		var discovered []string
		sawKnown := false
		for _, m := range ms {
			if m.Known {
				sawKnown = true
				continue
			}
			discovered = append(discovered, m.MAC)
		}
		if !sawKnown {
			t.Error("the config's machine was evicted")
		}
		if len(discovered) != 10 || discovered[0] != "02:00:00:00:00:28" || discovered[9] != "02:00:00:00:00:31" {
			t.Fatalf("discovered after 50 sightings with a limit of 10: %v (want the newest ten, 0x28-0x31)", discovered)
		}
		if ev, _ := st.Events("02:00:00:00:00:00"); len(ev) != 0 {
			t.Errorf("an evicted machine kept its timeline: %v", ev)
		}
	}
	check(t, st)
	st.Close()
	st, err = OpenBolt(dir, false, WithLimits(Limits{Discovered: 10}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(t, st)
	// A discovered MAC that joins the config leaves the index; one that
	// leaves it is indexed again and the cap still holds.
	if err := st.SyncConfig([]KnownMachine{known, {MAC: "02:00:00:00:00:30", Hostname: "nuc9", Role: "agent", ReservedIP: ip("198.18.0.69")}}); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 60; i++ {
		if err := st.RecordSighting(Sighting{MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), At: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if m, ok, _ := st.Machine("02:00:00:00:00:30"); !ok || !m.Known {
		t.Fatalf("a machine that joined the config was evicted: %+v %v", m, ok)
	}
	ms, _ := st.Machines()
	if len(ms) != 12 {
		t.Fatalf("%d records, want 2 known + 10 discovered", len(ms))
	}
}

// TestClaimRebuildIsOneTransaction: 100 concurrent claims for different
// servers leave exactly one holder; the holder may re-claim; release frees.
func TestClaimRebuildIsOneTransaction(t *testing.T) {
	st, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var known []KnownMachine
	for i := range 100 {
		known = append(known, KnownMachine{MAC: fmt.Sprintf("52:54:00:bb:00:%02x", i), Hostname: fmt.Sprintf("s%d", i), Role: "server"})
	}
	if err := st.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	arm := func(m *Machine) error { m.State, m.Rebuilding = StateReprovision, true; return nil }
	var won atomic.Int32
	var busy atomic.Int32
	var wg sync.WaitGroup
	for _, k := range known {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.ClaimRebuild(k.MAC, arm)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrRebuildBusy):
				busy.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 || busy.Load() != 99 {
		t.Fatalf("%d claims won, %d busy; want 1 and 99", won.Load(), busy.Load())
	}
	ms, _ := st.Machines()
	var holder string
	armed := 0
	for _, m := range ms {
		if m.Rebuilding {
			armed++
			holder = m.MAC
		}
	}
	if armed != 1 {
		t.Fatalf("%d machines armed", armed)
	}
	if _, err := st.ClaimRebuild(holder, arm); err != nil {
		t.Fatalf("the holder re-claiming: %v", err)
	}
	var be *BusyError
	if _, err := st.ClaimRebuild(known[0].MAC, arm); holder != known[0].MAC && (!errors.As(err, &be) || be.Holder.MAC != holder) {
		t.Fatalf("claim while held: %v, want a BusyError naming %s", err, holder)
	}
	if _, err := st.ReleaseRebuild(holder, func(m *Machine) error { m.Rebuilding, m.State = false, StateInstalled; return nil }); err != nil {
		t.Fatal(err)
	}
	other := known[0].MAC
	if other == holder {
		other = known[1].MAC
	}
	if _, err := st.ClaimRebuild(other, arm); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

// TestWriteAfterCloseIsAnError: shutdown races requests; a late write must
// fail, not panic.
func TestWriteAfterCloseIsAnError(t *testing.T) {
	st, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.RecordSighting(Sighting{MAC: fmt.Sprintf("02:00:00:00:01:%02x", i), At: time.Now()})
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("write racing Close: %v", err)
			}
		}()
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := st.PutLease(Lease{IP: ip("198.18.0.5"), State: LeaseBound}); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutLease after Close = %v, want ErrClosed", err)
	}
	if _, err := st.UpdateMachine("02:00:00:00:00:01", func(*Machine) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateMachine after Close = %v, want ErrClosed", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSyncConfigTouchesOnlyTheConfigsMachines: a restart with many
// discovered machines in the state reads and writes only the config's
// machines (and those it listed before); an unchanged config writes nothing;
// a database from before the known index gets it on open.
func TestSyncConfigTouchesOnlyTheConfigsMachines(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenBolt(dir, false, WithLimits(Limits{Discovered: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	var strangers []Sighting
	for i := range 3000 {
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

	t.Run("unchanged config writes nothing", func(t *testing.T) {
		pages := func() int64 { s := st.db.Stats(); return s.TxStats.GetPageCount() }
		before := pages()
		if err := st.write(func(*bolt.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		empty := pages() - before // what any commit costs (the freelist)
		before = pages()
		if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
			t.Fatal(err)
		}
		if n := pages() - before; n > empty {
			t.Errorf("a re-sync of the same config allocated %d pages, an empty commit %d", n, empty)
		}
	})

	t.Run("no scan of discovered machines", func(t *testing.T) {
		// Corrupt one stranger's record: a sync that read it would fail.
		bad := []byte("0a:00:00:00:00:07")
		var good []byte
		if err := st.db.Update(func(tx *bolt.Tx) error {
			good = append(good, tx.Bucket(bucketMachines).Get(bad)...)
			return tx.Bucket(bucketMachines).Put(bad, []byte("{"))
		}); err != nil {
			t.Fatal(err)
		}
		nuc2.Role = "server"
		if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
			t.Fatalf("the sync read a discovered machine's record: %v", err)
		}
		if m, _, _ := st.Machine(nuc2.MAC); m.Role != "server" {
			t.Errorf("nuc2's change was not written: %+v", m)
		}
		if err := st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMachines).Put(bad, good) }); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a database from before the index", func(t *testing.T) {
		if err := st.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketKnown) }); err != nil {
			t.Fatal(err)
		}
		st.Close()
		st, err = OpenBolt(dir, false, WithLimits(Limits{Discovered: 5000}))
		if err != nil {
			t.Fatal(err)
		}
		// nuc1 leaves the config: only the rebuilt index can say it was in it.
		if err := st.SyncConfig([]KnownMachine{nuc2}); err != nil {
			t.Fatal(err)
		}
		if m, ok, _ := st.Machine(nuc1.MAC); !ok || m.Known || m.Hostname != "" || m.State != StateDiscovered {
			t.Errorf("nuc1 after leaving the config: %+v %v", m, ok)
		}
		if m, _, _ := st.Machine(nuc2.MAC); !m.Known {
			t.Errorf("nuc2 lost its place in the config: %+v", m)
		}
		ms, _ := st.Machines()
		if len(ms) != 3002 {
			t.Errorf("%d records, want 3,000 strangers, nuc1 and nuc2", len(ms))
		}
	})
	st.Close()
}
