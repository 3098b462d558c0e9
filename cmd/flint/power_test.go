package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/deploy/examples"
	"github.com/flint-boot/flint/power"
	"github.com/flint-boot/flint/store"
)

// fakePower is a BMC at the power.Controller interface: it records what the
// command asked, in order, and answers as told.
type fakePower struct {
	mu       sync.Mutex
	calls    []string
	state    power.State
	noPXE    bool   // NetworkBoot fails as a BMC without boot overrides does
	failOn   string // the call that fails
	block    bool   // calls wait for ctx (a BMC that does not answer)
	onCycle  func() // runs when Cycle is asked (the machine reboots)
	machine  *config.Machine
	openErrs error
}

func (f *fakePower) call(ctx context.Context, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return fmt.Errorf("%s: interrupted: %w", name, ctx.Err())
	}
	if f.failOn == name {
		return fmt.Errorf("%s failed", name)
	}
	return nil
}

func (f *fakePower) Status(ctx context.Context) (power.State, error) {
	return f.state, f.call(ctx, "status")
}
func (f *fakePower) On(ctx context.Context) error  { f.state = power.On; return f.call(ctx, "on") }
func (f *fakePower) Off(ctx context.Context) error { f.state = power.Off; return f.call(ctx, "off") }
func (f *fakePower) Cycle(ctx context.Context) error {
	err := f.call(ctx, "cycle")
	if err == nil && f.onCycle != nil {
		f.onCycle()
	}
	return err
}
func (f *fakePower) NetworkBoot(ctx context.Context) error {
	if err := f.call(ctx, "pxe"); err != nil {
		return err
	}
	if f.noPXE {
		return fmt.Errorf("%w: Invalid data field in request", power.ErrNoBootOverride)
	}
	return nil
}
func (f *fakePower) Describe() string { return "fake 198.18.0.9:623" }

func (f *fakePower) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// useFakePower makes the commands open f instead of a BMC.
func useFakePower(t *testing.T, f *fakePower) {
	t.Helper()
	prev := openPower
	openPower = func(m *config.Machine) (power.Controller, error) {
		f.machine = m
		if m.BMC == nil {
			return power.Open(m) // its refusal, before any BMC is asked
		}
		if f.openErrs != nil {
			return nil, f.openErrs
		}
		return f, nil
	}
	t.Cleanup(func() { openPower = prev })
}

// bmcSite is the example cluster with a BMC for nuc1, in a temp dir.
func bmcSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "nuc1.bmc")
	if err := os.WriteFile(pw, []byte("not-for-logs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(examples.Cluster),
		`  - {mac: "02:00:0a:00:00:3c", hostname: nuc1, ip: 10.0.0.60, role: server}`,
		"  - mac: \"02:00:0a:00:00:3c\"\n    hostname: nuc1\n    ip: 10.0.0.60\n    role: server\n    bmc: {type: ipmi, address: 198.18.0.9, username: admin, password_file: "+pw+"}", 1)
	if text == string(examples.Cluster) {
		t.Fatal("the example cluster no longer lists nuc1 as this test expects")
	}
	p := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPowerCLI(t *testing.T) {
	site := bmcSite(t)
	t.Run("each action asks the BMC once and says what it did", func(t *testing.T) {
		for action, want := range map[string]string{
			"status": "nuc1: on\n", "on": "nuc1: switched on (fake 198.18.0.9:623)\n", "off": "nuc1: switched off (fake 198.18.0.9:623)\n",
			"cycle": "nuc1: power-cycled (fake 198.18.0.9:623)\n", "pxe": "nuc1: next boot is a network boot (fake 198.18.0.9:623)\n",
		} {
			f := &fakePower{state: power.On}
			useFakePower(t, f)
			out, _, err := runCLI(t, "power", action, "nuc1", "--config", site)
			if err != nil || out != want {
				t.Errorf("power %s: %q, %v; want %q", action, out, err, want)
			}
			if f.Calls() != action {
				t.Errorf("power %s asked the BMC %q", action, f.Calls())
			}
			if f.machine == nil || f.machine.BMC == nil || f.machine.BMC.Host != "198.18.0.9" {
				t.Errorf("power %s opened %+v", action, f.machine)
			}
		}
	})
	t.Run("by MAC too", func(t *testing.T) {
		f := &fakePower{state: power.Off}
		useFakePower(t, f)
		if out, _, err := runCLI(t, "power", "status", "02-00-0a-00-00-3c", "--config", site); err != nil || out != "nuc1: off\n" {
			t.Fatalf("%q, %v", out, err)
		}
	})
	t.Run("refusals say what to do", func(t *testing.T) {
		f := &fakePower{}
		useFakePower(t, f)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"power", "on", "nuc2", "--config", site}, "nuc2: no bmc in the config: add machines[].bmc"},
			{[]string{"power", "on", "nuc9", "--config", site}, "nuc9 is not a machine of " + site},
			{[]string{"power", "on", "--config", site}, "needs the machine's hostname or MAC"},
			{[]string{"power", "reboot", "nuc1", "--config", site}, `unknown power action "reboot": use status, on, off, cycle or pxe`},
			{[]string{"power"}, "power needs an action and a machine"},
		} {
			_, _, err := runCLI(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: %v, want %q", c.args, err, c.want)
			}
		}
		if f.Calls() != "" {
			t.Errorf("the BMC was asked %q", f.Calls())
		}
	})
	t.Run("Ctrl-C stops a BMC that does not answer within a second", func(t *testing.T) {
		f := &fakePower{block: true}
		useFakePower(t, f)
		cmd := newRootCmd()
		ctx, cancel := context.WithCancel(context.Background())
		cmd.SetContext(ctx)
		cmd.SetArgs([]string{"power", "on", "nuc1", "--config", site})
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := cmd.Execute()
		if took := time.Since(start); err == nil || !errors.Is(err, context.Canceled) || took > 1200*time.Millisecond {
			t.Fatalf("after %v: %v", took, err)
		}
	})
}

// TestReprovisionReboot: --reboot checks the BMC before arming, arms, sets
// the next boot to the network, power-cycles and follows the timeline until
// the machine is installed again.
func TestReprovisionReboot(t *testing.T) {
	site := bmcSite(t)
	data := t.TempDir()
	st, err := store.OpenBolt(data, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SyncConfig([]store.KnownMachine{{MAC: exampleMAC, Hostname: "nuc1", Role: "server"}, {MAC: "02:00:0a:00:00:3d", Hostname: "nuc2", Role: "server"}}); err != nil {
		t.Fatal(err)
	}
	for _, mac := range []string{exampleMAC, "02:00:0a:00:00:3d"} {
		if _, err := st.UpdateMachine(mac, func(m *store.Machine) error { m.State = store.StateInstalled; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	machine := func() store.Machine {
		t.Helper()
		m, ok, err := readMachine(nil, data, exampleMAC)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return m
	}

	t.Run("a BMC that cannot be opened arms nothing", func(t *testing.T) {
		f := &fakePower{openErrs: errors.New("nuc1: an ipmi BMC is driven with the ipmitool program, which is not installed")}
		useFakePower(t, f)
		_, _, err := runCLI(t, "reprovision", "nuc1", "--yes", "--reboot", "--data", data, "--config", site)
		if err == nil || !strings.Contains(err.Error(), "ipmitool program") || !strings.Contains(err.Error(), "nothing was armed") {
			t.Fatalf("err = %v", err)
		}
		if m := machine(); m.State != store.StateInstalled {
			t.Fatalf("armed anyway: %s", m.State)
		}
		_, _, err = runCLI(t, "reprovision", "nuc2", "--yes", "--reboot", "--data", data, "--config", site)
		if err == nil || !strings.Contains(err.Error(), "no bmc in the config") {
			t.Fatalf("nuc2 without bmc: %v", err)
		}
	})
	t.Run("a failed power cycle leaves it armed and says how to go on", func(t *testing.T) {
		f := &fakePower{failOn: "cycle"}
		useFakePower(t, f)
		out, _, err := runCLI(t, "reprovision", "nuc1", "--yes", "--reboot", "--data", data, "--config", site)
		if err == nil || !strings.Contains(err.Error(), "nuc1 stays armed: power-cycle it by hand (flint power cycle nuc1), or disarm it with flint reprovision nuc1 --cancel") {
			t.Fatalf("err = %v\n%s", err, out)
		}
		if f.Calls() != "pxe,cycle" {
			t.Errorf("calls %q", f.Calls())
		}
		if _, _, err := runCLI(t, "reprovision", "nuc1", "--cancel", "--data", data, "--config", site); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reboot, follow, installed", func(t *testing.T) {
		f := &fakePower{noPXE: true}
		// The "machine": after the power cycle it boots and flint records
		// its steps, then its report makes it installed.
		f.onCycle = func() {
			go func() {
				time.Sleep(300 * time.Millisecond)
				st, err := store.OpenBolt(data, false)
				if err != nil {
					t.Error(err)
					return
				}
				defer st.Close()
				for _, ev := range []string{"dhcp ACK", "http script", "ignition served", "node config-applied"} {
					if err := st.RecordSighting(store.Sighting{MAC: exampleMAC, At: time.Now(), Event: ev}); err != nil {
						t.Error(err)
					}
				}
				if _, err := st.UpdateMachine(exampleMAC, func(m *store.Machine) error {
					m.State, m.StateChanged = store.StateInstalled, time.Now()
					return nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		useFakePower(t, f)
		out, _, err := runCLI(t, "reprovision", "nuc1", "--yes", "--reboot", "--data", data, "--config", site, "--wait", "20s")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Log("\n" + out)
		if f.Calls() != "pxe,cycle" {
			t.Errorf("calls %q, want pxe then cycle", f.Calls())
		}
		for _, want := range []string{
			"armed: nuc1 reinstalls on its next network boot",
			"warning: the BMC did not set the next boot to the network: Invalid data field in request",
			"nuc1: power-cycled (fake 198.18.0.9:623); its timeline follows",
			"reprovision armed", "dhcp ACK", "http script", "ignition served", "node config-applied",
			"nuc1: installed, ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if strings.Count(out, "dhcp ACK") != 1 {
			t.Errorf("an event printed twice:\n%s", out)
		}
		if strings.Contains(out, "not-for-logs") {
			t.Error("the BMC password is in the output")
		}
	})
	t.Run("Ctrl-C stops following at once; the machine stays armed", func(t *testing.T) {
		cmd := newRootCmd()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out strings.Builder
		cmd.SetContext(ctx)
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"reprovision", "nuc1", "--yes", "--reboot", "--data", data, "--config", site})
		var cycled time.Time
		f := &fakePower{onCycle: func() { cycled = time.Now(); time.AfterFunc(1500*time.Millisecond, cancel) }}
		useFakePower(t, f)
		err := cmd.Execute()
		took := time.Since(cycled) - 1500*time.Millisecond
		if err != nil || !strings.Contains(out.String(), "stopped following nuc1; it goes on booting") || took > time.Second {
			t.Fatalf("%v after Ctrl-C: %v\n%s", took, err, out.String())
		}
		if m := machine(); m.State != store.StateReprovision {
			t.Errorf("state %s, want still armed", m.State)
		}
		if _, _, err := runCLI(t, "reprovision", "nuc1", "--cancel", "--data", data, "--config", site); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gives up after --wait", func(t *testing.T) {
		f := &fakePower{}
		useFakePower(t, f)
		start := time.Now()
		_, _, err := runCLI(t, "reprovision", "nuc1", "--yes", "--reboot", "--data", data, "--config", site, "--wait", "1500ms")
		if err == nil || !strings.Contains(err.Error(), "nuc1 was not installed within 1.5s") || time.Since(start) > 5*time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
	})
}
