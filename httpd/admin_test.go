package httpd

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

// TestAdminAPI: machines, leases, timelines and reprovision are served on
// the admin socket and, with the admin token, on HTTPS; never on plain HTTP,
// never for an address.
func TestAdminAPI(t *testing.T) {
	f := newFixture(t)
	auth := []string{"Authorization", "Bearer " + testAdminToken}
	for _, path := range []string{"/api/v1/machines", "/api/v1/leases", "/api/v1/machines/" + knownMAC + "/events"} {
		t.Run(path, func(t *testing.T) {
			if rec := f.do(t, "GET", path); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "HTTPS port") {
				t.Errorf("plain HTTP: %d %s", rec.Code, rec.Body)
			}
			for name, h := range map[string][]string{
				"no token":      nil,
				"wrong token":   {"Authorization", "Bearer " + strings.Repeat("0", 64)},
				"basic auth":    {"Authorization", "Basic YWRtaW46YWRtaW4="},
				"token in URL?": {"X-Token", testAdminToken},
			} {
				rec := f.doTLS(t, "GET", path, "", h...)
				if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "52:54:00") {
					t.Errorf("HTTPS, %s: %d %s", name, rec.Code, rec.Body)
				}
			}
			if rec := f.doTLS(t, "GET", path, "", auth...); rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("HTTPS with the token: %d %s", rec.Code, rec.Body)
			}
			if rec := f.doSocket(t, "GET", path, ""); rec.Code != http.StatusOK {
				t.Errorf("socket: %d %s", rec.Code, rec.Body)
			}
		})
	}
	t.Run("no token hashes leave flint", func(t *testing.T) {
		f.script(t)
		if body := f.doSocket(t, "GET", "/api/v1/machines", "").Body.String(); strings.Contains(body, `"hash"`) || strings.Contains(body, `"tokens"`) {
			t.Errorf("machine records show boot tokens: %s", body)
		}
	})
	t.Run("reprovision", func(t *testing.T) {
		path := "/api/v1/machines/nuc1/reprovision"
		if rec := f.doSocket(t, "GET", path, ""); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d", rec.Code)
		}
		if rec := f.doSocket(t, "POST", path+"?confirm=yes", ""); rec.Code != http.StatusUnsupportedMediaType {
			t.Errorf("confirm in the query, no body: %d %s", rec.Code, rec.Body)
		}
		if rec := f.doSocket(t, "POST", path, "confirm=true", "Content-Type", "application/x-www-form-urlencoded"); rec.Code != http.StatusUnsupportedMediaType {
			t.Errorf("a browser form: %d %s", rec.Code, rec.Body)
		}
		if rec := f.doTLS(t, "POST", path, `{"confirm":true}`, "Content-Type", "application/json"); rec.Code != http.StatusUnauthorized {
			t.Errorf("HTTPS without the token: %d", rec.Code)
		}
		if st := f.state(t).State; st != store.StateReady {
			t.Fatalf("refused requests armed nuc1: %s", st)
		}
		if rec := f.doSocket(t, "POST", path, `{"confirm":false}`, "Content-Type", "application/json"); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "nuc1 was never installed") {
			t.Fatalf("plan for a machine never installed: %d %s", rec.Code, rec.Body)
		}
		if _, err := f.st.UpdateMachine("52:54:00:12:34:56", func(m *store.Machine) error { m.State = store.StateInstalled; return nil }); err != nil {
			t.Fatal(err)
		}
		var plan lifecycle.Plan
		rec := f.doSocket(t, "POST", path, `{"confirm":false}`, "Content-Type", "application/json")
		if json.Unmarshal(rec.Body.Bytes(), &plan); rec.Code != http.StatusOK || plan.Armed || !plan.NeedsConfirm {
			t.Fatalf("plan: %d %s", rec.Code, rec.Body)
		}
		rec = f.doTLS(t, "POST", path, `{"confirm":true}`, append([]string{"Content-Type", "application/json"}, auth...)...)
		if json.Unmarshal(rec.Body.Bytes(), &plan); rec.Code != http.StatusOK || !plan.Armed {
			t.Fatalf("arm: %d %s", rec.Code, rec.Body)
		}
		if rec := f.doSocket(t, "POST", "/api/v1/machines/nuc9/reprovision", `{}`, "Content-Type", "application/json"); rec.Code != http.StatusNotFound {
			t.Errorf("unknown machine: %d %s", rec.Code, rec.Body)
		}
		if rec := f.doTLS(t, "POST", path, `{"cancel":true}`, "Content-Type", "application/json"); rec.Code != http.StatusUnauthorized {
			t.Errorf("cancel over HTTPS without the token: %d", rec.Code)
		}
		rec = f.doSocket(t, "POST", path, `{"cancel":true}`, "Content-Type", "application/json")
		if json.Unmarshal(rec.Body.Bytes(), &plan); rec.Code != http.StatusOK || !plan.Cancelled {
			t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
		}
		if m := f.state(t); m.State != store.StateInstalled || m.Rebuilding {
			t.Fatalf("after cancel: %+v", m)
		}
		if rec := f.doSocket(t, "POST", path, `{"cancel":true}`, "Content-Type", "application/json"); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "nothing to cancel") {
			t.Errorf("cancel of nothing armed: %d %s", rec.Code, rec.Body)
		}
	})
}

func (f *fixture) state(t *testing.T) store.Machine {
	t.Helper()
	for _, m := range f.machines(t) {
		if m.Hostname == "nuc1" {
			return m
		}
	}
	t.Fatal("no record of nuc1")
	return store.Machine{}
}

// TestRouteTexts: the 404 and 405 answers come from the route table.
func TestRouteTexts(t *testing.T) {
	f := newFixture(t)
	body := f.do(t, "GET", "/nope").Body.String()
	onPlain := map[string]bool{}
	for _, r := range routes {
		onPlain[r.path] = onPlain[r.path] || r.on&onHTTP != 0
	}
	for _, r := range routes {
		if r.on&onHTTP != 0 && !strings.Contains(body, r.path) {
			t.Errorf("404 on plain HTTP does not list %s:\n%s", r.path, body)
		}
		if !onPlain[r.path] && strings.Contains(body, " "+r.path+" ") {
			t.Errorf("404 on plain HTTP lists %s, which it does not serve", r.path)
		}
	}
	if rec := f.do(t, "POST", "/boot.ipxe"); rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), "GET, HEAD") {
		t.Errorf("POST /boot.ipxe: %d %q", rec.Code, rec.Body)
	}
	if rec := f.doTLS(t, "GET", "/boot.ipxe", ""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "plain HTTP port") {
		t.Errorf("/boot.ipxe on HTTPS: %d %q", rec.Code, rec.Body)
	}
}
