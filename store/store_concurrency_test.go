package store

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testClaimRebuildIsOneTransaction: 100 concurrent claims for different
// servers leave exactly one holder; the holder may re-claim; release frees.
func testClaimRebuildIsOneTransaction(t *testing.T, b backend) {
	st := b.open(t)
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

// testWriteAfterCloseIsAnError: shutdown races requests; a late write must
// fail, not panic.
func testWriteAfterCloseIsAnError(t *testing.T, b backend) {
	st := b.open(t)
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

// testVersionGrowsWithWrites: every committed write moves Version, reads and
// failed writes do not (the dashboard's stream relies on it to notice a
// change without reading the tables).
func testVersionGrowsWithWrites(t *testing.T, b backend) {
	s := b.open(t)
	defer s.Close()
	v0 := s.Version()
	if err := s.PutLease(Lease{IP: netip.MustParseAddr("198.18.0.20"), MAC: "52:54:00:00:00:01", State: LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	v1 := s.Version()
	if v1 <= v0 {
		t.Fatalf("a lease write left the version at %d", v1)
	}
	if _, err := s.Leases(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMachine("52:54:00:00:00:02", func(*Machine) error { return errors.New("no") }); err == nil {
		t.Fatal("a failing update succeeded")
	}
	if v := s.Version(); v != v1 {
		t.Errorf("a read and a failed write moved the version from %d to %d", v1, v)
	}
}

// testConcurrentUpdatesLoseNothing: goroutines incrementing one record
// (UpdateMachine) and recording sightings of it (Record) at once lose no
// increment and no event.
func testConcurrentUpdatesLoseNothing(t *testing.T, b backend) {
	st := b.open(t)
	defer st.Close()
	hammer(t, []Store{st}, 8, 15)
}

// hammer runs writers goroutines per store, each doing rounds of one
// UpdateMachine (Role counts increments) and one Record (the timeline
// counts events) on one MAC, and checks that every write counted.
func hammer(t *testing.T, stores []Store, writers, rounds int) {
	t.Helper()
	const mac = "52:54:00:cc:00:01"
	start := time.Now()
	var wg sync.WaitGroup
	for si, st := range stores {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					_, err := st.UpdateMachine(mac, func(m *Machine) error {
						n := 0
						fmt.Sscan(m.Role, &n)
						m.Role = fmt.Sprint(n + 1)
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					_, err = st.Record(Sighting{MAC: mac, At: time.Now(), Event: fmt.Sprintf("s%d w%d r%d", si, w, r)}, func(m *Machine) error {
						m.LastEvent = "recorded"
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	want := len(stores) * writers * rounds
	m, ok, err := stores[0].Machine(mac)
	if err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	ev, err := stores[0].Events(mac)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients x %d goroutines x %d rounds of UpdateMachine+Record on one MAC: %v; increments %s, sightings %d, events %d",
		len(stores), writers, rounds, time.Since(start).Round(time.Millisecond), m.Role, m.Events, len(ev))
	if m.Role != fmt.Sprint(want) || m.Events != want || len(ev) != want {
		t.Fatalf("lost updates: %s increments, %d sightings, %d events; want %d of each", m.Role, m.Events, len(ev), want)
	}
}
