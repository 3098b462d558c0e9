package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/flint-boot/flint/store"
)

// TestReprovisionCLI: without a running serve, reprovision works on the
// database serve made, never on one it would create, and --cancel undoes a
// mistaken --yes.
func TestReprovisionCLI(t *testing.T) {
	t.Run("a directory serve never used is an error, and stays empty", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "flint-data")
		_, _, err := runCLI(t, "reprovision", "nuc1", "--data", data)
		if err == nil || !strings.Contains(err.Error(), "no flint state in "+data) || !strings.Contains(err.Error(), "run flint serve with --data "+data+" first") {
			t.Fatalf("reprovision before any serve: %v", err)
		}
		if got := filesUnder(t, filepath.Dir(data)); len(got) > 0 {
			t.Fatalf("reprovision created %v", got)
		}
	})
	data := t.TempDir()
	st, err := store.OpenBolt(data, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SyncConfig([]store.KnownMachine{{MAC: exampleMAC, Hostname: "nuc1", Role: "server"}, {MAC: "02:00:0a:00:00:3d", Hostname: "nuc2", Role: "server"}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	setState := func(mac string, s store.State) {
		t.Helper()
		st, err := store.OpenBolt(data, false)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.UpdateMachine(mac, func(m *store.Machine) error { m.State = s; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	state := func(mac string) store.Machine {
		t.Helper()
		st, err := store.OpenBolt(data, true)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		m, _, err := st.Machine(mac)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Run("no plan for a machine never installed", func(t *testing.T) {
		out, _, err := runCLI(t, "reprovision", "nuc1", "--data", data)
		if err == nil || !strings.Contains(err.Error(), "nuc1 was never installed: it installs on its first network boot") || strings.Contains(out, "on its next PXE boot") {
			t.Fatalf("reprovision of a ready machine: %v\n%s", err, out)
		}
	})
	setState(exampleMAC, store.StateInstalled)
	t.Run("--cancel of a machine not armed", func(t *testing.T) {
		if _, _, err := runCLI(t, "reprovision", "nuc1", "--data", data, "--cancel"); err == nil || !strings.Contains(err.Error(), "nothing to cancel") {
			t.Fatalf("cancel of nothing: %v", err)
		}
		if _, _, err := runCLI(t, "reprovision", "nuc1", "--data", data, "--cancel", "--yes"); err == nil || !strings.Contains(err.Error(), "pass one") {
			t.Fatalf("--yes with --cancel: %v", err)
		}
	})
	t.Run("--yes then --cancel", func(t *testing.T) {
		if out, _, err := runCLI(t, "reprovision", "nuc1", "--data", data, "--yes"); err != nil || !strings.Contains(out, "armed") {
			t.Fatalf("arm: %v\n%s", err, out)
		}
		if m := state(exampleMAC); m.State != store.StateReprovision || !m.Rebuilding {
			t.Fatalf("after arm: %+v", m)
		}
		out, _, err := runCLI(t, "reprovision", "nuc1", "--data", data, "--cancel")
		if err != nil || !strings.Contains(out, "cancelled: nuc1 stays installed") {
			t.Fatalf("cancel: %v\n%s", err, out)
		}
		if m := state(exampleMAC); m.State != store.StateInstalled || m.Rebuilding {
			t.Fatalf("after cancel: %+v", m)
		}
		setState("02:00:0a:00:00:3d", store.StateInstalled)
		if out, _, err := runCLI(t, "reprovision", "nuc2", "--data", data, "--yes"); err != nil || !strings.Contains(out, "armed") {
			t.Fatalf("another server after the cancel: %v\n%s", err, out)
		}
	})
}
