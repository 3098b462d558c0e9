package httpd

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetrics: requests are counted by the route table's pattern (never the
// path a client sent), config verdicts by kind, and /metrics is served only
// where the admin API is: the socket, and HTTPS with the admin token.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	tok := f.script(t)
	q := "/ignition?mac=" + knownMAC + "&token=" + tok
	if rec := f.do(t, "GET", q); rec.Code != http.StatusOK {
		t.Fatalf("pointer: %d %s", rec.Code, rec.Body)
	}
	if rec := f.doTLS(t, "GET", q, ""); rec.Code != http.StatusOK {
		t.Fatalf("config: %d %s", rec.Code, rec.Body)
	}
	if rec := f.doTLS(t, "GET", q, ""); rec.Code != http.StatusForbidden {
		t.Fatalf("config with a spent token: %d %s", rec.Code, rec.Body)
	}
	f.do(t, "GET", "/machines/made-up-by-a-client/boot.ipxe")
	f.do(t, "GET", "/no/such/route")

	t.Run("only where the admin API is", func(t *testing.T) {
		if rec := f.do(t, "GET", "/metrics"); rec.Code != http.StatusNotFound {
			t.Errorf("plain HTTP: %d", rec.Code)
		}
		if rec := f.doTLS(t, "GET", "/metrics", ""); rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "flint_") {
			t.Errorf("HTTPS without the token: %d %s", rec.Code, rec.Body)
		}
		if rec := f.doSocket(t, "GET", "/metrics", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "flint_http_requests_total") {
			t.Errorf("socket: %d", rec.Code)
		}
	})

	rec := f.doTLS(t, "GET", "/metrics", "", "Authorization", "Bearer "+testAdminToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTPS with the token: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`flint_http_requests_total{code="200",listener="http",method="GET",route="/machines/:mac/boot.ipxe"} 1`,
		`flint_http_requests_total{code="400",listener="http",method="GET",route="/machines/:mac/boot.ipxe"} 1`,
		`flint_http_requests_total{code="200",listener="https",method="GET",route="/ignition"} 1`,
		`flint_http_requests_total{code="403",listener="https",method="GET",route="/ignition"} 1`,
		// /no/such/route, and /metrics on plain HTTP (not a route there)
		`flint_http_requests_total{code="404",listener="http",method="GET",route="unmatched"} 2`,
		`flint_http_request_duration_seconds_count{listener="http",route="/ignition"} 1`,
		`flint_ignition_configs_total{kind="pointer",verdict="serve"} 1`,
		`flint_ignition_configs_total{kind="secret",verdict="serve"} 1`,
		`flint_ignition_configs_total{kind="secret",verdict="refuse"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"made-up-by-a-client", "/no/such/route", tok, "52:54:00"} {
		if strings.Contains(body, leak) {
			t.Errorf("metrics show %q", leak)
		}
	}
}
