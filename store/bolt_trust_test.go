package store

import (
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
