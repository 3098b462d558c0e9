package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/e2e/vlab"
)

// TestUEFIHTTPBootProxy boots the UEFI HTTP boot machine with flint in proxy
// DHCP mode next to the LAN's own DHCP server (dnsmasq, which hands out the
// machine's reserved address): OVMF takes its address from dnsmasq and the
// http:// URL of ipxe.efi from flint's address-less offer, fetches it over
// HTTP, and iPXE boots the test OS as in full mode. No TFTP on the wire.
func TestUEFIHTTPBootProxy(t *testing.T) {
	needPrerequisites(t)
	osDir := buildTestOS(t)
	var vm vlab.VM
	for _, v := range vlab.Machines {
		if v.HTTPBoot {
			vm = v
		}
	}
	timeout := vmTimeout(t)
	dir := labDir(t)
	lab, err := vlab.Up(vlab.Options{
		NS: "flt-" + randHex(3) + "-e2p", Dir: dir, FlintBin: flintBin, TestOSDir: osDir,
		VMs: []vlab.VM{vm}, ProxyDHCP: true,
	})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Down(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
		if t.Failed() || os.Getenv("FLINT_E2E_KEEP") != "" {
			t.Logf("==== flint log (last 80 lines of %s) ====\n%s", lab.FlintLog, tail(readFile(lab.FlintLog), 80))
			t.Logf("lab files kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	check := captureUDP(t, lab)

	p, err := lab.StartVM(vm)
	if err != nil {
		t.Fatalf("start %s: %v", vm.Name, err)
	}
	r := &vmRun{VM: vm, proc: p, start: time.Now()}
	if !p.Wait(timeout) {
		r.timedOut = true
		_ = p.Stop(2 * time.Second)
	}
	r.took = time.Since(r.start)
	r.console = vlab.ParseConsole(readFile(r.SerialLog(dir)))
	if r.events, err = lab.Admin.Events(r.MAC); err != nil {
		t.Errorf("events: %v", err)
	}

	c := r.console
	switch {
	case r.timedOut:
		t.Errorf("no power-off within %v: killed (test OS booted=%v dhcp=%q stages=%v)", timeout, c.Booted, c.DHCPIP, c.Stages)
	case c.Done == "":
		t.Errorf("test OS did not report E2E-DONE (fail %q, booted=%v, dhcp=%q, ignition URL=%q, stages=%v)", c.Fail, c.Booted, c.DHCPIP, c.IgnitionURL, c.Stages)
	}
	// The test OS's own DHCP: its address from the LAN's server, not flint.
	if c.DHCPIP != vm.IP || c.DHCPServer != vlab.RouterIP {
		t.Errorf("console: DHCP gave %q from %q, want the reservation %s from the LAN's DHCP server %s", c.DHCPIP, c.DHCPServer, vm.IP, vlab.RouterIP)
	}
	if r.bootToken() == "" {
		t.Errorf("ignition.config.url=%q, want flint's URL with a boot token", c.IgnitionURL)
	}
	checkIgnitionRequests(t, r)
	if !strings.HasPrefix(c.Stages["files"], "ok") {
		t.Errorf("Ignition stage files: %q, want ok", c.Stages["files"])
	}
	// flint's timeline, in order: its proxy offer, the firmware's HTTP GET
	// of ipxe.efi, then as in full mode.
	steps := []string{"dhcp proxy OFFER", "http " + vm.HTTPFile(), "http script",
		"http /assets/" + vlab.KernelAsset, "http /assets/" + vlab.InitrdAsset, "ignition served", "node config-applied"}
	i := 0
	for _, e := range r.events {
		if i < len(steps) && e.Event == steps[i] {
			i++
		}
		if strings.HasPrefix(e.Event, "tftp ") || strings.Contains(e.Event, "refused") {
			t.Errorf("timeline entry %q (%s)", e.Event, e.Detail)
		}
	}
	if i < len(steps) {
		t.Errorf("timeline lacks %q (after %v)", steps[i], steps[:i])
	}
	check(t, []*vmRun{r})
	t.Logf("%s", r.timeline())
	if t.Failed() {
		t.Logf("==== serial console of %s, last 80 lines ====\n%s", vm.Name, tail(redact(plainText(readFile(r.SerialLog(dir)))), 80))
		t.Logf("==== dnsmasq ====\n%s", tail(readFile(dir+"/dnsmasq.log"), 40))
	}
}
