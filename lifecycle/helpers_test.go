package lifecycle

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/metrics"
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
	cfg   *config.Config
	st    store.Store
	m     *Manager
	etc   *fakeEtcd
	clock *clock
	met   *metrics.Metrics
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now ticks a microsecond per call, as a real clock moves between requests.
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Microsecond)
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fakeEtcd struct {
	mu        sync.Mutex
	calls     []string
	endpoints [][]string
	err       error
	release   chan struct{} // when set, PrepareRejoin blocks until closed
}

func (f *fakeEtcd) PrepareRejoin(ctx context.Context, name, peerURL string) (string, error) {
	f.mu.Lock()
	release := f.release
	f.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name+" "+peerURL)
	return "", f.err
}
func (f *fakeEtcd) Close() error { return nil }

func (f *fakeEtcd) set(err error, release chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.release = err, release
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newFixture(t *testing.T, mode, install string) *fixture {
	t.Helper()
	return newFixtureWith(t, mode, install, nil)
}

// newFixtureWith wraps the store (to make it fail) when wrap is set.
func newFixtureWith(t *testing.T, mode, install string, wrap func(store.Store) store.Store) *fixture {
	t.Helper()
	return newFixtureText(t, strings.NewReplacer("MODE", mode, "INSTALL", install).Replace(siteConfig), wrap)
}

// newFixtureText is a fixture on a config of its own.
func newFixtureText(t *testing.T, text string, wrap func(store.Store) store.Store) *fixture {
	t.Helper()
	cfg, err := config.Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	var known []store.KnownMachine
	for _, m := range cfg.Machines {
		known = append(known, store.KnownMachine{MAC: m.MAC, Hostname: m.Hostname, Role: m.Role, ReservedIP: m.IPAddr})
	}
	if err := bolt.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	var st store.Store = bolt
	if wrap != nil {
		st = wrap(bolt)
	}
	f := &fixture{cfg: cfg, st: st, etc: &fakeEtcd{}, clock: &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}, met: metrics.New("test")}
	f.m, err = New(cfg, st, Options{
		Connect: func(ctx context.Context, endpoints []string) (Rejoiner, error) {
			f.etc.mu.Lock()
			f.etc.endpoints = append(f.etc.endpoints, endpoints)
			f.etc.mu.Unlock()
			return f.etc, nil
		},
		ReportKey: testKey,
		Now:       f.clock.Now,
		Metrics:   f.met,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.m.Close)
	return f
}

func mac(s string) config.MAC { hw, _ := config.ParseMAC(s); return hw }

var (
	nuc1 = mac("52:54:00:00:00:01")
	nuc2 = mac("52:54:00:00:00:02")
	nuc3 = mac("52:54:00:00:00:03")
	nuc4 = mac("52:54:00:00:00:04")
	ip1  = netip.MustParseAddr("198.18.0.61")
	ip2  = netip.MustParseAddr("198.18.0.62")
	ip3  = netip.MustParseAddr("198.18.0.63")
	ip4  = netip.MustParseAddr("198.18.0.64")
	ipX  = netip.MustParseAddr("198.18.0.77") // a stranger
)

// dhcp makes ip the machine's own address the way the mode learns it: a
// lease in full mode, an observed DHCP request in proxy mode.
func (f *fixture) dhcp(t *testing.T, hw config.MAC, ip netip.Addr) {
	t.Helper()
	now := f.clock.Now()
	switch f.cfg.DHCP.Mode {
	case config.ModeFull:
		if err := f.st.PutLease(store.Lease{IP: ip, MAC: hw.String(), State: store.LeaseBound, Start: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	case config.ModeProxy:
		if err := f.st.RecordSighting(store.Sighting{MAC: hw.String(), At: now, IP: ip, Event: "dhcp REQUEST", DHCPAddr: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// script fetches hw's iPXE script from ip and wants a boot token.
func (f *fixture) script(t *testing.T, hw config.MAC, ip netip.Addr) string {
	t.Helper()
	s := f.m.Script(hw, ip)
	if s.Verdict != ScriptInstall || !ValidToken(s.Token) {
		t.Fatalf("script of %s from %s: %+v, want an install script with a token", hw, ip, s)
	}
	return s.Token
}

func (f *fixture) admit(hw config.MAC, ip netip.Addr, tok string, stage Stage) Admission {
	return f.m.AdmitConfig(ConfigRequest{MAC: hw, From: ip, Token: tok, Stage: stage})
}

// deliver admits and spends a secret config, which must be served.
func (f *fixture) deliver(t *testing.T, hw config.MAC, ip netip.Addr, tok string, stage Stage) Admission {
	t.Helper()
	a := f.admit(hw, ip, tok, stage)
	if a.Verdict != Serve {
		t.Fatalf("config of %s (stage %q) from %s: %v %q", hw, stage, ip, a.Verdict, a.Reason)
	}
	if err := f.m.Delivered(a, ""); err != nil {
		t.Fatalf("deliver %s: %v", hw, err)
	}
	return a
}

func (f *fixture) report(hw config.MAC, ip netip.Addr, tok, event string) error {
	return f.m.NodeEvent(NodeReport{MAC: hw, From: ip, Token: tok, Event: event})
}

func (f *fixture) state(t *testing.T, hw config.MAC) store.Machine {
	t.Helper()
	r, ok, err := f.st.Machine(hw.String())
	if !ok || err != nil {
		t.Fatalf("no record of %s: %v", hw, err)
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metrics is the Prometheus exposition of the fixture's metrics.
func (f *fixture) metrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	f.met.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
