package lifecycle

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/store"
)

// bootServer runs one server's first boot to installed (live mode).
func (f *fixture) bootServer(t *testing.T, hw config.MAC, ip netip.Addr) Admission {
	t.Helper()
	f.dhcp(t, hw, ip)
	a := f.deliver(t, hw, ip, f.script(t, hw, ip), StageBoot)
	if err := f.report(hw, ip, a.Boot.ReportToken, EventConfigApplied); err != nil {
		t.Fatal(err)
	}
	return a
}

// installDisk runs one machine's disk install to installed.
func (f *fixture) installDisk(t *testing.T, hw config.MAC, ip netip.Addr) {
	t.Helper()
	f.dhcp(t, hw, ip)
	a := f.deliver(t, hw, ip, f.script(t, hw, ip), StageBoot)
	f.deliver(t, hw, ip, a.Boot.InstalledToken, StageInstalled)
	if err := f.report(hw, ip, a.Boot.ReportToken, EventInstallFinished); err != nil {
		t.Fatal(err)
	}
	if s := f.state(t, hw).State; s != store.StateInstalled {
		t.Fatalf("%s after its install: %s", hw, s)
	}
}

// TestServerRebuild: an operator's reprovision of a server, on a disk install.
func TestServerRebuild(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc1, ip1)
	f.installDisk(t, nuc2, ip2)
	plan, err := f.m.Reprovision("nuc2", false)
	if err != nil || plan.Armed || !plan.NeedsConfirm || !strings.Contains(strings.Join(plan.Steps, "\n"), "remove nuc2's old etcd member and add it back with peer URL https://198.18.0.62:2380") {
		t.Fatalf("plan without --yes: %+v %v", plan, err)
	}
	if s := f.state(t, nuc2).State; s != store.StateInstalled {
		t.Fatalf("explaining must not arm: %s", s)
	}
	if plan, err = f.m.Reprovision("nuc2", true); err != nil || !plan.Armed {
		t.Fatalf("arm: %+v %v", plan, err)
	}
	t.Run("one at a time", func(t *testing.T) {
		if _, err := f.m.Reprovision("nuc1", true); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "nuc2") {
			t.Fatalf("second server: %v", err)
		}
		if s := f.state(t, nuc1).State; s != store.StateInstalled {
			t.Fatalf("refused reprovision changed nuc1: %s", s)
		}
	})
	f.dhcp(t, nuc2, ip2)
	tok := f.script(t, nuc2, ip2)
	release := make(chan struct{})
	f.etc.set(nil, release)
	t.Run("the node waits while its member is replaced", func(t *testing.T) {
		a := f.admit(nuc2, ip2, tok, StageBoot)
		if a.Verdict != Wait || !strings.Contains(a.Reason, "replacing nuc2's etcd member") {
			t.Fatalf("first request: %v %q", a.Verdict, a.Reason)
		}
		if a := f.admit(nuc2, ip2, tok, StageBoot); a.Verdict != Wait {
			t.Fatalf("while preparing: %v", a.Verdict)
		}
	})
	close(release)
	waitFor(t, "member re-added", func() bool { return f.state(t, nuc2).EtcdRejoin })
	a := f.deliver(t, nuc2, ip2, tok, StageBoot)
	b := f.deliver(t, nuc2, ip2, a.Boot.InstalledToken, StageInstalled)
	if b.ClusterState != ignition.ClusterStateExisting {
		t.Fatalf("installed config of a rebuilt member: state %q", b.ClusterState)
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
	t.Run("a forged etcd-healthy does not end the rebuild", func(t *testing.T) {
		if err := f.report(nuc2, ip2, strings.Repeat("a", 64), EventEtcdHealthy); !errors.Is(err, ErrRefused) {
			t.Fatalf("forged: %v", err)
		}
		if _, err := f.m.Reprovision("nuc1", true); !errors.Is(err, ErrBusy) {
			t.Fatalf("nuc1 armed while nuc2 rebuilds: %v", err)
		}
	})
	if err := f.report(nuc2, ip2, a.Boot.ReportToken, EventInstallFinished); err != nil {
		t.Fatal(err)
	}
	if err := f.report(nuc2, ip2, a.Boot.ReportToken, EventEtcdHealthy); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Reprovision("nuc1", true); err != nil {
		t.Fatalf("nuc1 after nuc2 is healthy: %v", err)
	}
	if !strings.Contains(f.events(t, nuc2), "etcd rejoin prepared") {
		t.Errorf("timeline:\n%s", f.events(t, nuc2))
	}
	if m := f.metrics(t); !strings.Contains(m, `flint_etcd_rejoins_total{result="replaced"} 1`) || !strings.Contains(m, "flint_etcd_rejoin_duration_seconds_count 1") {
		t.Errorf("the replacement is not counted:\n%s", m)
	}
}

// TestLiveServerRebootRejoins: a live server runs from RAM: after its first
// install every boot rejoins etcd as a wiped member, one server at a time.
func TestLiveServerRebootRejoins(t *testing.T) {
	f := newFixture(t, "full", "live")
	f.bootServer(t, nuc1, ip1)
	f.bootServer(t, nuc2, ip2)
	release := make(chan struct{})
	f.etc.set(nil, release)
	tok1 := f.script(t, nuc1, ip1)
	if a := f.admit(nuc1, ip1, tok1, StageBoot); a.Verdict != Wait || !strings.Contains(a.Reason, "replacing nuc1's etcd member") {
		t.Fatalf("reboot of a live server: %v %q", a.Verdict, a.Reason)
	}
	if a := f.admit(nuc2, ip2, f.script(t, nuc2, ip2), StageBoot); a.Verdict != Wait || !strings.Contains(a.Reason, "nuc1 is still rebuilding") {
		t.Fatalf("second live server: %v %q", a.Verdict, a.Reason)
	}
	close(release)
	waitFor(t, "member re-added", func() bool { return f.state(t, nuc1).EtcdRejoin })
	a := f.deliver(t, nuc1, ip1, tok1, StageBoot)
	if a.ClusterState != ignition.ClusterStateExisting {
		t.Fatalf("cluster state after a live reboot: %s", a.ClusterState)
	}
	// A live agent has no etcd member: its reboots are plain.
	f.dhcp(t, nuc4, ip4)
	f.deliver(t, nuc4, ip4, f.script(t, nuc4, ip4), StageBoot)
}

// TestHealthyMemberIsNeverReplaced: someone at a running live server's
// address asks for its config; etcd says the member is healthy: refused, the
// member untouched, the slot free again.
func TestHealthyMemberIsNeverReplaced(t *testing.T) {
	f := newFixture(t, "full", "live")
	f.bootServer(t, nuc1, ip1)
	f.bootServer(t, nuc2, ip2)
	f.m.RetryRejoin = time.Hour
	f.etc.set(fmt.Errorf("%w: member nuc1 answers at https://198.18.0.61:2379", ErrMemberHealthy), nil)
	tok := f.script(t, nuc1, ip1)
	if a := f.admit(nuc1, ip1, tok, StageBoot); a.Verdict != Wait {
		t.Fatalf("first request: %v %q", a.Verdict, a.Reason)
	}
	waitFor(t, "refusal", func() bool { return strings.Contains(f.events(t, nuc1), "etcd rejoin refused") })
	a := f.admit(nuc1, ip1, tok, StageBoot)
	if a.Verdict != Refuse || !strings.Contains(a.Reason, "never replaced") || a.Refused != RefusedRunning {
		t.Fatalf("after etcd said healthy: %v %q (%s)", a.Verdict, a.Reason, a.Refused)
	}
	r := f.state(t, nuc1)
	if r.State != store.StateInstalled || r.Rebuilding || r.EtcdRejoin {
		t.Fatalf("record after the refusal: state %s rebuilding %v rejoin %v", r.State, r.Rebuilding, r.EtcdRejoin)
	}
	f.etc.set(nil, nil)
	if plan, err := f.m.Reprovision("nuc2", true); err != nil || !plan.Armed {
		t.Fatalf("the slot was not freed: %+v %v", plan, err)
	}
}

func TestRebuildRefusedWithoutQuorum(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.installDisk(t, nuc2, ip2)
	f.etc.set(errors.New("etcd quorum would be lost: nuc3 is unhealthy"), nil)
	f.m.RetryRejoin = time.Hour
	if _, err := f.m.Reprovision("nuc2", true); err != nil {
		t.Fatal(err)
	}
	f.dhcp(t, nuc2, ip2)
	tok := f.script(t, nuc2, ip2)
	f.admit(nuc2, ip2, tok, StageBoot)
	waitFor(t, "refusal", func() bool { return strings.Contains(f.events(t, nuc2), "etcd rejoin refused") })
	a := f.admit(nuc2, ip2, tok, StageBoot)
	if a.Verdict != Wait || !strings.Contains(a.Reason, "quorum would be lost: nuc3") {
		t.Fatalf("after refusal: %v %q", a.Verdict, a.Reason)
	}
	if f.state(t, nuc2).EtcdRejoin {
		t.Fatal("a refused rejoin must not render state existing")
	}
	if m := f.metrics(t); !strings.Contains(m, `flint_etcd_rejoins_total{result="failed"} 1`) || !strings.Contains(m, `flint_etcd_rejoins_total{result="replaced"} 0`) {
		t.Errorf("the refusal is not counted as failed:\n%s", m)
	}
	if _, err := f.m.Reprovision("nuc9", true); !errors.Is(err, ErrNoMachine) || !strings.Contains(err.Error(), "known: nuc1, nuc2, nuc3, nuc4") {
		t.Fatalf("unknown name: %v", err)
	}
}

// TestConcurrentArmsArmOne: operator arms and live-server reboots racing for
// the one rebuild slot: exactly one wins.
func TestConcurrentArmsArmOne(t *testing.T) {
	f := newFixture(t, "full", "live")
	for _, s := range []struct {
		hw config.MAC
		ip netip.Addr
	}{{nuc1, ip1}, {nuc2, ip2}, {nuc3, ip3}} {
		f.bootServer(t, s.hw, s.ip)
	}
	f.etc.set(nil, make(chan struct{})) // rejoins hang: the winner keeps the slot
	toks := map[config.MAC]string{nuc1: f.script(t, nuc1, ip1), nuc3: f.script(t, nuc3, ip3)}
	var armed atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				if p, err := f.m.Reprovision("nuc2", true); err == nil && p.Armed {
					armed.Add(1)
				} else if !errors.Is(err, ErrBusy) && err != nil {
					t.Error(err)
				}
			case 1:
				f.admit(nuc1, ip1, toks[nuc1], StageBoot)
			case 2:
				f.admit(nuc3, ip3, toks[nuc3], StageBoot)
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, hw := range []config.MAC{nuc1, nuc2, nuc3} {
		if f.state(t, hw).Rebuilding {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d servers armed at once, want 1 (operator arms that succeeded: %d)", n, armed.Load())
	}
}
