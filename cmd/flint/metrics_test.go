package main

import (
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// TestMachinesByState: the config's machines are counted by the state of
// their records, found by key; machines only discovered are not counted.
func TestMachinesByState(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`server: {address: 198.18.0.1}
cluster: {install_mode: live}
machines:
  - {mac: "52:54:00:00:00:01", hostname: a, ip: 198.18.0.11, role: server}
  - {mac: "52:54:00:00:00:02", hostname: b, ip: 198.18.0.12, role: agent}
  - {mac: "52:54:00:00:00:03", hostname: c, ip: 198.18.0.13, role: agent}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SyncConfig(knownMachines(cfg)); err != nil {
		t.Fatal(err)
	}
	set := func(mac string, s store.State) {
		if _, err := st.UpdateMachine(mac, func(m *store.Machine) error { m.State = s; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set("52:54:00:00:00:02", store.StateInstalling)
	set("52:54:00:00:00:03", store.StateInstalled)
	set("52:54:00:00:00:99", store.StateDiscovered) // not in the config
	if _, err := st.UpdateMachine("52:54:00:00:00:02", func(m *store.Machine) error { m.Stuck = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateMachine("52:54:00:00:00:03", func(m *store.Machine) error { m.Stuck = true; return nil }); err != nil {
		t.Fatal(err) // a stale mark on an installed machine does not count
	}
	got, stuck := machineCounts(cfg, st)
	if stuck != 1 {
		t.Errorf("%d stuck, want 1", stuck)
	}
	want := map[string]int{"ready": 1, "installing": 1, "installed": 1, "reprovision": 0}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// TestMachinesTableShowsStuck: flint machines says which installs are stuck
// and for how long; a stale mark on a machine no longer installing is not
// shown.
func TestMachinesTableShowsStuck(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ms := []store.Machine{
		{MAC: "52:54:00:00:00:01", Known: true, Hostname: "a", Role: "agent", State: store.StateInstalling, StateChanged: now.Add(-3 * time.Hour), Stuck: true},
		{MAC: "52:54:00:00:00:02", Known: true, Hostname: "b", Role: "agent", State: store.StateInstalled, StateChanged: now.Add(-3 * time.Hour), Stuck: true},
		{MAC: "52:54:00:00:00:03", Known: true, Hostname: "c", Role: "agent", State: store.StateInstalling, StateChanged: now.Add(-time.Minute)},
	}
	var b strings.Builder
	printMachines(&b, ms, now)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "installing (stuck 3h)") {
		t.Errorf("a: %s", lines[1])
	}
	if strings.Contains(lines[2], "stuck") || strings.Contains(lines[3], "stuck") {
		t.Errorf("b or c shown stuck:\n%s", b.String())
	}
}
