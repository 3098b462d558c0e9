package lifecycle

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

const siteConfig = `
server: {address: 198.18.0.1}
dhcp: {mode: MODE, subnet: 198.18.0.0/24}
cluster: {install_mode: INSTALL}
assets: {flatcar: {version: 4152.2.0}}
machines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.61, role: server}
  - {mac: "52:54:00:00:00:02", hostname: nuc2, ip: 198.18.0.62, role: server}
  - {mac: "52:54:00:00:00:03", hostname: nuc3, ip: 198.18.0.63, role: server}
  - {mac: "52:54:00:00:00:04", hostname: nuc4, ip: 198.18.0.64, role: agent}
`

type fixture struct {
	cfg *config.Config
	st  *store.Bolt
	m   *Manager
	etc *fakeEtcd
}

type fakeEtcd struct {
	mu        sync.Mutex
	calls     []string
	endpoints [][]string
	err       error
	release   chan struct{} // when set, PrepareRejoin blocks until closed
}

func (f *fakeEtcd) PrepareRejoin(ctx context.Context, name, peerURL string) (string, error) {
	if f.release != nil {
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name+" "+peerURL)
	return "", f.err
}
func (f *fakeEtcd) Close() error { return nil }

func newFixture(t *testing.T, mode, install string) *fixture {
	t.Helper()
	text := strings.NewReplacer("MODE", mode, "INSTALL", install).Replace(siteConfig)
	cfg, err := config.Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var known []store.KnownMachine
	for _, m := range cfg.Machines {
		known = append(known, store.KnownMachine{MAC: m.MAC, Hostname: m.Hostname, Role: m.Role, ReservedIP: m.IPAddr})
	}
	if err := st.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	f := &fixture{cfg: cfg, st: st, etc: &fakeEtcd{}}
	f.m = New(cfg, st, func(ctx context.Context, endpoints []string) (Rejoiner, error) {
		f.etc.mu.Lock()
		f.etc.endpoints = append(f.etc.endpoints, endpoints)
		f.etc.mu.Unlock()
		return f.etc, nil
	}, nil)
	return f
}

func mac(s string) config.MAC { hw, _ := config.ParseMAC(s); return hw }

var (
	nuc1 = mac("52:54:00:00:00:01")
	nuc2 = mac("52:54:00:00:00:02")
	nuc4 = mac("52:54:00:00:00:04")
	ip2  = netip.MustParseAddr("198.18.0.62")
	ip4  = netip.MustParseAddr("198.18.0.64")
)

func (f *fixture) state(t *testing.T, hw config.MAC) store.Machine {
	t.Helper()
	r, ok := f.m.machineRecord(hw.String())
	if !ok {
		t.Fatalf("no record of %s", hw)
	}
	return r
}

func (f *fixture) events(t *testing.T, hw config.MAC) string {
	ev, err := f.st.Events(hw.String())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ev {
		b.WriteString(e.Event + ": " + e.Detail + "\n")
	}
	return b.String()
}

func TestDiskInstallClosesTheWindow(t *testing.T) {
	f := newFixture(t, "proxy", "disk")
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("ready machine: %v", v)
	}
	f.m.ConfigServed(nuc4)
	if s := f.state(t, nuc4).State; s != store.StateInstalling {
		t.Fatalf("after serving: %s", s)
	}
	// The installer fetches the installed-system config: still inside the window.
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("installing machine: %v", v)
	}
	// config-applied comes from the live installer too; only install-finished ends a disk install.
	f.m.NodeEvent(nuc4, ip4, EventConfigApplied)
	if f.m.BootsLocally(nuc4) {
		t.Fatal("boots locally before install-finished")
	}
	if err := f.m.NodeEvent(nuc4, ip4, EventInstallFinished); err != nil {
		t.Fatal(err)
	}
	if s := f.state(t, nuc4).State; s != store.StateInstalled {
		t.Fatalf("after install-finished: %s", s)
	}
	if !f.m.BootsLocally(nuc4) {
		t.Fatal("installed disk machine should boot its disk")
	}
	v, reason := f.m.ConfigRequest(nuc4, ip4)
	if v != Refuse || !strings.Contains(reason, "flint reprovision nuc4") {
		t.Fatalf("installed machine: %v %q", v, reason)
	}
	if !strings.Contains(f.events(t, nuc4), "ignition refused") {
		t.Errorf("refusal not on the timeline:\n%s", f.events(t, nuc4))
	}

	// An agent is armed without confirmation and may install again.
	plan, err := Reprovision(f.st, "nuc4", false, time.Now())
	if err != nil || !plan.Armed || plan.NeedsConfirm {
		t.Fatalf("reprovision agent: %+v %v", plan, err)
	}
	if f.m.BootsLocally(nuc4) {
		t.Fatal("a re-armed machine must PXE-install, not boot its disk")
	}
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("re-armed machine: %v", v)
	}
}

func TestLiveMachinesGetTheirConfigOnEveryBoot(t *testing.T) {
	f := newFixture(t, "proxy", "live")
	f.m.ConfigServed(nuc4)
	f.m.NodeEvent(nuc4, ip4, EventConfigApplied)
	if s := f.state(t, nuc4).State; s != store.StateInstalled {
		t.Fatalf("after config-applied: %s", s)
	}
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("installed live machine: %v", v)
	}
	if f.m.BootsLocally(nuc4) {
		t.Fatal("a live machine never boots a disk")
	}
	if v, _ := f.m.ConfigRequest(mac("52:54:00:00:00:99"), ip4); v != Unknown {
		t.Fatalf("unknown MAC: %v", v)
	}
}

func TestFullModeServesOnlyTheLeasedAddress(t *testing.T) {
	f := newFixture(t, "full", "live")
	v, reason := f.m.ConfigRequest(nuc4, ip4)
	if v != Refuse || !strings.Contains(reason, "holds no lease") {
		t.Fatalf("no lease: %v %q", v, reason)
	}
	if err := f.st.PutLease(store.Lease{IP: ip4, MAC: nuc4.String(), State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("from its lease: %v", v)
	}
	v, reason = f.m.ConfigRequest(nuc4, netip.MustParseAddr("198.18.0.77"))
	if v != Refuse || !strings.Contains(reason, "request from 198.18.0.77, but flint leased 198.18.0.64") {
		t.Fatalf("another address: %v %q", v, reason)
	}
	if err := f.m.NodeEvent(nuc4, netip.MustParseAddr("198.18.0.77"), EventConfigApplied); !errors.Is(err, ErrRefused) {
		t.Fatalf("event from another address: %v", err)
	}
	// The refusal is on nuc4's timeline, but nuc4 is not at the requester's address.
	if ip := f.state(t, nuc4).IP; ip.String() == "198.18.0.77" {
		t.Errorf("a refused request moved nuc4 to the requester's address %s", ip)
	}
	if !strings.Contains(f.events(t, nuc4), "ignition refused: request from 198.18.0.77") {
		t.Errorf("timeline:\n%s", f.events(t, nuc4))
	}
}

func TestServerRebuild(t *testing.T) {
	f := newFixture(t, "proxy", "live")
	plan, err := Reprovision(f.st, "nuc2", false, time.Now())
	if err != nil || plan.Armed || !plan.NeedsConfirm || !strings.Contains(strings.Join(plan.Steps, "\n"), "remove nuc2's old etcd member and add it back with peer URL https://198.18.0.62:2380") {
		t.Fatalf("plan without --yes: %+v %v", plan, err)
	}
	if s := f.state(t, nuc2).State; s != store.StateReady {
		t.Fatalf("explaining must not arm: %s", s)
	}
	if plan, err = Reprovision(f.st, "nuc2", true, time.Now()); err != nil || !plan.Armed {
		t.Fatalf("arm: %+v %v", plan, err)
	}
	// A second server while nuc2 rebuilds: refused.
	if _, err := Reprovision(f.st, "nuc1", true, time.Now()); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "nuc2") {
		t.Fatalf("second server: %v", err)
	}
	if s := f.state(t, nuc1).State; s != store.StateReady {
		t.Fatalf("refused reprovision changed nuc1: %s", s)
	}

	f.etc.release = make(chan struct{})
	v, reason := f.m.ConfigRequest(nuc2, ip2)
	if v != Wait || !strings.Contains(reason, "replacing nuc2's etcd member") {
		t.Fatalf("first request: %v %q", v, reason)
	}
	if v, _ := f.m.ConfigRequest(nuc2, ip2); v != Wait {
		t.Fatalf("while preparing: %v", v)
	}
	if got := f.m.ClusterState(&f.cfg.Machines[1]); got != "new" {
		t.Fatalf("cluster state before the member is re-added: %s", got)
	}
	close(f.etc.release)
	waitFor(t, func() bool { return f.state(t, nuc2).EtcdRejoin })
	if v, _ := f.m.ConfigRequest(nuc2, ip2); v != Serve {
		t.Fatalf("after the member was re-added: %v", v)
	}
	if got := f.m.ClusterState(&f.cfg.Machines[1]); got != "existing" {
		t.Fatalf("cluster state: %s", got)
	}
	f.etc.mu.Lock()
	calls, eps := f.etc.calls, f.etc.endpoints
	f.etc.mu.Unlock()
	if len(calls) != 1 || calls[0] != "nuc2 https://198.18.0.62:2380" {
		t.Fatalf("PrepareRejoin calls: %q", calls)
	}
	if strings.Join(eps[0], ",") != "https://198.18.0.61:2379,https://198.18.0.63:2379" {
		t.Fatalf("admin endpoints %q must be the other members", eps[0])
	}
	// Healthy again: the next server may be rebuilt.
	f.m.ConfigServed(nuc2)
	if err := f.m.NodeEvent(nuc2, ip2, EventEtcdHealthy); err != nil {
		t.Fatal(err)
	}
	f.m.NodeEvent(nuc2, ip2, EventConfigApplied)
	if _, err := Reprovision(f.st, "nuc1", true, time.Now()); err != nil {
		t.Fatalf("nuc1 after nuc2 is healthy: %v", err)
	}
	if !strings.Contains(f.events(t, nuc2), "etcd rejoin prepared") {
		t.Errorf("timeline:\n%s", f.events(t, nuc2))
	}
}

// A live server runs from RAM: after its first install every boot must
// rejoin etcd as a wiped member, one server at a time.
func TestLiveServerRebootRejoins(t *testing.T) {
	f := newFixture(t, "proxy", "live")
	ip1 := netip.MustParseAddr("198.18.0.61")
	for _, hw := range []config.MAC{nuc1, nuc2} {
		if v, _ := f.m.ConfigRequest(hw, ip2); v != Serve {
			t.Fatalf("first boot of %s: %v", hw, v)
		}
		f.m.ConfigServed(hw)
		f.m.NodeEvent(hw, ip2, EventConfigApplied)
	}
	if got := f.m.ClusterState(&f.cfg.Machines[0]); got != "new" {
		t.Fatalf("first boot state: %s", got)
	}
	// nuc1 reboots: flint rebuilds its member before serving.
	f.etc.release = make(chan struct{})
	if v, reason := f.m.ConfigRequest(nuc1, ip1); v != Wait || !strings.Contains(reason, "replacing nuc1's etcd member") {
		t.Fatalf("reboot of a live server: %v %q", v, reason)
	}
	// nuc2 reboots at the same time: it waits its turn.
	if v, reason := f.m.ConfigRequest(nuc2, ip2); v != Wait || !strings.Contains(reason, "nuc1 is still rebuilding") {
		t.Fatalf("second live server: %v %q", v, reason)
	}
	close(f.etc.release)
	waitFor(t, func() bool { return f.state(t, nuc1).EtcdRejoin })
	if v, _ := f.m.ConfigRequest(nuc1, ip1); v != Serve {
		t.Fatalf("after the rejoin: %v", v)
	}
	if got := f.m.ClusterState(&f.cfg.Machines[0]); got != "existing" {
		t.Fatalf("cluster state after a live reboot: %s", got)
	}
	// A live agent has no etcd member: its reboots are plain.
	f.m.ConfigServed(nuc4)
	f.m.NodeEvent(nuc4, ip4, EventConfigApplied)
	if v, _ := f.m.ConfigRequest(nuc4, ip4); v != Serve {
		t.Fatalf("live agent reboot: %v", v)
	}
}

func TestRebuildRefusedWithoutQuorum(t *testing.T) {
	f := newFixture(t, "proxy", "live")
	f.etc.err = errors.New("etcd quorum would be lost: nuc3 is unhealthy")
	f.m.RetryRejoin = time.Hour
	if _, err := Reprovision(f.st, "nuc2", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.m.ConfigRequest(nuc2, ip2)
	waitFor(t, func() bool { return strings.Contains(f.events(t, nuc2), "etcd rejoin refused") })
	v, reason := f.m.ConfigRequest(nuc2, ip2)
	if v != Wait || !strings.Contains(reason, "quorum would be lost: nuc3") {
		t.Fatalf("after refusal: %v %q", v, reason)
	}
	if f.state(t, nuc2).EtcdRejoin {
		t.Fatal("a refused rejoin must not render state existing")
	}
	if _, err := Reprovision(f.st, "nuc9", true, time.Now()); err == nil || !strings.Contains(err.Error(), "known: nuc1, nuc2, nuc3, nuc4") {
		t.Fatalf("unknown name: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
