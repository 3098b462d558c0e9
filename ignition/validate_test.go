package ignition

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSpecFromAccept(t *testing.T) {
	cases := []struct {
		header string
		want   Spec
	}{
		{"", SpecV3},
		{"*/*", SpecV3},
		{"application/json", SpecV3},
		// Ignition v2.27 (spec 3.6.0), v2.20 (3.5.0).
		{"application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1", SpecV3},
		{"application/vnd.coreos.ignition+json;version=3.5.0, */*;q=0.1", SpecV3},
		// Legacy Ignition v0.36 exactly as it sends it.
		{"application/vnd.coreos.ignition+json; version=2.2.0, application/vnd.coreos.ignition+json; version=1; q=0.5, */*; q=0.1", SpecLegacy},
		{"application/vnd.coreos.ignition+json; version=1", SpecLegacy},
		{"Application/Vnd.CoreOS.Ignition+JSON; Version=2.4.0", SpecLegacy},
		// Offering both: the newer wins.
		{"application/vnd.coreos.ignition+json;version=2.2.0, application/vnd.coreos.ignition+json;version=3.4.0", SpecV3},
		// A refused (q=0) legacy offer is no offer.
		{"application/vnd.coreos.ignition+json;version=2.2.0;q=0", SpecV3},
		{"garbage;;;, application/vnd.coreos.ignition+json; version=2.2.0", SpecLegacy},
	}
	for _, c := range cases {
		if got := SpecFromAccept(c.header); got != c.want {
			t.Errorf("SpecFromAccept(%q) = %s, want %s", c.header, got, c.want)
		}
	}
}

func TestValidateAllClean(t *testing.T) {
	e := newEnv(t, envOpts{})
	if ps := ValidateAll(e.cfg, realPKI(t), e.assetsDir); len(ps) != 0 {
		t.Errorf("problems: %v", ps)
	}
}

func TestValidateAllReportsProfileAndAssetProblems(t *testing.T) {
	e := newEnv(t, envOpts{profiles: true})
	os.Remove(filepath.Join(e.assetsDir, "k3s/k3s"))
	src := insertAfter(t, embeddedText(t, "agent.yaml"), `{{- template "k3s-files" .}}`, "    - path: not/absolute\n")
	e.writeProfile(t, "agent.yaml", src)

	ps := ValidateAll(e.cfg, fakeSecrets{}, e.assetsDir)
	var asset, profile []Problem
	for _, p := range ps {
		switch p.Kind {
		case KindAsset:
			asset = append(asset, p)
		case KindProfile:
			profile = append(profile, p)
		default:
			t.Errorf("unexpected problem %s", p)
		}
	}
	if len(asset) != 1 || !strings.Contains(asset[0].Message, "k3s/k3s") || !strings.Contains(asset[0].Message, "cluster.assets.k3s") {
		t.Errorf("asset problems: %v", asset)
	}
	// Both agents share the mistake: reported once, in the template's terms.
	wantAt := filepath.Join(e.profilesDir, "agent.yaml") + ":" + strconv.Itoa(lineOf(t, src, "not/absolute")) + ":"
	if len(profile) != 1 || !strings.HasPrefix(profile[0].String(), wantAt) {
		t.Errorf("profile problems %v, want one at %s", profile, wantAt)
	}
}

func TestValidateAllWithoutServerAddress(t *testing.T) {
	e := newEnv(t, envOpts{})
	cfg := *e.cfg
	cfg.Server.AddressIP = netip.Addr{} // server.address empty, resolved only at serve time
	if ps := ValidateAll(&cfg, fakeSecrets{}, e.assetsDir); len(ps) != 0 {
		t.Errorf("problems: %v", ps)
	}
	// Rendering for real for real still insists on a known address.
	r := e.renderer(t, fakeSecrets{})
	r.cfg = &cfg
	if _, err := r.RenderMAC(macNuc1, SpecV3); err == nil || !strings.Contains(err.Error(), "server.address") {
		t.Errorf("err = %v", err)
	}
}
