package lifecycle

import (
	"strings"
	"testing"
)

// TestDisagreementWithholdsSecrets: while the flint instances sharing the
// store disagree on the site config, no secret config goes out (the machine
// is told to wait and retries); pointer configs, which hold no secret, do.
// Once they agree, the same token gets the config.
func TestDisagreementWithholdsSecrets(t *testing.T) {
	f := newFixture(t, "full", "live")
	agree, why := false, "flint instances disagree on the site config: http://198.18.0.2:8080 differs"
	f.m.agreed = func() (bool, string) { return agree, why }
	f.dhcp(t, nuc4, ip4)
	tok := f.script(t, nuc4, ip4)
	if a := f.m.AdmitConfig(ConfigRequest{MAC: nuc4, From: ip4, Token: tok, Pointer: true}); a.Verdict != Serve {
		t.Fatalf("pointer while disagreeing: %v %q, want serve (it holds no secret)", a.Verdict, a.Reason)
	}
	if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Wait || !strings.Contains(a.Reason, "disagree on the site config") {
		t.Fatalf("secret config while disagreeing: %v %q, want wait naming the disagreement", a.Verdict, a.Reason)
	}
	agree = true
	if a := f.admit(nuc4, ip4, tok, StageBoot); a.Verdict != Serve {
		t.Fatalf("secret config once agreeing: %v %q, want serve", a.Verdict, a.Reason)
	}
}
