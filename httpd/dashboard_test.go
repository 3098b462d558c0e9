package httpd

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

// TestDashboardFiles: the page and its files are served on HTTPS with a
// strict content security policy, nothing else under /ui/, never on plain
// HTTP.
func TestDashboardFiles(t *testing.T) {
	f := newFixture(t)
	for path, typ := range map[string]string{"/ui/": "text/html", "/ui/app.js": "text/javascript", "/ui/style.css": "text/css"} {
		rec := f.doTLS(t, "GET", path, "")
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), typ) {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	for _, path := range []string{"/ui/../routes.go", "/ui/dashboard.go", "/ui/ui/index.html"} {
		if rec := f.doTLS(t, "GET", path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	if rec := f.do(t, "GET", "/ui/"); rec.Code != http.StatusNotFound {
		t.Errorf("plain HTTP /ui/: %d", rec.Code)
	}
}

// TestStream: the stream needs the admin token, says "changed" at once and
// again after a write, and at most limits.event_streams are open.
func TestStream(t *testing.T) {
	f := newFixture(t)
	f.cfg.Limits.EventStreams = 1
	srv := httptest.NewServer(f.s.HandlerTLS())
	defer srv.Close()
	get := func(ctx context.Context, auth bool) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/stream", nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := get(context.Background(), false); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d", res.StatusCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := get(ctx, true)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event: ") {
				events <- sc.Text()
			}
		}
		close(events)
	}()
	next := func(what string) {
		t.Helper()
		select {
		case e := <-events:
			if e != "event: changed" {
				t.Fatalf("%s: %q", what, e)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", what)
		}
	}
	next("at once")
	t.Run("a second stream is refused", func(t *testing.T) {
		if res := get(context.Background(), true); res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("second stream: %d", res.StatusCode)
		}
	})
	if _, err := f.st.UpdateMachine("52:54:00:12:34:56", func(m *store.Machine) error { m.LastEvent = "test"; return nil }); err != nil {
		t.Fatal(err)
	}
	next("after a write")
	select {
	case e, ok := <-events:
		if ok {
			t.Errorf("an event without a change: %q", e)
		}
	case <-time.After(3 * streamPoll):
	}
}
