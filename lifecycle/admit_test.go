package lifecycle

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/store"
)

// TestBootTokens walks one live agent through full mode: only its lease
// address gets a script, only a token from a script opens the config, and a
// token works once, before it expires.
func TestBootTokens(t *testing.T) {
	f := newFixture(t, "full", "live")
	t.Run("no lease: no script", func(t *testing.T) {
		if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptRefuse || !strings.Contains(s.Reason, "holds no lease") {
			t.Fatalf("%+v", s)
		}
	})
	f.dhcp(t, nuc4, ip4)
	t.Run("another address: no script", func(t *testing.T) {
		s := f.m.Script(nuc4, ipX)
		if s.Verdict != ScriptRefuse || !strings.Contains(s.Reason, "request from 198.18.0.77, but flint leased 198.18.0.64") || s.Token != "" {
			t.Fatalf("%+v", s)
		}
		if !strings.Contains(f.events(t, nuc4), "http script refused") {
			t.Errorf("refusal not on the timeline:\n%s", f.events(t, nuc4))
		}
		if f.state(t, nuc4).IP == ipX {
			t.Error("a refused request moved nuc4 to the stranger's address")
		}
	})
	tok := f.script(t, nuc4, ip4)
	t.Run("the store keeps nothing of it", func(t *testing.T) {
		rec := f.state(t, nuc4)
		if rec.Boot != (store.Boot{}) {
			t.Fatalf("issuing a token wrote the boot record: %+v", rec.Boot)
		}
		raw, _ := json.Marshal(rec)
		if strings.Contains(string(raw), tok) || strings.Contains(f.events(t, nuc4), tok) {
			t.Fatal("the token is in the store")
		}
	})
	t.Run("a token of another machine, or altered, does not verify", func(t *testing.T) {
		f.dhcp(t, nuc1, ip1)
		other := f.script(t, nuc1, ip1)
		if a := f.admit(nuc4, ip4, other, StageBoot); a.Verdict != Refuse {
			t.Fatalf("nuc1's token opened nuc4's config: %v", a.Verdict)
		}
		flipped := []byte(tok)
		flipped[63] = "01"[map[bool]int{true: 1, false: 0}[flipped[63] == '0']]
		if a := f.admit(nuc4, ip4, string(flipped), StageBoot); a.Verdict != Refuse {
			t.Fatalf("an altered token: %v", a.Verdict)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for name, c := range map[string]struct {
			ip    string
			tok   string
			stage Stage
			want  string
			code  string // Admission.Refused, what the metrics count
		}{
			"no token":        {"198.18.0.64", "", StageBoot, "no valid boot token", RefusedToken},
			"malformed token": {"198.18.0.64", "../../etc", StageBoot, "no valid boot token", RefusedToken},
			"made-up token":   {"198.18.0.64", strings.Repeat("a", 64), StageBoot, "unknown, used or expired", RefusedToken},
			"upper-case":      {"198.18.0.64", strings.ToUpper(tok), StageBoot, "no valid boot token", RefusedToken},
			"other address":   {"198.18.0.77", tok, StageBoot, "but flint leased", RefusedAddress},
			"installed stage": {"198.18.0.64", tok, StageInstalled, "only a disk install", RefusedStage},
		} {
			a := f.admit(nuc4, mustAddr(c.ip), c.tok, c.stage)
			if a.Verdict != Refuse || !strings.Contains(a.Reason, c.want) || a.Refused != c.code {
				t.Errorf("%s: %v %q (%s), want a refusal saying %q (%s)", name, a.Verdict, a.Reason, a.Refused, c.want, c.code)
			}
		}
	})
	t.Run("pointer does not spend", func(t *testing.T) {
		for range 3 {
			if a := f.m.AdmitConfig(ConfigRequest{MAC: nuc4, From: ip4, Token: tok, Pointer: true}); a.Verdict != Serve {
				t.Fatalf("pointer: %v %q", a.Verdict, a.Reason)
			}
		}
	})
	a := f.deliver(t, nuc4, ip4, tok, StageBoot)
	t.Run("delivery", func(t *testing.T) {
		if a.Profile != "" || a.ClusterState != ignition.ClusterStateNew || !ValidToken(a.Boot.ReportToken) || a.Boot.InstalledToken != "" {
			t.Fatalf("admission %+v", a)
		}
		if s := f.state(t, nuc4).State; s != store.StateInstalling {
			t.Fatalf("state %s", s)
		}
	})
	t.Run("spent", func(t *testing.T) {
		if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Refuse {
			t.Fatalf("second use: %v", a.Verdict)
		}
	})
	t.Run("reports need the delivery's token", func(t *testing.T) {
		if err := f.report(nuc4, ip4, strings.Repeat("a", 64), EventConfigApplied); !errors.Is(err, ErrRefused) {
			t.Fatalf("forged token: %v", err)
		}
		if err := f.report(nuc4, ipX, a.Boot.ReportToken, EventConfigApplied); !errors.Is(err, ErrRefused) {
			t.Fatalf("from another address: %v", err)
		}
		if s := f.state(t, nuc4).State; s != store.StateInstalling {
			t.Fatalf("a refused report moved the machine to %s", s)
		}
		if err := f.report(nuc4, ip4, a.Boot.ReportToken, EventConfigApplied); err != nil {
			t.Fatal(err)
		}
		if s := f.state(t, nuc4).State; s != store.StateInstalled {
			t.Fatalf("after config-applied: %s", s)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		tok := f.script(t, nuc4, ip4)
		f.clock.Advance(f.cfg.Security.TokenTTL.Duration + time.Second)
		f.dhcp(t, nuc4, ip4) // the lease is renewed; the token is not
		if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Refuse || !strings.Contains(a.Reason, "expired") {
			t.Fatalf("expired token: %v %q", a.Verdict, a.Reason)
		}
	})
	t.Run("a lease not taken recently opens no script", func(t *testing.T) {
		// nuc4 is off; its lease runs on. Whoever takes its address gets nothing.
		f.clock.Advance(f.cfg.Security.TokenTTL.Duration + time.Minute)
		if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptRefuse || !strings.Contains(s.Reason, "last took its lease") {
			t.Fatalf("stale lease: %+v", s)
		}
		f.dhcp(t, nuc4, ip4) // it boots: DHCP first
	})
	t.Run("a new delivery retires the old report token", func(t *testing.T) {
		b := f.deliver(t, nuc4, ip4, f.script(t, nuc4, ip4), StageBoot)
		if err := f.report(nuc4, ip4, a.Boot.ReportToken, EventK3sUp); !errors.Is(err, ErrRefused) {
			t.Fatalf("old report token: %v", err)
		}
		if err := f.report(nuc4, ip4, b.Boot.ReportToken, EventK3sUp); err != nil {
			t.Fatalf("new report token: %v", err)
		}
	})
	t.Run("refusals are counted", func(t *testing.T) {
		c := f.m.Refusals()
		if c["http script"] < 2 || c["ignition"] < 6 || c["node report"] < 2 {
			t.Fatalf("refusal counts %v", c)
		}
	})
	t.Run("unknown MAC", func(t *testing.T) {
		if s := f.m.Script(mac("52:54:00:00:00:99"), ip4); s.Verdict != ScriptUnknown {
			t.Fatalf("%+v", s)
		}
		if a := f.admit(mac("52:54:00:00:00:99"), ip4, tok, StageBoot); a.Verdict != Unknown {
			t.Fatalf("%v", a.Verdict)
		}
		if err := f.report(mac("52:54:00:00:00:99"), ip4, tok, EventK3sUp); !errors.Is(err, ErrUnknownMachine) {
			t.Fatalf("%v", err)
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestOneDeliveryPerToken: of many requests racing with one token, exactly
// one gets the config.
func TestOneDeliveryPerToken(t *testing.T) {
	f := newFixture(t, "full", "live")
	f.dhcp(t, nuc4, ip4)
	tok := f.script(t, nuc4, ip4)
	var served, spent atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := f.admit(nuc4, ip4, tok, StageBoot)
			if a.Verdict != Serve {
				spent.Add(1)
				return
			}
			switch err := f.m.Delivered(a, ""); {
			case err == nil:
				served.Add(1)
			case errors.Is(err, ErrSpent):
				spent.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if served.Load() != 1 || spent.Load() != 49 {
		t.Fatalf("%d deliveries, %d refused; want 1 and 49", served.Load(), spent.Load())
	}
}

// TestProxyModeAddress: without a lease, the machine's own address is the
// one flint saw it ask its DHCP server for.
func TestProxyModeAddress(t *testing.T) {
	f := newFixture(t, "proxy", "live")
	if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptRefuse || !strings.Contains(s.Reason, "has not seen") {
		t.Fatalf("never seen on DHCP: %+v", s)
	}
	f.dhcp(t, nuc4, ip4)
	if s := f.m.Script(nuc4, ipX); s.Verdict != ScriptRefuse || !strings.Contains(s.Reason, "last asked its DHCP server for 198.18.0.64") {
		t.Fatalf("another address: %+v", s)
	}
	tok := f.script(t, nuc4, ip4)
	// Flatcar's own DHCP client may get another address than iPXE did: the
	// config follows the machine's latest DHCP request.
	ipNew := mustAddr("198.18.0.99")
	f.dhcp(t, nuc4, ipNew)
	if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Refuse {
		t.Fatalf("from the old address after the machine moved: %v", a.Verdict)
	}
	f.deliver(t, nuc4, ipNew, tok, StageBoot)
	f.clock.Advance(f.cfg.Security.TokenTTL.Duration + time.Second)
	if s := f.m.Script(nuc4, ipNew); s.Verdict != ScriptRefuse {
		t.Fatalf("a DHCP request older than the token lifetime still counts: %+v", s)
	}
}

// TestOffModeBindsTheScriptAddress: with no DHCP to learn from, the token
// only works from where its script went.
func TestOffModeBindsTheScriptAddress(t *testing.T) {
	f := newFixture(t, "off", "live")
	tok := f.script(t, nuc4, ip4)
	if a := f.admit(nuc4, ipX, tok, StageBoot); a.Verdict != Refuse || !strings.Contains(a.Reason, "its script went to another address") {
		t.Fatalf("%v %q", a.Verdict, a.Reason)
	}
	f.deliver(t, nuc4, ip4, tok, StageBoot)
}

// TestDiskInstall: installer, then the installed system's config once, then
// the window closes and the machine boots its disk until reprovisioned.
func TestDiskInstall(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.dhcp(t, nuc4, ip4)
	a := f.deliver(t, nuc4, ip4, f.script(t, nuc4, ip4), StageBoot)
	if a.Profile != ignition.InstallerProfile || !ValidToken(a.Boot.InstalledToken) {
		t.Fatalf("installer admission %+v", a)
	}
	t.Run("installed config", func(t *testing.T) {
		if b := f.admit(nuc4, ip4, strings.Repeat("b", 64), StageInstalled); b.Verdict != Refuse {
			t.Fatalf("forged installed token: %v", b.Verdict)
		}
		if b := f.admit(nuc4, ip4, a.Boot.ReportToken, StageInstalled); b.Verdict != Refuse {
			t.Fatalf("the report token opened the installed config: %v", b.Verdict)
		}
		b := f.deliver(t, nuc4, ip4, a.Boot.InstalledToken, StageInstalled)
		if b.Profile != "" || b.Boot.ReportToken != a.Boot.ReportToken {
			t.Fatalf("installed admission %+v: its own profile and the installer's report token", b)
		}
		if c := f.admit(nuc4, ip4, a.Boot.InstalledToken, StageInstalled); c.Verdict != Refuse {
			t.Fatalf("installed config twice: %v", c.Verdict)
		}
	})
	t.Run("config-applied of the live installer does not finish a disk install", func(t *testing.T) {
		if err := f.report(nuc4, ip4, a.Boot.ReportToken, EventConfigApplied); err != nil {
			t.Fatal(err)
		}
		if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptInstall {
			t.Fatalf("before install-finished: %+v", s)
		}
	})
	if err := f.report(nuc4, ip4, a.Boot.ReportToken, EventInstallFinished); err != nil {
		t.Fatal(err)
	}
	t.Run("closed window", func(t *testing.T) {
		if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptLocal {
			t.Fatalf("installed: %+v", s)
		}
		// A token issued before the install finished no longer opens anything.
		if b := f.admit(nuc4, ip4, strings.Repeat("c", 64), StageBoot); b.Verdict != Refuse || b.Refused != RefusedWindow {
			t.Fatalf("installed: %v (%s), want a refusal for the closed window", b.Verdict, b.Refused)
		}
	})
	t.Run("reprovision reopens it", func(t *testing.T) {
		plan, err := f.m.Reprovision("nuc4", false)
		if err != nil || !plan.Armed || plan.NeedsConfirm {
			t.Fatalf("reprovision agent: %+v %v", plan, err)
		}
		f.deliver(t, nuc4, ip4, f.script(t, nuc4, ip4), StageBoot)
		if err := f.report(nuc4, ip4, a.Boot.ReportToken, EventInstallFinished); !errors.Is(err, ErrRefused) {
			t.Fatalf("the old install's report token after reprovision: %v", err)
		}
	})
}

// failingStore fails every read of machine records.
type failingStore struct{ store.Store }

var errDisk = errors.New("disk on fire")

func (failingStore) Machine(string) (store.Machine, bool, error) {
	return store.Machine{}, false, errDisk
}

// TestFailClosed: with the store unreadable, an installed disk machine boots
// its disk and configs wait.
func TestFailClosed(t *testing.T) {
	f := newFixtureWith(t, "off", "disk", func(s store.Store) store.Store { return failingStore{s} })
	if s := f.m.Script(nuc4, ip4); s.Verdict != ScriptLocal {
		t.Fatalf("disk machine: %+v", s)
	}
	if a := f.admit(nuc4, ip4, strings.Repeat("a", 64), StageBoot); a.Verdict != Wait {
		t.Fatalf("config: %v", a.Verdict)
	}
	if err := f.report(nuc4, ip4, strings.Repeat("a", 64), EventInstallFinished); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("report: %v", err)
	}
	live := newFixtureWith(t, "off", "live", func(s store.Store) store.Store { return failingStore{s} })
	if s := live.m.Script(nuc4, ip4); s.Verdict != ScriptWait {
		t.Fatalf("live machine: %+v", s)
	}
}

// TestRefusalFloodIsBounded: a flood of refused requests for one machine is
// counted in full but costs the log and the timeline only a few writes a
// minute.
func TestRefusalFloodIsBounded(t *testing.T) {
	f := newFixture(t, "full", "live")
	for range 500 {
		f.m.Script(nuc4, ipX)
	}
	if n := f.m.Refusals()["http script"]; n != 500 {
		t.Fatalf("%d refusals counted, want 500", n)
	}
	if n := strings.Count(f.events(t, nuc4), "http script refused"); n != refusalBurst {
		t.Fatalf("%d refusals on the timeline, want %d", n, refusalBurst)
	}
	f.clock.Advance(time.Minute)
	f.m.Script(nuc4, ipX)
	if ev := f.events(t, nuc4); !strings.Contains(ev, "(and 480 more refusals not recorded)") {
		t.Fatalf("the next recorded refusal does not say how many were left out:\n%s", ev)
	}
}

// TestBootTokensSurviveARestart: a token carries its own proof, so a flint
// restarted between a machine's script and its config still accepts it
// (same key), and arming a reprovision voids the tokens issued before.
func TestBootTokensSurviveARestart(t *testing.T) {
	f := newFixture(t, "full", "disk")
	f.dhcp(t, nuc4, ip4)
	tok := f.script(t, nuc4, ip4)
	restarted, err := New(f.cfg, f.st, Options{ReportKey: testKey, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if a := restarted.AdmitConfig(ConfigRequest{MAC: nuc4, From: ip4, Token: tok}); a.Verdict != Serve {
		t.Fatalf("after a restart: %v %q", a.Verdict, a.Reason)
	}
	other, err := New(f.cfg, f.st, Options{ReportKey: []byte("another key, another flint......"), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if a := other.AdmitConfig(ConfigRequest{MAC: nuc4, From: ip4, Token: tok}); a.Verdict != Refuse {
		t.Fatalf("a flint with another key accepted the token: %v", a.Verdict)
	}
	f.installDisk(t, nuc4, ip4)
	if _, err := f.m.Reprovision("nuc4", false); err != nil {
		t.Fatal(err)
	}
	if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Refuse {
		t.Fatalf("a token issued before the reprovision: %v", a.Verdict)
	}
	f.deliver(t, nuc4, ip4, f.script(t, nuc4, ip4), StageBoot)
}
