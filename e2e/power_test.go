package e2e

import (
	"context"
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

	"github.com/flint-boot/flint/e2e/vlab"
	"github.com/flint-boot/flint/internal/ipmisim"
)

// The BMC in the lab: ipmi_sim on its own address on the lab bridge.
const (
	bmcAddr    = "198.18.0.2"
	bmcLANPort = 623
	bmcVMPort  = 9002 // QEMU's ipmi-bmc-extern connects here
	bmcUser    = "flint"
	bmcPass    = "e2e-Bmc-Pa55" // IPMI 2.0 allows 20 bytes
)

// TestReprovisionRebootIPMI: a QEMU machine whose power is behind a real
// IPMI BMC (OpenIPMI's ipmi_sim: its startcmd starts the VM, its power off
// stops it; QEMU's ipmi-bmc-extern links the VM to it). `flint power on`
// boots it from flint and it installs; it keeps running (flint.e2e.hold).
// Then `flint reprovision --reboot` arms it, asks the BMC for a network boot
// (ipmi_sim has no boot override and says so), power-cycles it through the
// BMC and follows its timeline until it has booted from flint again, fetched
// its config and reported it applied.
func TestReprovisionRebootIPMI(t *testing.T) {
	suiteStart := time.Now()
	needPrerequisites(t)
	var missing []string
	for tool, pkg := range map[string]string{"ipmi_sim": "openipmi", "ipmitool": "ipmitool"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		unavailable(t, "missing: %s", strings.Join(missing, ", "))
	}
	osDir := buildTestOS(t)
	timeout := vmTimeout(t)
	dir := labDir(t)

	pwFile := filepath.Join(dir, "bmc.password")
	if err := os.WriteFile(pwFile, []byte(bmcPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vm := vlab.VM{
		Name: "ipmi", Desc: "SeaBIOS, virtio-net with QEMU's iPXE ROM, powered through ipmi_sim",
		NIC: "virtio-net-pci", MAC: "52:54:00:e2:e0:21", Hostname: "e2e-ipmi", IP: "198.18.0.21", Role: "agent", Tap: "tap-ipmi",
		KernelArgs: []string{"flint.e2e.hold"},
		BMC:        fmt.Sprintf("{type: ipmi, address: %q, username: %s, password_file: %s, timeout: 60s}", bmcAddr, bmcUser, pwFile),
	}
	// The config needs a server; this one stays off.
	server := vlab.Machines[0]
	lab, err := vlab.Up(vlab.Options{
		NS: "flt-" + randHex(3) + "-pwr", Dir: dir, FlintBin: flintBin, TestOSDir: osDir,
		VMs: []vlab.VM{server, vm},
	})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	var sim *ipmisim.Sim
	qemuPID := filepath.Join(dir, "vm-ipmi.qemu.pid")
	t.Cleanup(func() {
		if sim != nil {
			sim.Stop()
		}
		if b, err := os.ReadFile(qemuPID); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = vlab.StopPID(pid, "qemu-system", 3*time.Second)
			}
		}
		if err := lab.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if t.Failed() {
			t.Logf("lab files in %s (flint.log, vm-ipmi.serial.log*, bmc/ipmi_sim.log, power.log)", dir)
		}
	})
	if err := lab.Net.Exec(5*time.Second, "ip", "addr", "add", bmcAddr+"/24", "dev", vlab.Bridge); err != nil {
		t.Fatal(err)
	}

	// The machine: what the BMC's startcmd runs on power on. Each power-on
	// is logged, and each boot gets its own serial log.
	qargs, err := vm.QEMUArgs(dir)
	if err != nil {
		t.Fatal(err)
	}
	qargs = append(qargs,
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=%s,port=%d,reconnect=10", bmcAddr, bmcVMPort),
		"-device", "ipmi-bmc-extern,chardev=ipmi0,id=bmc0",
		"-device", "isa-ipmi-kcs,bmc=bmc0")
	powerLog := filepath.Join(dir, "power.log")
	serial := vm.SerialLog(dir)
	var quoted []string
	for _, a := range qargs {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	script := fmt.Sprintf(`#!/bin/sh
# ipmi_sim's startcmd: the machine is on while this QEMU runs.
n=$(( $(grep -c . %[1]s 2>/dev/null || echo 0) + 1 ))
echo "on $n $(date +%%s.%%N)" >> %[1]s
[ -f %[2]s ] && mv %[2]s %[2]s.$((n-1))
echo $$ > %[3]s
exec qemu-system-x86_64 %[4]s >> %[5]s 2>&1
`, powerLog, serial, qemuPID, strings.Join(quoted, " "), filepath.Join(dir, "vm-ipmi.qemu.log"))
	machine := filepath.Join(dir, "machine.sh")
	if err := os.WriteFile(machine, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bmcDir := filepath.Join(dir, "bmc")
	if err := os.MkdirAll(bmcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sim, err = ipmisim.Start(ipmisim.Options{
		Dir: bmcDir, Addr: netip.MustParseAddr(bmcAddr), LANPort: bmcLANPort, SerialPort: bmcVMPort,
		User: bmcUser, Password: bmcPass, StartCmd: machine, PoweroffWait: 5,
		Wrap: []string{"ip", "netns", "exec", lab.Net.NS},
	})
	if err != nil {
		t.Fatal(err)
	}

	// flint's CLI runs in the lab namespace (where the BMC's address is).
	flint := func(limit time.Duration, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", lab.Net.NS, flintBin}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 2 * time.Second
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("$ flint %s  (%v, %v)\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, out)
		if strings.Contains(string(out), bmcPass) {
			t.Errorf("the BMC password is in flint's output")
		}
		return string(out), err
	}
	powerOns := func() []string {
		b, _ := os.ReadFile(powerLog)
		return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " |"))
	}
	waitInstalled := func(after time.Time) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			ms, err := lab.Admin.Machines()
			if err == nil {
				for _, m := range ms {
					if m.MAC == vm.MAC && m.State == "installed" && !m.StateChanged.Before(after) {
						return
					}
				}
			}
			time.Sleep(time.Second)
		}
		t.Fatalf("%s not installed within %v; serial log:\n%s", vm.Hostname, timeout, tail(readFile(serial), 30))
	}

	t.Run("the BMC reports the machine off", func(t *testing.T) {
		out, err := flint(30*time.Second, "power", "status", vm.Hostname, "--config", lab.ConfigPath)
		if err != nil || out != vm.Hostname+": off\n" {
			t.Fatalf("%v: %s", err, out)
		}
	})
	firstOn := time.Now()
	t.Run("power on: it boots from flint and installs", func(t *testing.T) {
		out, err := flint(90*time.Second, "power", "on", vm.Hostname, "--config", lab.ConfigPath)
		if err != nil || !strings.Contains(out, vm.Hostname+": switched on (ipmi "+bmcAddr+":623)") {
			t.Fatalf("%v: %s", err, out)
		}
		waitInstalled(firstOn)
		t.Logf("installed %v after power on; power log %v", time.Since(firstOn).Round(time.Second), powerOns())
		// It keeps running, as an installed node does.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(readFile(serial), "E2E-HOLD") && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
		}
		if !strings.Contains(readFile(serial), "E2E-HOLD") {
			t.Fatalf("the machine did not stay up; serial log:\n%s", tail(readFile(serial), 20))
		}
		if out, _ := flint(30*time.Second, "power", "status", vm.Hostname, "--config", lab.ConfigPath); out != vm.Hostname+": on\n" {
			t.Fatalf("status after install: %s", out)
		}
	})
	if t.Failed() {
		return
	}

	var out string
	rebootStart := time.Now()
	t.Run("reprovision --reboot: armed, power-cycled through the BMC, reinstalled, followed", func(t *testing.T) {
		out, err = flint(timeout+time.Minute, "reprovision", vm.Hostname, "--reboot", "--data", lab.DataDir, "--config", lab.ConfigPath, "--wait", timeout.String())
		if err != nil {
			t.Fatalf("reprovision --reboot: %v", err)
		}
		for _, want := range []string{
			"armed: " + vm.Hostname + " reinstalls on its next network boot",
			// ipmi_sim without a chassis control program takes no boot
			// override: flint says so and relies on the boot order.
			"warning: " + vm.Hostname + ": could not set the next boot to the network through the BMC (ipmi " + bmcAddr + ":623)",
			vm.Hostname + ": power-cycled (ipmi " + bmcAddr + ":623); its timeline follows",
			"reprovision armed", "dhcp ACK", "http script", "http /assets/" + vlab.KernelAsset, "ignition served", "node config-applied",
			vm.Hostname + ": installed, ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("reprovision output lacks %q", want)
			}
		}
		// The followed timeline is in the order the machine booted.
		steps := []string{"reprovision armed", "dhcp ACK", "http script", "http /assets/" + vlab.KernelAsset, "http /assets/" + vlab.InitrdAsset, "ignition served", "node config-applied"}
		i := 0
		for _, ln := range strings.Split(out, "\n") {
			if i < len(steps) && strings.Contains(ln, " "+steps[i]+" ") {
				i++
			}
		}
		if i < len(steps) {
			t.Errorf("the followed timeline lacks %q after %v", steps[i], steps[:i])
		}
	})
	t.Run("the BMC power-cycled the VM: a second QEMU booted from flint", func(t *testing.T) {
		ons := powerOns()
		if len(ons) < 6 || ons[0] != "on" || ons[3] != "|on" || ons[4] != "2" {
			t.Fatalf("power log %v: want two power-ons", ons)
		}
		at, _ := strconv.ParseFloat(ons[5], 64)
		if second := time.Unix(0, int64(at*1e9)); second.Before(rebootStart) {
			t.Errorf("second power-on at %v, before reprovision started (%v)", second, rebootStart)
		}
		first, second := readFile(serial+".1"), readFile(serial)
		if !strings.Contains(first, "E2E-DONE") || !strings.Contains(second, "E2E-DONE") || !strings.Contains(second, "E2E-HOLD") {
			t.Errorf("serial logs: first boot:\n%s\nsecond boot:\n%s", tail(first, 10), tail(second, 10))
		}
		evs, err := lab.Admin.Events(vm.MAC)
		if err != nil {
			t.Fatal(err)
		}
		var configs int
		for _, e := range evs {
			if e.Event == "ignition served" {
				configs++
			}
		}
		if configs != 2 {
			t.Errorf("flint served the config %d times, want 2 (install and reinstall)", configs)
		}
	})
	t.Run("power off through the BMC", func(t *testing.T) {
		if out, err := flint(60*time.Second, "power", "off", vm.Hostname, "--config", lab.ConfigPath); err != nil || !strings.Contains(out, "switched off") {
			t.Fatalf("%v: %s", err, out)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if out, _ := flint(30*time.Second, "power", "status", vm.Hostname, "--config", lab.ConfigPath); out == vm.Hostname+": off\n" {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("still on 20s after power off")
	})
	t.Logf("power log: %v; whole test %v", powerOns(), time.Since(suiteStart).Round(time.Second))
}
