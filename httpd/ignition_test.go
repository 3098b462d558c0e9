package httpd

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
)

type fakeRenderer struct {
	specs []ignition.Spec
	err   error
}

func (f *fakeRenderer) RenderProfile(mac config.MAC, spec ignition.Spec, profile string) ([]byte, error) {
	f.specs = append(f.specs, spec)
	if f.err != nil {
		return nil, f.err
	}
	if mac.String() != "52:54:00:12:34:56" {
		return nil, ignition.ErrUnknownMachine
	}
	return []byte(`{"ignition":{"version":"3.4.0"}}`), nil
}

func TestIgnitionEndpoint(t *testing.T) {
	f := newFixture(t)
	r := &fakeRenderer{}
	f.s.Ignition = r
	get := func(path, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "198.18.0.60:1234"
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		f.s.Handler().ServeHTTP(rec, req)
		return rec
	}

	rec := get("/ignition?mac="+knownMAC, "application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/vnd.coreos.ignition+json;version=3.4.0" ||
		rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Length") != "32" {
		t.Fatalf("known MAC: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	// The legacy client's Accept header selects spec 2.x.
	rec = get("/ignition?mac=52:54:00:12:34:56", "application/vnd.coreos.ignition+json; version=2.2.0, application/vnd.coreos.ignition+json; version=1; q=0.5, */*; q=0.1")
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), "version=2.3.0") || r.specs[1] != ignition.SpecLegacy {
		t.Fatalf("legacy: %d %v specs %v", rec.Code, rec.Header(), r.specs)
	}
	if rec := get("/ignition?mac="+unknownMAC, ""); rec.Code != 404 || !strings.Contains(rec.Body.String(), "not in flint's config") {
		t.Fatalf("unknown MAC: %d %q", rec.Code, rec.Body)
	}
	if rec := get("/ignition?mac=zz", ""); rec.Code != 400 {
		t.Fatalf("bad MAC: %d", rec.Code)
	}
	if rec := get("/ignition", ""); rec.Code != 400 {
		t.Fatalf("no MAC: %d", rec.Code)
	}

	// Render problems hold the node with 503 (Ignition retries) and never leak the Butane.
	r.err = &ignition.AssetError{Name: "k3s", Field: "cluster.assets.k3s", Path: "/x/k3s/k3s", Err: errors.New("no such file")}
	rec = get("/ignition?mac="+knownMAC, "")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "k3s") {
		t.Fatalf("missing asset: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	r.err = &ignition.ProfileError{Butane: []byte("SECRET-KEY-MATERIAL"), Problems: []ignition.Problem{{File: "server.yaml", Line: 3, Message: "bad"}}}
	rec = get("/ignition?mac="+knownMAC, "")
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "SECRET") || strings.Contains(f.logs.String(), "SECRET") {
		t.Fatalf("profile error: %d %q\nlogs: %s", rec.Code, rec.Body, f.logs)
	}
	if !strings.Contains(f.logs.String(), "server.yaml:3") {
		t.Errorf("the profile line is not logged:\n%s", f.logs)
	}

	ev, err := f.st.Events("52:54:00:12:34:56")
	if err != nil {
		t.Fatal(err)
	}
	var served int
	for _, e := range ev {
		if e.Event == EventIgnition {
			served++
		}
	}
	if served != 2 {
		t.Errorf("timeline has %d %q entries, want 2: %+v", served, EventIgnition, ev)
	}
}
