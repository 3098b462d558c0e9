package events

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

func TestRecordFromIPAttributesToLastSeenMAC(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ip := netip.MustParseAddr("198.18.0.60")
	// A lease from before a restart is enough to attribute a TFTP transfer.
	if err := st.PutLease(store.Lease{IP: ip, MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := New(st, Options{}, nil)
	defer r.Stop()
	r.RecordFromIP(netip.MustParseAddr("::ffff:198.18.0.60"), "tftp ipxe.efi", "850528 bytes")
	r.RecordFromIP(netip.MustParseAddr("198.18.0.99"), "tftp ipxe.efi", "") // nobody: dropped

	// The address moves to another machine: later events follow it.
	if err := r.RecordSighting(store.Sighting{MAC: "52:54:00:00:00:02", At: time.Now(), IP: ip, Event: "dhcp ACK"}); err != nil {
		t.Fatal(err)
	}
	r.RecordFromIP(ip, "http asset flatcar/kernel", "")
	r.Flush()

	ev1, _ := st.Events("52:54:00:00:00:01")
	if len(ev1) != 1 || ev1[0].Event != "tftp ipxe.efi" || ev1[0].Detail != "850528 bytes" || ev1[0].IP != ip {
		t.Fatalf("first machine's timeline = %+v", ev1)
	}
	ev2, _ := st.Events("52:54:00:00:00:02")
	if len(ev2) != 2 || ev2[1].Event != "http asset flatcar/kernel" {
		t.Fatalf("second machine's timeline = %+v", ev2)
	}
	if ms, _ := st.Machines(); len(ms) != 2 {
		t.Fatalf("unattributed event created a machine: %+v", ms)
	}
}

// countingStore counts the transactions of batched writes.
type countingStore struct {
	store.Store
	batches, sightings int
}

func (c *countingStore) RecordSightings(ss []store.Sighting) error {
	c.batches++
	c.sightings += len(ss)
	return c.Store.RecordSightings(ss)
}

// TestNotesAreBatched: a burst of notes costs a transaction or two, not one
// each; what does not fit the queue is dropped and counted; Stop writes what
// is left.
func TestNotesAreBatched(t *testing.T) {
	bolt, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	st := &countingStore{Store: bolt}
	r := New(st, Options{Pending: 1000, FlushEvery: time.Hour}, nil)
	t0 := time.Now()
	for i := range 1200 {
		r.Note(store.Sighting{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), At: t0, Event: "dhcp OFFER"})
	}
	if r.Dropped() != 200 {
		t.Fatalf("dropped %d of 1200 with room for 1000, want 200", r.Dropped())
	}
	r.Stop()
	if st.sightings != 1000 || st.batches != 1 {
		t.Fatalf("%d sightings in %d transactions, want 1000 in 1", st.sightings, st.batches)
	}
	ms, _ := bolt.Machines()
	if len(ms) != 1000 {
		t.Fatalf("%d records, want 1000", len(ms))
	}
	if r.Note(store.Sighting{MAC: "02:00:00:00:ff:ff", At: t0}) {
		t.Fatal("a note after Stop was queued")
	}
}

// TestOneMachinesBurstIsOneUpdate: many notes about one machine in a batch
// fold into its record once, with every event on its timeline.
func TestOneMachinesBurstIsOneUpdate(t *testing.T) {
	bolt, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	r := New(bolt, Options{FlushEvery: time.Hour}, nil)
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range 10 {
		r.Note(store.Sighting{MAC: "52:54:00:00:00:09", At: t0.Add(time.Duration(i) * time.Second), IP: netip.MustParseAddr("198.18.0.9"), Event: fmt.Sprintf("e%d", i)})
	}
	r.Stop()
	m, ok, _ := bolt.Machine("52:54:00:00:00:09")
	ev, _ := bolt.Events("52:54:00:00:00:09")
	if !ok || m.Events != 10 || m.LastEvent != "e9" || !m.FirstSeen.Equal(t0) || len(ev) != 10 {
		t.Fatalf("record %+v (%v), %d events", m, ok, len(ev))
	}
}

// scanningStore fails the test if the whole machine table is read.
type scanningStore struct {
	store.Store
	t *testing.T
}

func (s scanningStore) Machines() ([]store.Machine, error) {
	s.t.Error("New read every machine record: a site with 100,000 discovered machines pays for it in start-up and memory")
	return s.Store.Machines()
}

// TestStartLearnsKnownMachinesByKey: after a restart the index knows where
// the config's machines were last seen (one lookup each), not by reading
// every record; a discovered machine is learnt again from its next sighting.
func TestStartLearnsKnownMachinesByKey(t *testing.T) {
	bolt, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	known, stranger := "52:54:00:00:00:01", "0a:00:00:00:00:09"
	knownIP, strangerIP := netip.MustParseAddr("198.18.0.61"), netip.MustParseAddr("198.18.0.99")
	if err := bolt.RecordSightings([]store.Sighting{
		{MAC: known, At: time.Now(), IP: knownIP, Event: "ipxe script"},
		{MAC: stranger, At: time.Now(), IP: strangerIP, Event: "dhcp DISCOVER"},
	}); err != nil {
		t.Fatal(err)
	}
	r := New(scanningStore{bolt, t}, Options{Known: []string{known, "52:54:00:00:00:02"}}, nil)
	defer r.Stop()
	if mac, ok := r.MACFor(knownIP); !ok || mac != known {
		t.Errorf("MACFor(%s) = %q, %v; want the known machine", knownIP, mac, ok)
	}
	if _, ok := r.MACFor(strangerIP); ok {
		t.Errorf("a discovered machine's address was read at start")
	}
	r.Note(store.Sighting{MAC: stranger, At: time.Now(), IP: strangerIP, Event: "dhcp REQUEST"})
	if mac, ok := r.MACFor(strangerIP); !ok || mac != stranger {
		t.Errorf("after its next sighting MACFor(%s) = %q, %v", strangerIP, mac, ok)
	}
}

// TestEventsNameTheirInstance: with Options.Instance (several flint
// instances on one store) every event the recorder writes says which
// instance saw it, whichever way it is written; without, none does.
func TestEventsNameTheirInstance(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
	ip := netip.MustParseAddr("198.18.0.61")
	for _, c := range []struct{ mac, instance string }{{a, "http://198.18.0.2:8080"}, {b, ""}} {
		r := New(st, Options{Instance: c.instance}, nil)
		if err := r.RecordSighting(store.Sighting{MAC: c.mac, At: time.Now(), IP: ip, Event: "dhcp ACK"}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Record(store.Sighting{MAC: c.mac, At: time.Now(), Event: "ignition served"}, func(*store.Machine) error { return nil }); err != nil {
			t.Fatal(err)
		}
		r.RecordFromIP(ip, "tftp ipxe.efi", "")
		r.Note(store.Sighting{MAC: c.mac, At: time.Now(), Event: "node config-applied", By: "http://198.18.0.1:8080"})
		r.Stop()
		ev, err := st.Events(c.mac)
		if err != nil || len(ev) != 4 {
			t.Fatalf("%s's timeline: %+v %v", c.mac, ev, err)
		}
		for _, e := range ev[:3] {
			if e.By != c.instance {
				t.Errorf("%s: event %q by %q, want %q", c.mac, e.Event, e.By, c.instance)
			}
		}
		if ev[3].By != "http://198.18.0.1:8080" {
			t.Errorf("%s: an event that names its instance was restamped: %+v", c.mac, ev[3])
		}
	}
}
