package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/e2e/vlab"
)

// defaultVMTimeout bounds each machine from QEMU start to power-off. A
// passing boot takes 40-90 s on 2 cores without KVM (iPXE alone idles ~13 s
// after DHCP). FLINT_E2E_VM_TIMEOUT (a Go duration) overrides it.
const defaultVMTimeout = 170 * time.Second

func vmTimeout(t *testing.T) time.Duration {
	v := os.Getenv("FLINT_E2E_VM_TIMEOUT")
	if v == "" {
		return defaultVMTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("FLINT_E2E_VM_TIMEOUT=%q: %v", v, err)
	}
	return d
}

// TestNetbootMachines boots the lab's five machines from flint at the same
// time and checks, per machine, everything flint and the machine itself
// recorded: the reserved address, the first-stage file, the per-MAC script
// (or GRUB config) with its boot token, kernel and initrd, the pointer config
// and the real config over HTTPS, the files Ignition wrote, the node report
// over HTTPS with the report token, Secure Boot as the test OS found it, and
// the order of the boot timeline. Then, as each machine (its MAC and
// address, the machine being off), it fetches the machine's config URLs
// again: the token the boot spent is refused. tcpdump on the lab bridge
// records the boot's DHCP and TFTP requests: the UEFI HTTP boot machine's
// DHCP exchange as it was on the wire, and TFTP from the machines that boot
// over TFTP and from no other (captureUDP).
//
// Five TCG machines on 2 cores boot in ~80 s; four took 85-90 s and the
// Secure Boot machine alone ~30 s (the times vary with the machine's other
// load): one lab is cheaper than two.
func TestNetbootMachines(t *testing.T) { netboot(t, vlab.Machines, captureUDP) }

// watcher watches a lab from before its machines start; the function it
// returns checks what it saw once they are off.
type watcher func(t *testing.T, lab *vlab.Lab) func(t *testing.T, runs []*vmRun)

// netboot boots vms from one flint at the same time and checks each machine
// (see TestNetbootMachines). watch, if not nil, watches the lab.
func netboot(t *testing.T, vms []vlab.VM, watch watcher) {
	suiteStart := time.Now()
	needPrerequisites(t)
	osDir := buildTestOS(t)

	timeout := vmTimeout(t)
	dir := labDir(t)
	lab, err := vlab.Up(vlab.Options{
		NS:        "flt-" + randHex(3) + "-e2e",
		Dir:       dir,
		FlintBin:  flintBin,
		TestOSDir: osDir,
		VMs:       vms,
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
	t.Logf("lab %s: flint up (%s), booting %d machines", lab.Net.NS, lab.Flint.State(), len(vms))
	var check func(*testing.T, []*vmRun)
	if watch != nil {
		check = watch(t, lab)
	}

	// Boot all machines at once, like a rack powered on together.
	runs := make([]*vmRun, len(vms))
	var wg sync.WaitGroup
	for i, vm := range vms {
		p, err := lab.StartVM(vm)
		if err != nil {
			t.Fatalf("start %s: %v", vm.Name, err)
		}
		r := &vmRun{VM: vm, proc: p, start: time.Now()}
		runs[i] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !p.Wait(timeout) {
				r.timedOut = true
				_ = p.Stop(2 * time.Second)
			}
			r.took = time.Since(r.start)
		}()
	}
	wg.Wait()
	bootDone := time.Now()
	for _, r := range runs {
		r.console = vlab.ParseConsole(readFile(r.SerialLog(dir)))
	}

	// Each machine's config URLs fetched again, as the machine, now it is off.
	replayStart := time.Now()
	imp, err := lab.Impostor()
	if err != nil {
		t.Fatalf("impostor: %v", err)
	}
	for _, r := range runs {
		r.replayStart = replayStart
		r.replays, r.replayErr = replay(lab, imp, r)
	}

	// What flint recorded, read once every machine is off (admin socket).
	leases, err := lab.Admin.Leases()
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	machines, err := lab.Admin.Machines()
	if err != nil {
		t.Fatalf("machines: %v", err)
	}
	for _, r := range runs {
		for _, m := range machines {
			if strings.EqualFold(m.MAC, r.MAC) {
				r.record = m
			}
		}
		if r.events, err = lab.Admin.Events(r.MAC); err != nil {
			t.Errorf("%s: events: %v", r.Name, err)
		}
	}
	for _, r := range runs {
		r.config, r.configSize, r.configErr = renderIgnition(lab, r.VM)
	}

	for _, r := range runs {
		ok := t.Run(r.Name, func(t *testing.T) { checkMachine(t, lab, r, leases, timeout) })
		if !ok {
			t.Logf("==== serial console of %s (%s), last 120 lines of %s ====\n%s",
				r.Name, r.proc.State(), r.SerialLog(dir), tail(redact(plainText(readFile(r.SerialLog(dir)))), 120))
		}
	}
	t.Run("no address handed out twice", func(t *testing.T) { checkLeases(t, leases, len(vms)) })
	if check != nil {
		check(t, runs)
	}

	for _, r := range runs {
		t.Logf("%s", r.timeline())
	}
	t.Logf("suite %v: test OS + lab %v, boot of all machines %v, checks %v",
		time.Since(suiteStart).Round(time.Millisecond), runs[0].start.Sub(suiteStart).Round(time.Millisecond),
		bootDone.Sub(runs[0].start).Round(time.Millisecond), time.Since(bootDone).Round(time.Millisecond))
}

// vmRun is one machine's boot and everything recorded about it.
type vmRun struct {
	vlab.VM
	proc       *vlab.Proc
	start      time.Time
	took       time.Duration
	timedOut   bool
	console    *vlab.Console
	events     []vlab.Event
	record     vlab.Machine // flint's machine record
	config     *ignitionConfig
	configSize int // bytes of the rendered config, to compare with what flint logged serving
	configErr  error
	// The machine's config URLs fetched again after the boot, as the machine.
	replayStart time.Time
	replays     []vlab.Reply
	replayErr   error
}

// hex64 is the shape of every token flint hands out.
var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// bootToken is the token on the machine's kernel command line ("" if none).
func (r *vmRun) bootToken() string {
	tok, ok := strings.CutPrefix(r.console.IgnitionURL, vlab.FlintURL+"/ignition?mac="+r.HexHyp()+"&token=")
	if !ok || !hex64.MatchString(tok) {
		return ""
	}
	return tok
}

// secretURL is where the pointer config must send Ignition: the machine's
// config over HTTPS, with the boot token of its kernel command line.
func (r *vmRun) secretURL() string {
	return vlab.FlintHTTPSURL + "/ignition?mac=" + r.HexHyp() + "&token=" + r.bootToken()
}

// replay fetches the machine's config URLs again once it is off: first the
// HTTPS one (its config, which the boot's Ignition fetched once), then the
// plain HTTP one of its kernel command line. It does so from the impostor,
// which holds the machine's MAC and reserved address, so flint's
// lease-address rule lets the requests through and only the token decides.
func replay(lab *vlab.Lab, imp *vlab.Impostor, r *vmRun) ([]vlab.Reply, error) {
	if r.bootToken() == "" || r.console.Done == "" {
		// No token, or a boot that did not finish (checkMachine says why):
		// nothing to replay, and a config a failed boot never fetched
		// must not be served to the suite.
		return nil, nil
	}
	if err := imp.Become(r.VM); err != nil {
		return nil, err
	}
	var out []vlab.Reply
	for _, u := range []struct{ url, ca string }{{r.secretURL(), lab.CACert()}, {r.console.IgnitionURL, ""}} {
		rep, err := imp.Get(u.url, u.ca)
		if err != nil {
			return out, err
		}
		out = append(out, rep)
	}
	return out, nil
}

func checkMachine(t *testing.T, lab *vlab.Lab, r *vmRun, leases []vlab.Lease, timeout time.Duration) {
	c := r.console
	// 1. The machine finished by itself: the test OS powered it off.
	switch {
	case r.timedOut:
		t.Errorf("no power-off within %v: killed (test OS booted=%v dhcp=%q stages=%v)", timeout, c.Booted, c.DHCPIP, c.Stages)
	case r.proc.ExitCode() != 0:
		t.Errorf("qemu exited %s, want 0 (power-off); qemu log: %s", r.proc.State(), strings.TrimSpace(readFile(r.proc.LogPath)))
	}
	if c.Fail != "" {
		t.Errorf("test OS reported failure: %s", c.Fail)
	}
	if c.Done == "" {
		// Say how far it got (flint's timeline shows the steps before the
		// test OS) instead of listing every file that is consequently missing.
		t.Errorf("test OS did not report E2E-DONE (booted=%v, dhcp=%q, ignition URL=%q, stages=%v)",
			c.Booted, c.DHCPIP, c.IgnitionURL, c.Stages)
		checkTimeline(t, r)
		return
	}

	// 2. Its reserved address, as the machine saw it and as flint recorded it.
	if c.NICMAC != r.MAC {
		t.Errorf("test OS brought up NIC %q, want MAC %s", c.NICMAC, r.MAC)
	}
	wantDriver := map[string]string{"virtio-net-pci": "virtio_net", "e1000": "e1000"}[r.NIC]
	if c.NICDriver != wantDriver {
		t.Errorf("NIC driver %q, want %q", c.NICDriver, wantDriver)
	}
	if c.DHCPIP != r.IP || c.DHCPServer != vlab.FlintIP {
		t.Errorf("console: DHCP gave %q from server %q, want the reservation %s from flint %s", c.DHCPIP, c.DHCPServer, r.IP, vlab.FlintIP)
	}
	var mine []vlab.Lease
	for _, l := range leases {
		if strings.EqualFold(l.MAC, r.MAC) {
			mine = append(mine, l)
		}
	}
	if len(mine) != 1 || mine[0].IP != r.IP || mine[0].State != "bound" {
		t.Errorf("flint's leases for %s: %+v, want exactly one bound lease of %s", r.MAC, mine, r.IP)
	}

	// Secure Boot as the test OS found it: enforced on the Secure Boot
	// machine only (the firmware's variable, the kernel's word and its lockdown).
	checkSecureBoot(t, r)

	// flint told the firmware kinds apart by DHCP option 93 and saw iPXE.
	if r.record.Arch != r.Arch() || !r.record.Known || r.record.Hostname != r.Hostname {
		t.Errorf("flint's machine record: arch %q known %v hostname %q, want arch %q, known, %s", r.record.Arch, r.record.Known, r.record.Hostname, r.Arch(), r.Hostname)
	}
	// A live (PXE every boot) machine that applied its config is installed.
	if r.record.State != "installed" {
		t.Errorf("flint's machine record: lifecycle state %q, want installed after config-applied", r.record.State)
	}

	// 3. The Ignition URL flint's iPXE script put on the kernel command line:
	// plain HTTP, with a fresh boot token.
	if r.bootToken() == "" {
		t.Errorf("ignition.config.url=%q, want %s/ignition?mac=%s&token=<64 hex digits>", c.IgnitionURL, vlab.FlintURL, r.HexHyp())
	}
	for _, stage := range []string{"fetch", "files"} {
		if !strings.HasPrefix(c.Stages[stage], "ok") {
			t.Errorf("Ignition stage %s: %q, want ok", stage, c.Stages[stage])
		}
	}
	checkIgnitionRequests(t, r)

	// 4. The files Ignition laid down: what the role needs, and exactly what the config says.
	checkRoleFiles(t, lab, r)
	if r.configErr != nil {
		t.Errorf("fetch the served config to compare: %v", r.configErr)
	} else {
		checkConfigApplied(t, lab, r)
		// The render is the config flint served: same size as flint logged serving it.
		want := fmt.Sprintf("%d bytes", r.configSize)
		served := false
		for _, e := range r.events {
			served = served || (e.Event == "ignition served" && strings.Contains(e.Detail, want))
		}
		if !served {
			t.Errorf("no \"ignition served\" entry of %s (the size flint render makes)", want)
		}
	}

	// 5. The node report: posted over HTTPS with the config's report token,
	// to the URL the config's /opt/bin/flint-report names.
	if want := vlab.FlintHTTPSURL + "/api/v1/events"; c.EventsURL != want {
		t.Errorf("the config's /opt/bin/flint-report posts to %q, want %q", c.EventsURL, want)
	}
	if !slices.Contains(c.Events, "posted config-applied http=204") {
		t.Errorf("test OS did not post config-applied (204 from flint); its report lines: %q", c.Events)
	}

	// 6. flint's timeline of the boot.
	checkTimeline(t, r)

	// 7. The token is spent: the same URLs again, as the machine, are refused.
	checkReplay(t, r)
}

// checkIgnitionRequests checks, in the real Ignition client's own log, that
// it followed flint's pointer: the plain HTTP URL of the kernel command line
// (200), then the machine's config over HTTPS with the same token (200).
// Ignition checks flint's certificate against the CA the pointer carried; a
// certificate it did not trust would be a "GET error", never "OK".
func checkIgnitionRequests(t *testing.T, r *vmRun) {
	t.Helper()
	c := r.console
	pointer, secret := -1, -1
	var log []string
	for i, q := range c.Requests {
		log = append(log, fmt.Sprintf("%s: %s %s %s -> %s", q.Stage, q.Method, q.URL, q.Attempt, q.Result))
		if q.Stage != "fetch" {
			continue
		}
		switch q.URL {
		case c.IgnitionURL:
			if q.Result == "OK" && pointer < 0 {
				pointer = i
			}
		case r.secretURL():
			if q.Result == "OK" && secret < 0 {
				secret = i
			}
			if q.Result != "OK" {
				t.Errorf("Ignition's GET of its config over HTTPS: %s (attempt %s)", q.Result, q.Attempt)
			}
		default:
			t.Errorf("Ignition fetched %s in its fetch stage (%s): neither the pointer nor the config it names", q.URL, q.Result)
		}
	}
	switch {
	case pointer < 0:
		t.Errorf("Ignition's log shows no GET %s with result OK (the pointer config); its requests:\n%s", c.IgnitionURL, strings.Join(log, "\n"))
	case secret < 0:
		t.Errorf("Ignition's log shows no GET %s with result OK (the config over HTTPS); its requests:\n%s", r.secretURL(), strings.Join(log, "\n"))
	case secret < pointer:
		t.Errorf("Ignition fetched the HTTPS config before the pointer that names it:\n%s", strings.Join(log, "\n"))
	default:
		t.Logf("Ignition's requests:\n  %s", strings.Join(log, "\n  "))
	}
}

// checkReplay: fetched again as the machine after its boot, the machine's
// config is refused (403) for the token's sake, over HTTPS and over plain
// HTTP alike, and flint put both refusals on the machine's timeline. The
// reason proves the requests passed the lease-address rule: flint checks the
// address first and names it when it refuses for it.
func checkReplay(t *testing.T, r *vmRun) {
	t.Helper()
	const spent = "the boot token is unknown, used or expired"
	if r.replayErr != nil {
		t.Errorf("fetch the config again as %s: %v", r.Name, r.replayErr)
		return
	}
	if len(r.replays) != 2 {
		t.Errorf("fetched the config URLs again %d times, want 2 (HTTPS config, pointer)", len(r.replays))
		return
	}
	for _, rep := range r.replays {
		if rep.Status != 403 || !strings.Contains(rep.Body, spent) {
			t.Errorf("after the boot, as the machine: %v, want 403 %q", rep, spent)
		} else {
			t.Logf("after the boot, as the machine: %v", rep)
		}
	}
	want := map[string]bool{"ignition refused": false, "ignition pointer refused": false}
	for _, e := range r.events {
		if e.At.Before(r.replayStart) {
			continue
		}
		if _, ok := want[e.Event]; ok && e.IP == r.IP && strings.Contains(e.Detail, spent) {
			want[e.Event] = true
		}
	}
	for ev, seen := range want {
		if !seen {
			t.Errorf("timeline lacks %q from %s (%s) after the boot; got:\n%s", ev, r.IP, spent, r.timeline())
		}
	}
}

// checkRoleFiles checks the console summary for the files a server or an
// agent must have, with the hostname and the downloaded binaries by content.
func checkRoleFiles(t *testing.T, lab *vlab.Lab, r *vmRun) {
	t.Helper()
	files := r.console.Files
	wantFile := func(path, sum, mode string, uid int) {
		t.Helper()
		f, ok := files[path]
		switch {
		case !ok:
			t.Errorf("%s: not written by Ignition (role %s)", path, r.Role)
		case sum != "" && f.SHA256 != sum:
			t.Errorf("%s: sha256 %s, want %s", path, f.SHA256, sum)
		case mode != "" && (f.Mode != mode || f.UID != uid):
			t.Errorf("%s: mode %s uid %d, want %s uid %d", path, f.Mode, f.UID, mode, uid)
		}
	}
	asset := func(rel string) string { return sha256hex([]byte(vlab.FakeAssets[rel])) }

	wantFile("/etc/hostname", sha256hex([]byte(r.Hostname+"\n")), "644", 0)
	if r.console.Hostname != r.Hostname {
		t.Errorf("hostname %q, want %q", r.console.Hostname, r.Hostname)
	}
	wantFile("/etc/hosts", "", "644", 0)
	wantFile("/etc/systemd/network/00-flint.network", "", "644", 0)
	wantFile("/opt/bin/k3s", asset("k3s/k3s"), "755", 0)
	// What the node reports with: flint's own CA (the one its HTTPS server's
	// certificate chains to), the report token, the reporter.
	if ca, err := os.ReadFile(lab.CACert()); err != nil {
		t.Errorf("flint's CA: %v", err)
	} else {
		wantFile("/etc/flint/ca.crt", sha256hex(ca), "644", 0)
	}
	wantFile(reportHeaderPath, "", "600", 0)
	wantFile("/opt/bin/flint-report", "", "755", 0)
	wantFile("/etc/rancher/k3s/k3s.env", "", "600", 0)
	switch r.Role {
	case "server":
		wantFile("/etc/etcd/etcd.env", "", "644", 0)
		wantFile("/opt/bin/etcd", asset("etcd/etcd"), "755", 0)
		wantFile("/opt/bin/etcdctl", asset("etcd/etcdctl"), "755", 0)
		wantFile("/etc/ssl/etcd/server.key", "", "600", 232)
		wantFile("/etc/ssl/etcd/ca.crt", "", "644", 232)
		if d, ok := r.console.Dirs["/var/lib/etcd"]; !ok || d.Mode != "700" || d.UID != 232 {
			t.Errorf("/var/lib/etcd: %+v (present %v), want a directory mode 700 owned by 232", d, ok)
		}
	case "agent":
		for _, p := range []string{"/etc/etcd/etcd.env", "/opt/bin/etcd", "/etc/ssl/etcd/server.key"} {
			if _, ok := files[p]; ok {
				t.Errorf("%s: written on an agent (etcd runs on servers only)", p)
			}
		}
	}
}

// checkTimeline checks that flint recorded every step of the boot, in order,
// with the reserved address.
func checkTimeline(t *testing.T, r *vmRun) {
	t.Helper()
	if len(r.events) == 0 {
		t.Errorf("flint recorded no timeline for %s", r.MAC)
		return
	}
	// The steps, each expected after the one before it.
	steps := []string{"dhcp ACK"} // the firmware's (OVMF) or iPXE ROM's lease
	switch f := r.TFTPFile(); {
	case r.SecureBoot:
		// Shim, the GRUB it loads, GRUB's configs, kernel and initrd, all
		// over TFTP (the signed GRUB has no HTTP); GRUB keeps the firmware's
		// lease. The lifecycle records its decision (the machine's GRUB
		// config) as "tftp grub config", then the transfer.
		steps = append(steps, "tftp "+f, "tftp "+secureBootGrub, "tftp "+secureBootGrubCfg,
			"tftp grub config", "tftp /grub/machines/"+r.MAC+"/grub.cfg",
			"tftp /assets/"+vlab.KernelAsset, "tftp /assets/"+vlab.InitrdAsset)
	case f != "":
		steps = append(steps, "tftp "+f, "dhcp ACK") // then iPXE asks again
	case r.HTTPFile() != "":
		steps = append(steps, "http "+r.HTTPFile(), "dhcp ACK") // UEFI HTTP boot; then iPXE asks again
	}
	if !r.SecureBoot {
		steps = append(steps, "http script", "http /assets/"+vlab.KernelAsset, "http /assets/"+vlab.InitrdAsset)
	}
	steps = append(steps,
		"dhcp ACK",            // the test OS's udhcpc
		"ignition served",     // over TLS (the pointer over plain HTTP is not on the timeline)
		"node config-applied", // what a Flatcar node's flint-report-applied.service posts
	)
	// A failed transfer does not count as the step: OVMF's PXE first asks for
	// the size only and aborts (TFTP error 8), then downloads.
	i := 0
	for _, e := range r.events {
		if i < len(steps) && e.Event == steps[i] && !strings.HasPrefix(e.Detail, "failed") {
			switch e.Event {
			case "ignition served":
				if !strings.HasPrefix(e.Detail, "over TLS") || e.IP != r.IP {
					t.Errorf("ignition served to %s: %q, want over TLS to %s", e.IP, e.Detail, r.IP)
				}
			case "node config-applied":
				if e.IP != r.IP {
					t.Errorf("node config-applied from %s, want %s", e.IP, r.IP)
				}
			}
			i++
		}
	}
	if i < len(steps) {
		t.Errorf("timeline lacks %q (after %v); got:\n%s", steps[i], steps[:i], r.timeline())
	}
	for j, e := range r.events {
		if j > 0 && e.At.Before(r.events[j-1].At) {
			t.Errorf("timeline not in time order at %d: %v before %v", j, e.At, r.events[j-1].At)
		}
		if strings.HasPrefix(e.Event, "dhcp OFFER") || strings.HasPrefix(e.Event, "dhcp ACK") {
			if e.IP != r.IP {
				t.Errorf("%s at %s gave %s, want the reservation %s", e.Event, e.At.Format(time.RFC3339Nano), e.IP, r.IP)
			}
		}
		if r.TFTPFile() == "" && strings.HasPrefix(e.Event, "tftp ") {
			t.Errorf("%s: a machine whose NIC ROM is iPXE, or that boots over HTTP, must never use TFTP", e.Event)
		}
		if strings.Contains(e.Event, "(unknown)") || strings.Contains(e.Event, "(waiting)") || strings.Contains(e.Event, "failed") {
			t.Errorf("timeline entry %q (%s)", e.Event, e.Detail)
		}
		// Refusals are expected only of the fetches after the boot (checkReplay).
		if strings.Contains(e.Event, "refused") && (r.replayStart.IsZero() || e.At.Before(r.replayStart)) {
			t.Errorf("timeline entry %q during the boot (%s)", e.Event, e.Detail)
		}
	}
}

// checkLeases: every lease belongs to one lab machine, and no address or MAC appears twice.
func checkLeases(t *testing.T, leases []vlab.Lease, machines int) {
	byIP, byMAC := map[string]string{}, map[string]string{}
	for _, l := range leases {
		if prev, ok := byIP[l.IP]; ok {
			t.Errorf("address %s leased to %s and %s", l.IP, prev, l.MAC)
		}
		byIP[l.IP] = l.MAC
		if prev, ok := byMAC[l.MAC]; ok {
			t.Errorf("MAC %s holds %s and %s", l.MAC, prev, l.IP)
		}
		byMAC[l.MAC] = l.IP
	}
	if len(leases) != machines {
		t.Errorf("%d leases, want %d (one per machine): %+v", len(leases), machines, leases)
	}
}

// timeline renders the machine's boot timeline, times relative to its QEMU start.
func (r *vmRun) timeline() string {
	var b strings.Builder
	end := "powered off"
	if r.timedOut {
		end = "killed"
	}
	fmt.Fprintf(&b, "timeline of %s (%s, %s, %s, %s) — QEMU started %s, %s after %v:\n",
		r.Name, r.Hostname, r.MAC, r.Role, r.Desc, r.start.Format("15:04:05.000"), end, r.took.Round(time.Millisecond))
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s  %+8.2fs  %-32s %-13s %s\n", e.At.Local().Format("15:04:05.000"), e.At.Sub(r.start).Seconds(), e.Event, e.IP, e.Detail)
	}
	return b.String()
}

// labDir is where a run keeps config, data and logs: kept for a failed run.
func labDir(t *testing.T) string {
	base := filepath.Join(cacheDir(), "runs")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, time.Now().Format("20060102-150405-"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p, err)
	}
	return string(b)
}

var (
	ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)
	backspaces = regexp.MustCompile(`(\x08 \x08|\x08)+`)
)

// redact hides the report token the test OS prints (E2E-REPORT-HEADER) in
// a console dump: it stays valid for reports after the boot.
func redact(s string) string {
	return reportHeaderLine.ReplaceAllString(s, "${1}<redacted>")
}

var reportHeaderLine = regexp.MustCompile(`(E2E-REPORT-HEADER Authorization: Bearer )[0-9a-f]{64}`)

// plainText strips what firmware consoles send for a screen (ANSI escapes,
// iPXE's backspace countdown, carriage returns) from a serial log.
func plainText(s string) string {
	s = ansiEscape.ReplaceAllString(s, "")
	s = backspaces.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "\r", "")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before ...]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
