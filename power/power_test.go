package power

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
)

// fakeIpmitool puts an ipmitool on PATH that logs its arguments and
// whether the password came in its environment, and answers with the
// script's body. (The real one against a real BMC is in
// integration/power_test.go.)
func fakeIpmitool(t *testing.T, body string) (logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "calls.log")
	script := "#!/bin/sh\necho \"$* pw=$IPMITOOL_PASSWORD\" >> " + logPath + "\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(dir, "ipmitool"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return logPath
}

func machine(t *testing.T, timeout time.Duration) *config.Machine {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &config.Machine{Hostname: "nuc1", BMC: &config.BMC{
		Type: config.BMCIPMI, Address: "198.18.0.9:6230", Host: "198.18.0.9", Port: 6230,
		Username: "admin", PasswordFile: pw, BootMode: config.BootModeLegacy, Timeout: config.Duration{Duration: timeout},
	}}
}

func calls(t *testing.T, logPath string) string {
	t.Helper()
	b, _ := os.ReadFile(logPath)
	return string(b)
}

func TestIpmitoolWiring(t *testing.T) {
	t.Run("status: the password goes in the environment, never in argv", func(t *testing.T) {
		log := fakeIpmitool(t, `case "$*" in *"power status"*) echo "Chassis Power is on";; esac`)
		pc, err := Open(machine(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if d := pc.Describe(); d != "ipmi 198.18.0.9:6230" {
			t.Errorf("Describe = %q", d)
		}
		st, err := pc.Status(context.Background())
		if err != nil || st != On {
			t.Fatalf("Status = %q, %v", st, err)
		}
		got := calls(t, log)
		if !strings.Contains(got, "-I lanplus -U admin -E") || !strings.Contains(got, "-H 198.18.0.9 -p 6230") || !strings.Contains(got, "chassis power status pw=hunter2-secret") {
			t.Errorf("ipmitool calls:\n%s", got)
		}
		if strings.Contains(strings.ReplaceAll(got, "pw=hunter2-secret", ""), "hunter2") {
			t.Errorf("the password is in ipmitool's arguments:\n%s", got)
		}
	})
	t.Run("errors never carry the password", func(t *testing.T) {
		fakeIpmitool(t, `echo "Error: unable to establish IPMI v2 / RMCP+ session (password hunter2-secret)" >&2; exit 1`)
		pc, err := Open(machine(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		err = pc.On(context.Background())
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "[password]") || !strings.Contains(err.Error(), "check bmc.address, bmc.username and the password") {
			t.Fatalf("err = %v", err)
		}
		if !strings.HasPrefix(err.Error(), "nuc1: could not log in to the BMC (ipmi 198.18.0.9:6230) to power on") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a BMC that does not answer stops at the timeout, and at once on Ctrl-C", func(t *testing.T) {
		fakeIpmitool(t, `exec sleep 30`)
		pc, err := Open(machine(t, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = pc.Status(context.Background())
		if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "no answer within 1s") || took > 3*time.Second {
			t.Fatalf("after %v: %v", took, err)
		}
		pc, err = Open(machine(t, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start = time.Now()
		err = pc.Cycle(ctx)
		if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "interrupted") || took > time.Second {
			t.Fatalf("after %v: %v", took, err)
		}
	})
	t.Run("cycle of a machine that is off switches it on", func(t *testing.T) {
		log := fakeIpmitool(t, `case "$*" in *"power status"*) echo "Chassis Power is off";; *"power on"*) echo "Chassis Power Control: Up/On";; esac`)
		pc, err := Open(machine(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.Cycle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := calls(t, log); !strings.Contains(got, "chassis power on") || strings.Contains(got, "chassis power cycle") {
			t.Errorf("calls:\n%s", got)
		}
	})
	t.Run("a BMC without boot overrides", func(t *testing.T) {
		fakeIpmitool(t, `case "$*" in *"power status"*) echo "Chassis Power is on";; *bootdev*) echo "Set Chassis Boot Parameter 5 failed: Invalid data field in request" >&2; exit 1;; esac`)
		pc, err := Open(machine(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		err = pc.NetworkBoot(context.Background())
		if !errors.Is(err, ErrNoBootOverride) || !strings.Contains(err.Error(), "the BMC does not support this command") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOpenRefusals(t *testing.T) {
	t.Run("no bmc", func(t *testing.T) {
		_, err := Open(&config.Machine{Hostname: "nuc2"})
		if !errors.Is(err, ErrNoBMC) || !strings.Contains(err.Error(), "add machines[].bmc") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ipmitool missing says what to install", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := Open(machine(t, time.Second))
		if err == nil || !strings.Contains(err.Error(), "apt-get install ipmitool") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unset password variable", func(t *testing.T) {
		m := machine(t, time.Second)
		m.BMC.PasswordFile, m.BMC.PasswordEnv = "", "FLINT_TEST_UNSET_BMC_PW"
		_, err := Open(m)
		if err == nil || !strings.Contains(err.Error(), "FLINT_TEST_UNSET_BMC_PW, which is not set") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{
		"Chassis Power is on\n": On, "Chassis Power is off": Off, "On": On, "off": Off, "PoweringOn": "poweringon", "": Unknown,
	} {
		if got := parseState(in); got != want {
			t.Errorf("parseState(%q) = %q, want %q", in, got, want)
		}
	}
}
