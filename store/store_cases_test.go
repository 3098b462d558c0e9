package store

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func testLeasesPersistAcrossReopen(t *testing.T, b backend) {
	st := b.open(t)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	want := Lease{IP: ip("198.18.0.100"), MAC: "52:54:00:00:00:01", State: LeaseBound, Hostname: "a", Start: exp.Add(-time.Hour), Expires: exp}
	if err := st.PutLease(want); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLease(Lease{IP: ip("198.18.0.101"), State: LeaseDeclined, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLease(Lease{IP: ip("198.18.0.9"), State: LeaseDeclined, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteLease(ip("198.18.0.101")); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st = b.open(t)
	defer st.Close()
	got, err := st.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].IP != ip("198.18.0.9") {
		t.Fatalf("leases after reopen = %+v (want .9 and .100, ordered by IP)", got)
	}
	if l := got[1]; l.IP != want.IP || l.MAC != want.MAC || !l.Expires.Equal(exp) || l.State != LeaseBound {
		t.Fatalf("leases after reopen = %+v", got)
	}
}

func testSightingsAndSyncConfig(t *testing.T, b backend) {
	st := b.open(t)
	defer st.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.RecordSighting(Sighting{MAC: "52:54:00:00:00:09", At: t0.Add(time.Duration(i) * time.Second), Arch: "BIOS", Event: fmt.Sprintf("e%d", i), IP: ip("198.18.0.9")})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := st.SyncConfig([]KnownMachine{{MAC: "52:54:00:00:00:01", Hostname: "nuc1", Role: "server", ReservedIP: ip("198.18.0.60")}}); err != nil {
		t.Fatal(err)
	}
	ms, err := st.Machines()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("machines = %+v", ms)
	}
	known, seen := ms[0], ms[1]
	if !known.Known || known.Hostname != "nuc1" || !known.LastSeen.IsZero() {
		t.Errorf("known machine = %+v", known)
	}
	if seen.Known || seen.Events != 20 || !seen.FirstSeen.Equal(t0) || !seen.LastSeen.Equal(t0.Add(19*time.Second)) || seen.Arch != "BIOS" {
		t.Errorf("sighted machine = %+v", seen)
	}
	if ev, _ := st.Events(seen.MAC); len(ev) != 20 {
		t.Errorf("timeline of 20 concurrent sightings holds %d events", len(ev))
	}
	// A machine that leaves the config becomes discovered, and keeps its history.
	if err := st.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}
	ms, _ = st.Machines()
	if ms[0].Known || ms[0].Hostname != "" || ms[0].State != StateDiscovered {
		t.Errorf("after removal from config: %+v", ms[0])
	}
}

func testTimelineOrderedAndBounded(t *testing.T, b backend) {
	st := b.open(t)
	defer st.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mac := "52:54:00:00:00:0a"
	// Recorded out of order (goroutines do that); the timeline comes back by time.
	for _, i := range []int{2, 0, 1} {
		if err := st.RecordSighting(Sighting{MAC: mac, At: t0.Add(time.Duration(i) * time.Second), Event: fmt.Sprintf("e%d", i), Detail: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := st.Events(mac)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 3 || ev[0].Event != "e0" || ev[2].Event != "e2" || ev[1].Detail != "d" || !ev[1].At.Equal(t0.Add(time.Second)) {
		t.Fatalf("timeline = %+v", ev)
	}
	for i := range MaxEventsPerMachine + 200 {
		if err := st.RecordSighting(Sighting{MAC: mac, At: t0.Add(time.Hour + time.Duration(i)*time.Millisecond), Event: fmt.Sprintf("n%d", i), TimelineOnly: i%2 == 0}); err != nil {
			t.Fatal(err)
		}
	}
	ev, _ = st.Events(mac)
	if len(ev) > MaxEventsPerMachine+64 || len(ev) < MaxEventsPerMachine {
		t.Fatalf("timeline holds %d events, want about %d", len(ev), MaxEventsPerMachine)
	}
	if last := ev[len(ev)-1].Event; last != fmt.Sprintf("n%d", MaxEventsPerMachine+199) {
		t.Fatalf("newest event = %s", last)
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].At.Before(ev[i-1].At) {
			t.Fatalf("timeline out of order at %d: %v after %v", i, ev[i].At, ev[i-1].At)
		}
	}
	if other, _ := st.Events("52:54:00:00:00:0b"); len(other) != 0 {
		t.Fatalf("unknown MAC has events: %v", other)
	}
}

func testLookupsByKey(t *testing.T, b backend) {
	st := b.open(t)
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

// testDiscoveredCapped: a flood of unknown MACs keeps at most the limit of
// discovered records (the oldest go, with their timelines); machines of the
// config are never evicted.
func testDiscoveredCapped(t *testing.T, b backend) {
	st := b.open(t, WithLimits(Limits{Discovered: 10}))
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
	check := func(t *testing.T, st Store) {
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
	st = b.open(t, WithLimits(Limits{Discovered: 10}))
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

// testEvictedAndSeenAgainInOneBatch: in one batch, a record evicted by a
// newer one and then seen again comes back with only its new event.
func testEvictedAndSeenAgainInOneBatch(t *testing.T, b backend) {
	st := b.open(t, WithLimits(Limits{Discovered: 2}))
	defer st.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, bb, c := "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
	if err := st.RecordSighting(Sighting{MAC: a, At: t0, Event: "a1"}); err != nil {
		t.Fatal(err)
	}
	err := st.RecordSightings([]Sighting{
		{MAC: bb, At: t0.Add(time.Second), Event: "b1"},
		{MAC: c, At: t0.Add(2 * time.Second), Event: "c1"}, // evicts a
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Machine(a); ok {
		t.Fatal("a was not evicted by c")
	}
	err = st.RecordSightings([]Sighting{
		{MAC: "02:00:00:00:00:0d", At: t0.Add(3 * time.Second), Event: "d1"}, // evicts b
		{MAC: a, At: t0.Add(4 * time.Second), Event: "a2"},                   // evicts c
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := st.Events(a)
	if err != nil || len(ev) != 1 || ev[0].Event != "a2" {
		t.Fatalf("timeline of a, evicted and seen again: %+v %v", ev, err)
	}
	ms, _ := st.Machines()
	var macs []string
	for _, m := range ms {
		macs = append(macs, m.MAC)
	}
	if fmt.Sprint(macs) != "[02:00:00:00:00:0a 02:00:00:00:00:0d]" {
		t.Fatalf("records = %v, want a and d", macs)
	}
	if m, _, _ := st.Machine(a); m.Events != 1 || !m.FirstSeen.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("a's record starts afresh: %+v", m)
	}
}

// testSyncConfigAfterManyStrangers: a batch of 3,000 strangers, then the
// config's machines join and leave; the counts stay right.
func testSyncConfigAfterManyStrangers(t *testing.T, b backend) {
	st := b.open(t, WithLimits(Limits{Discovered: 5000}))
	defer st.Close()
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
	if err := st.SyncConfig([]KnownMachine{nuc1, nuc2}); err != nil {
		t.Fatal(err)
	}
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
	if ev, _ := st.Events("0a:00:00:00:0b:b7"); len(ev) != 1 {
		t.Errorf("a stranger's timeline: %v", ev)
	}
}

// testConfigShrinksAtTheCap: with the discovered records at their cap, 40
// machines leave the config at once; each becomes discovered and the cap
// still holds (for etcd: more index changes than one transaction takes).
func testConfigShrinksAtTheCap(t *testing.T, b backend) {
	st := b.open(t, WithLimits(Limits{Discovered: 5}))
	defer st.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var known []KnownMachine
	for i := range 40 {
		known = append(known, KnownMachine{MAC: fmt.Sprintf("52:54:00:ff:00:%02x", i), Hostname: fmt.Sprintf("n%d", i), Role: "agent"})
	}
	if err := st.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := st.RecordSighting(Sighting{MAC: fmt.Sprintf("02:00:00:00:ff:%02x", i), At: t0.Add(time.Duration(i) * time.Second), Event: "dhcp DISCOVER"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}
	ms, err := st.Machines()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Known {
			t.Errorf("%s is still known", m.MAC)
		}
	}
	if len(ms) != 5 {
		t.Fatalf("%d records after 40 machines left the config with a cap of 5", len(ms))
	}
	for i := range 5 {
		if _, ok, _ := st.Machine(fmt.Sprintf("02:00:00:00:ff:%02x", i)); ok {
			t.Errorf("stranger %d, discovered before the 40, was not evicted first", i)
		}
	}
}
