package httpd

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/flint-boot/flint/store"
)

func TestNodeEventsBuildTheTimeline(t *testing.T) {
	f := newFixture(t)
	var attributed []string
	f.s.Timeline = func(ip netip.Addr, event, detail string) {
		attributed = append(attributed, ip.String()+" "+event+" "+detail)
	}
	h := f.s.Handler()
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "198.18.0.60:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("GET", "/machines/"+knownMAC+"/boot.ipxe", ""); rec.Code != 200 {
		t.Fatalf("script: %d", rec.Code)
	}
	if rec := do("GET", "/assets/flatcar/vmlinuz", ""); rec.Code != 200 {
		t.Fatalf("asset: %d", rec.Code)
	}
	do("HEAD", "/assets/flatcar/vmlinuz", "") // a probe, not a download: not on the timeline
	if rec := do("POST", "/api/v1/events", `{"mac": "52:54:00:12:34:56", "event": "ignition-applied", "detail": "12 files"}`); rec.Code != http.StatusNoContent {
		t.Fatalf("post event: %d %s", rec.Code, rec.Body)
	}
	for body, want := range map[string]string{
		`{"mac": "nope", "event": "x"}`:                      "event field mac",
		`{"mac": "52:54:00:12:34:56", "event": "$(reboot)"}`: "event field event",
		`{"mac": "52:54:00:12:34:56", "event": "x", "a": 1}`: "unknown field",
		`not json`: "event body must be JSON",
	} {
		if rec := do("POST", "/api/v1/events", body); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %q, want 400 with %q", body, rec.Code, rec.Body, want)
		}
	}

	if len(attributed) != 1 || !strings.HasPrefix(attributed[0], "198.18.0.60 http /assets/flatcar/vmlinuz 100000 bytes, status 200") {
		t.Errorf("asset downloads attributed: %q", attributed)
	}
	rec := do("GET", "/api/v1/machines/"+knownMAC+"/events", "")
	var ev []store.Event
	if err := json.Unmarshal(rec.Body.Bytes(), &ev); err != nil || rec.Code != 200 {
		t.Fatalf("timeline: %d %s %v", rec.Code, rec.Body, err)
	}
	if len(ev) != 2 || ev[0].Event != EventScript || ev[1].Event != "node ignition-applied" || ev[1].Detail != "12 files" || ev[1].IP.String() != "198.18.0.60" {
		t.Fatalf("timeline = %+v", ev)
	}
	if rec := do("GET", "/api/v1/machines/zz/events", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("bad MAC timeline: %d", rec.Code)
	}
}

func TestReprovisionOnlyFromThisHost(t *testing.T) {
	f := newFixture(t)
	do := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v1/machines/nuc9/reprovision", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		f.s.Handler().ServeHTTP(rec, req)
		return rec
	}
	if rec := do("198.18.0.60:4000"); rec.Code != http.StatusForbidden {
		t.Fatalf("from the LAN: %d %s", rec.Code, rec.Body)
	}
	// From this host the request is judged: nuc9 is not a machine of the config.
	if rec := do("127.0.0.1:4000"); rec.Code != http.StatusNotFound {
		t.Fatalf("from loopback: %d %s", rec.Code, rec.Body)
	}
	f.cfg.Server.Listen = "198.18.0.1"
	if rec := do("198.18.0.1:4000"); rec.Code != http.StatusNotFound {
		t.Fatalf("from flint's own listen address: %d %s", rec.Code, rec.Body)
	}
}
