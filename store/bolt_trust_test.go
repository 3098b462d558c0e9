package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
