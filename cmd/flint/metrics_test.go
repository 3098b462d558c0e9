package main

import (
	"testing"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// TestMachinesByState: the config's machines are counted by the state of
// their records, found by key; machines only discovered are not counted.
func TestMachinesByState(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`server: {address: 198.18.0.1}
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
	got := machinesByState(cfg, st)
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
