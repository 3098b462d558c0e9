package lifecycle

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

const relaySite = `
server: {address: 198.18.0.1}
dhcp:
  mode: full
  subnets:
    - {subnet: 198.18.0.0/24}
    - {subnet: 198.18.2.0/25, router: 198.18.2.1}
assets: {flatcar: {version: 4152.2.0}}
machines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.61, role: server}
  - {mac: "52:54:00:00:02:11", hostname: bench7, ip: 198.18.2.17, role: agent, relay: {circuit_id: slot7}}
`

// A box the DHCP server gave a relay-port machine's address to (its MAC in
// no config) is that machine for its script and config; nothing else makes
// a stranger's MAC a machine.
func TestBoxChosenByRelayPort(t *testing.T) {
	bench7 := mac("52:54:00:00:02:11")
	benchIP := netip.MustParseAddr("198.18.2.17")
	box := mac("52:54:00:cc:02:99")
	lease := func(f *fixture, ip netip.Addr, hw, hostname string, ttl time.Duration) {
		t.Helper()
		now := f.clock.Now()
		if err := f.st.PutLease(store.Lease{IP: ip, MAC: hw, Hostname: hostname, State: store.LeaseBound, Start: now, Expires: now.Add(ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name     string
		setup    func(f *fixture)
		from     netip.Addr
		want     ScriptVerdict
		wantName string
	}{
		{"no lease", func(f *fixture) {}, benchIP, ScriptUnknown, ""},
		{"bound as bench7 by its port", func(f *fixture) { lease(f, benchIP, box.String(), "bench7", time.Hour) }, benchIP, ScriptInstall, "bench7"},
		{"from another address", func(f *fixture) { lease(f, benchIP, box.String(), "bench7", time.Hour) }, netip.MustParseAddr("198.18.2.18"), ScriptUnknown, ""},
		{"the lease is another box's", func(f *fixture) { lease(f, benchIP, "52:54:00:cc:02:98", "bench7", time.Hour) }, benchIP, ScriptUnknown, ""},
		{"a lease not bound as bench7", func(f *fixture) { lease(f, benchIP, box.String(), "", time.Hour) }, benchIP, ScriptUnknown, ""},
		{"an expired lease", func(f *fixture) { lease(f, benchIP, box.String(), "bench7", time.Microsecond) }, benchIP, ScriptUnknown, ""},
		{"a machine without a relay port", func(f *fixture) { lease(f, ip1, box.String(), "nuc1", time.Hour) }, ip1, ScriptUnknown, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureText(t, relaySite, nil)
			tc.setup(f)
			f.clock.Advance(time.Second)
			s := f.m.Script(box, tc.from)
			if s.Verdict != tc.want {
				t.Fatalf("Script(box, %s) = %+v, want verdict %v", tc.from, s, tc.want)
			}
			if tc.wantName == "" {
				return
			}
			if s.Machine == nil || s.Machine.Hostname != tc.wantName || !ValidToken(s.Token) {
				t.Fatalf("Script = %+v, want %s's install script with a token", s, tc.wantName)
			}
			// The script names bench7: its config comes by bench7's MAC, from the box's address.
			f.deliver(t, bench7, benchIP, s.Token, StageBoot)
			if ev := f.events(t, bench7); !strings.Contains(ev, EventScript) || !strings.Contains(ev, "ignition") {
				t.Errorf("bench7's timeline lacks the script or the config:\n%s", ev)
			}
		})
	}
	t.Run("bench7's own MAC still needs its own lease", func(t *testing.T) {
		f := newFixtureText(t, relaySite, nil)
		lease(f, benchIP, box.String(), "", time.Hour) // a pool-style lease of another box
		if s := f.m.Script(bench7, benchIP); s.Verdict != ScriptRefuse {
			t.Fatalf("bench7 by MAC on another box's lease: %+v", s)
		}
	})
}
