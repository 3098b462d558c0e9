package integration

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/ipmisim"
)

// TestPowerIPMISim drives a real IPMI BMC, OpenIPMI's ipmi_sim, with
// `flint power` through ipmitool over RMCP+ on loopback. The machine behind
// the BMC is a script ipmi_sim starts on power on and stops on power off;
// it logs both, so each command's effect is seen where it happens.
func TestPowerIPMISim(t *testing.T) {
	needBinaries(t)
	needTools(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	lanPort := freePort(t, "udp")
	const password = "Pa55-not-4-logs" // IPMI 2.0 allows 20 bytes

	powerLog := filepath.Join(dir, "power.log")
	pidFile := filepath.Join(dir, "machine.pid")
	machine := filepath.Join(dir, "machine.sh")
	script := fmt.Sprintf(`#!/bin/sh
# The machine behind the BMC: on while this runs.
echo "on $$" >> %[1]s
echo $$ > %[2]s
sleep 600 &
trap 'kill $! 2>/dev/null; echo "off $$" >> %[1]s; exit 0' TERM
wait $!
`, powerLog, pidFile)
	if err := os.WriteFile(machine, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sim, err := ipmisim.Start(ipmisim.Options{
		Dir: dir, Addr: netip.MustParseAddr("127.0.0.1"), LANPort: lanPort, SerialPort: freePort(t, "tcp"),
		User: "flint", Password: password, StartCmd: machine,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sim.Stop()
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL) // the machine, if ipmi_sim left it
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(sim.Log)
			t.Logf("ipmi_sim log:\n%s", b)
		}
	})

	pwFile := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPW := filepath.Join(dir, "wrong.pw")
	if err := os.WriteFile(wrongPW, []byte("wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadPort := freePort(t, "udp") // nothing answers there
	site := filepath.Join(dir, "site.yaml")
	text := fmt.Sprintf(`dhcp: {mode: proxy}
machines:
  - mac: "52:54:00:00:00:61"
    hostname: node1
    ip: 198.18.0.61
    role: server
    bmc: {type: ipmi, address: "127.0.0.1:%d", username: flint, password_file: %s, timeout: 20s}
  - mac: "52:54:00:00:00:62"
    hostname: node2
    ip: 198.18.0.62
    role: agent
    bmc: {type: ipmi, address: "127.0.0.1:%d", username: flint, password_file: %s, timeout: 20s}
  - mac: "52:54:00:00:00:63"
    hostname: node3
    ip: 198.18.0.63
    role: agent
    bmc: {type: ipmi, address: "127.0.0.1:%d", username: flint, password_env: NODE3_BMC_PW, timeout: 30s}
`, lanPort, pwFile, lanPort, wrongPW, deadPort)
	if err := os.WriteFile(site, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	power := func(args ...string) Result {
		t.Helper()
		r := runFlint(t, append(append([]string{"power"}, args...), "--config", site)...)
		t.Logf("$ flint power %s -> exit %d in %v: %s%s", strings.Join(args, " "), r.Code, r.Dur.Round(time.Millisecond), r.Stdout, r.Stderr)
		if strings.Contains(r.Stdout+r.Stderr, password) || strings.Contains(r.Stdout+r.Stderr, "wrong-password") {
			t.Errorf("a BMC password is in flint's output:\n%s", r)
		}
		return r
	}
	powerLines := func() []string {
		b, _ := os.ReadFile(powerLog)
		return strings.Fields(strings.ReplaceAll(string(b), "\n", " ; "))
	}
	// waitLog waits until the machine's power log has n entries.
	waitLog := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(powerLog)
			if strings.Count(string(b), "\n") >= n {
				return string(b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		b, _ := os.ReadFile(powerLog)
		t.Fatalf("the machine's power log has not %d entries after 15s:\n%s", n, b)
		return ""
	}
	onOff := func(log string) string {
		var s []string
		for _, ln := range strings.Split(strings.TrimSpace(log), "\n") {
			s = append(s, strings.Fields(ln)[0])
		}
		return strings.Join(s, ",")
	}

	t.Run("status of a machine that is off", func(t *testing.T) {
		if r := power("status", "node1"); r.Code != 0 || r.Stdout != "node1: off\n" {
			t.Fatalf("%s", r)
		}
	})
	t.Run("on starts the machine", func(t *testing.T) {
		if r := power("on", "node1"); r.Code != 0 || !strings.Contains(r.Stdout, "node1: switched on (ipmi 127.0.0.1:"+strconv.Itoa(lanPort)+")") {
			t.Fatalf("%s", r)
		}
		if got := onOff(waitLog(1)); got != "on" {
			t.Fatalf("power log %q, want on", got)
		}
		if r := power("status", "52-54-00-00-00-61"); r.Code != 0 || r.Stdout != "node1: on\n" {
			t.Fatalf("%s", r)
		}
	})
	t.Run("cycle stops and starts it again", func(t *testing.T) {
		if r := power("cycle", "node1"); r.Code != 0 || !strings.Contains(r.Stdout, "node1: power-cycled") {
			t.Fatalf("%s", r)
		}
		if got := onOff(waitLog(3)); got != "on,off,on" {
			t.Fatalf("power log %q, want on,off,on", got)
		}
		if r := power("status", "node1"); r.Stdout != "node1: on\n" {
			t.Fatalf("%s", r)
		}
	})
	t.Run("off stops it", func(t *testing.T) {
		if r := power("off", "node1"); r.Code != 0 || !strings.Contains(r.Stdout, "node1: switched off") {
			t.Fatalf("%s", r)
		}
		if got := onOff(waitLog(4)); got != "on,off,on,off" {
			t.Fatalf("power log %q", got)
		}
		if r := power("status", "node1"); r.Stdout != "node1: off\n" {
			t.Fatalf("%s", r)
		}
	})
	t.Run("cycle of a machine that is off switches it on", func(t *testing.T) {
		if r := power("cycle", "node1"); r.Code != 0 {
			t.Fatalf("%s", r)
		}
		if got := onOff(waitLog(5)); got != "on,off,on,off,on" {
			t.Fatalf("power log %q", got)
		}
	})
	t.Run("pxe: ipmi_sim without a chassis control program takes no boot override, and flint says so", func(t *testing.T) {
		r := power("pxe", "node1")
		if r.Code != 1 || !strings.Contains(r.Stderr, "node1: could not set the next boot to the network through the BMC") || !strings.Contains(r.Stderr, "Invalid data field in request: the BMC does not support this command") {
			t.Fatalf("%s", r)
		}
	})
	t.Run("a wrong password is refused and never shown", func(t *testing.T) {
		r := power("status", "node2")
		if r.Code != 1 || !strings.Contains(r.Stderr, "node2: could not log in to the BMC (ipmi 127.0.0.1:"+strconv.Itoa(lanPort)+") to report the power state") {
			t.Fatalf("%s", r)
		}
	})
	t.Run("Ctrl-C stops a BMC that does not answer within a second", func(t *testing.T) {
		cmd := exec.Command(flintBin, "power", "status", "node3", "--config", site)
		cmd.Env = append(os.Environ(), "NODE3_BMC_PW=x")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		start := time.Now()
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			took := time.Since(start)
			t.Logf("exit after SIGINT in %v: %v: %s", took.Round(time.Millisecond), err, out.String())
			if took > time.Second || !strings.Contains(out.String(), "node3: interrupted: log in to the BMC") {
				t.Errorf("took %v: %s", took, out.String())
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("flint power still running 5s after SIGINT: %s", out.String())
		}
	})
	t.Logf("the machine's power log: %v", powerLines())
}

// TestPowerIPMISimBootOverride: ipmi_sim with a chassis control program (its
// interface to a board's power and boot-device lines) takes boot overrides.
// `flint power pxe` sets the next boot to PXE (the program records what
// ipmi_sim passed it), and `flint reprovision --reboot` does the same before
// it power-cycles the machine. The program holds the power state in a file.
func TestPowerIPMISimBootOverride(t *testing.T) {
	needBinaries(t)
	needTools(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	lanPort := freePort(t, "udp")
	const password = "Pa55-not-4-logs"
	calls := filepath.Join(dir, "chassis.log")
	state := filepath.Join(dir, "power")
	boot := filepath.Join(dir, "boot")
	program := filepath.Join(dir, "chassis.sh")
	// ipmi_sim runs "PROG 0x20 get PARM..." (answering PARM:VALUE lines)
	// and "PROG 0x20 set PARM VALUE..." (silent on success).
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]s
shift
op=$1; shift
case $op in
get)
  for p in "$@"; do
    case $p in
    power) echo "power:$(cat %[2]s 2>/dev/null || echo 0)" ;;
    boot) echo "boot:$(cat %[3]s 2>/dev/null || echo default)" ;;
    *) echo "no $p"; exit 1 ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    case $1 in
    power) echo "$2" > %[2]s ;;
    boot) echo "$2" > %[3]s ;;
    reset) ;;
    *) echo "no $1"; exit 1 ;;
    esac
    shift 2
  done ;;
*) exit 1 ;;
esac
`, calls, state, boot)
	if err := os.WriteFile(program, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sim, err := ipmisim.Start(ipmisim.Options{
		Dir: dir, Addr: netip.MustParseAddr("127.0.0.1"), LANPort: lanPort,
		User: "flint", Password: password, ChassisControl: program,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sim.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(sim.Log)
			c, _ := os.ReadFile(calls)
			t.Logf("ipmi_sim log:\n%s\nchassis program calls:\n%s", b, c)
		}
	})
	pwFile := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(dir, "site.yaml")
	text := fmt.Sprintf(`dhcp: {mode: proxy}
machines:
  - mac: "52:54:00:00:00:61"
    hostname: node1
    ip: 198.18.0.61
    role: server
    bmc: {type: ipmi, address: "127.0.0.1:%d", username: flint, password_file: %s}
`, lanPort, pwFile)
	if err := os.WriteFile(site, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	power := func(args ...string) Result {
		t.Helper()
		r := runFlint(t, append(append([]string{"power"}, args...), "--config", site)...)
		t.Logf("$ flint power %s -> exit %d in %v: %s%s", strings.Join(args, " "), r.Code, r.Dur.Round(time.Millisecond), r.Stdout, r.Stderr)
		return r
	}
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}

	t.Run("pxe sets the next boot device, through ipmi_sim to the program", func(t *testing.T) {
		if r := power("status", "node1"); r.Code != 0 || r.Stdout != "node1: off\n" {
			t.Fatalf("%s", r)
		}
		if r := power("pxe", "node1"); r.Code != 0 || !strings.Contains(r.Stdout, "node1: next boot is a network boot") {
			t.Fatalf("%s", r)
		}
		if got := read(boot); got != "pxe" {
			t.Fatalf("the BMC's boot device is %q after flint power pxe, want pxe; program calls:\n%s", got, read(calls))
		}
		if !strings.Contains(read(calls), "0x20 set boot pxe") {
			t.Errorf("ipmi_sim never set the boot device: %s", read(calls))
		}
	})
	t.Run("cycle is power 0, then power 1", func(t *testing.T) {
		if r := power("on", "node1"); r.Code != 0 || read(state) != "1" {
			t.Fatalf("on: power %q: %s", read(state), r)
		}
		if err := os.WriteFile(calls, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if r := power("cycle", "node1"); r.Code != 0 {
			t.Fatalf("%s", r)
		}
		// ipmi_sim powers off at once and on again a second later.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(read(calls), "set power 1") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := read(calls); !strings.Contains(got, "0x20 set power 0") || !strings.Contains(got, "0x20 set power 1") || strings.Index(got, "set power 0") > strings.Index(got, "set power 1") {
			t.Errorf("cycle: program calls %q, want set power 0 then set power 1", got)
		}
	})
	if strings.Contains(read(calls), password) {
		t.Error("ipmi_sim passed the password to the chassis program")
	}
}
