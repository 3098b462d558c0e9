package ignition

import (
	"errors"
	"strings"
	"testing"
)

// TestDeliveryTokens: each delivery gets its own tokens written into the
// cached config; the cache keeps placeholders and renders once.
func TestDeliveryTokens(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.renderer(t, fakeSecrets{})
	m, _ := e.cfg.MachineByMAC(macNuc1)
	tokA, tokB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	instA := strings.Repeat("c", 64)

	t.Run("report token in the header file", func(t *testing.T) {
		for _, tok := range []string{tokA, tokB} {
			out, err := r.Render(Request{Machine: m, Spec: SpecV3, Boot: BootSecrets{ReportToken: tok}})
			if err != nil {
				t.Fatal(err)
			}
			if got := parseV3(t, out).wantFile(t, "/etc/flint/report.header", 0o600, 0, 0); got != "Authorization: Bearer "+tok {
				t.Errorf("report.header = %q", got)
			}
			if strings.Contains(string(out), ReportTokenPlaceholder) {
				t.Error("the placeholder is still in a delivered config")
			}
		}
		if n := r.translations.Load(); n != 1 {
			t.Errorf("%d pipeline runs for two deliveries, want 1 (the cache keeps placeholders)", n)
		}
	})
	t.Run("legacy spec too", func(t *testing.T) {
		out, err := r.Render(Request{Machine: m, Spec: SpecLegacy, Boot: BootSecrets{ReportToken: tokA}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "Bearer%20"+tokA) || strings.Contains(string(out), ReportTokenPlaceholder) {
			t.Error("the legacy config does not carry the delivery's report token")
		}
	})
	t.Run("installer gets the installed-config URL with its token over https", func(t *testing.T) {
		out, err := r.Render(Request{Machine: m, Spec: SpecV3, Profile: InstallerProfile, Boot: BootSecrets{ReportToken: tokA, InstalledToken: instA}})
		if err != nil {
			t.Fatal(err)
		}
		script := parseV3(t, out).wantRootFile(t, "/opt/bin/flint-install", 0o755)
		want := "'https://198.18.0.2:8443/ignition?mac=02-00-0a-00-00-3c&stage=installed&token=" + instA + "'"
		if !strings.Contains(script, want) || !strings.Contains(script, "--cacert /etc/flint/ca.crt") {
			t.Errorf("installer script does not fetch %s with flint's CA:\n%s", want, script)
		}
		if strings.Contains(string(out), "PRIVATE KEY") {
			t.Error("the installer's config holds a private key")
		}
	})
	t.Run("a token of the wrong length is refused", func(t *testing.T) {
		if _, err := r.Render(Request{Machine: m, Spec: SpecV3, Boot: BootSecrets{ReportToken: "short"}}); err == nil {
			t.Error("accepted")
		}
	})
}

// TestTokenThroughDataURLIsAProfileError: a template that base64-encodes a
// token would deliver the placeholder; the renderer refuses it.
func TestTokenThroughDataURLIsAProfileError(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	e.writeProfile(t, "agent.yaml", `variant: flatcar
version: 1.1.0
storage:
  files:
    - path: /etc/flint/report.header
      mode: 0600
      contents:
        source: "{{dataurl .Boot.ReportToken}}"
`)
	_, err := e.renderer(t, fakeSecrets{}).RenderMAC(macNuc4, SpecV3)
	var pe *ProfileError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "must be written as plain text") {
		t.Fatalf("want a ProfileError about .Boot.ReportToken, got %v", err)
	}
}

func TestPlaceholdersAreTokenSized(t *testing.T) {
	for _, p := range []string{ReportTokenPlaceholder, InstalledTokenPlaceholder} {
		if len(p) != 64 {
			t.Errorf("%s is %d characters, tokens are 64", p, len(p))
		}
	}
}
