package lifecycle

import (
	"strings"
	"testing"

	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/store"
)

const singleServer = `
server: {address: 198.18.0.1}
dhcp: {mode: full, subnet: 198.18.0.0/24}
cluster: {install_mode: INSTALL}
assets: {flatcar: {version: 4152.2.0}}
machines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.61, role: server}
  - {mac: "52:54:00:00:00:04", hostname: nuc4, ip: 198.18.0.64, role: agent}
`

// TestOnlyServerStartsAnew: a cluster with one server has no member to
// rejoin. A live server that reboots (its etcd data was in RAM) is served a
// new cluster at once instead of waiting for a rejoin that cannot happen;
// a reprovision plan says up front that the cluster's data is lost.
func TestOnlyServerStartsAnew(t *testing.T) {
	t.Run("live reboot", func(t *testing.T) {
		f := newFixtureText(t, strings.ReplaceAll(singleServer, "INSTALL", "live"), nil)
		f.bootServer(t, nuc1, ip1)
		f.dhcp(t, nuc1, ip1)
		a := f.deliver(t, nuc1, ip1, f.script(t, nuc1, ip1), StageBoot)
		if a.ClusterState != ignition.ClusterStateNew {
			t.Errorf("cluster state %q, want new", a.ClusterState)
		}
		if ev := f.events(t, nuc1); !strings.Contains(ev, "etcd starts anew") {
			t.Errorf("timeline:\n%s", ev)
		}
		f.etc.mu.Lock()
		calls := len(f.etc.calls)
		f.etc.mu.Unlock()
		if calls != 0 {
			t.Errorf("%d etcd membership calls for the only member", calls)
		}
		if err := f.report(nuc1, ip1, a.Boot.ReportToken, EventEtcdHealthy); err != nil {
			t.Fatal(err)
		}
		if r := f.state(t, nuc1); r.Rebuilding {
			t.Error("the rebuild slot is still held after etcd-healthy")
		}
	})
	t.Run("reprovision plan", func(t *testing.T) {
		f := newFixtureText(t, strings.ReplaceAll(singleServer, "INSTALL", "disk"), nil)
		f.dhcp(t, nuc1, ip1)
		a := f.deliver(t, nuc1, ip1, f.script(t, nuc1, ip1), StageBoot)
		f.deliver(t, nuc1, ip1, a.Boot.InstalledToken, StageInstalled)
		if err := f.report(nuc1, ip1, a.Boot.ReportToken, EventInstallFinished); err != nil {
			t.Fatal(err)
		}
		if s := f.state(t, nuc1).State; s != store.StateInstalled {
			t.Fatalf("state %s", s)
		}
		p, err := f.m.Reprovision("nuc1", false)
		if err != nil {
			t.Fatal(err)
		}
		steps := strings.Join(p.Steps, "\n")
		if p.Armed || !p.NeedsConfirm || !strings.Contains(steps, "only etcd member") || !strings.Contains(steps, "is lost") || strings.Contains(steps, "()") {
			t.Errorf("plan: %+v", p)
		}
	})
}
