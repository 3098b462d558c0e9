package httpd

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// The web dashboard: static files, embedded, served on HTTPS without
// authentication (they hold no data). The page asks for the admin token and
// sends it as a bearer on every API call: no cookie, so no other site can
// make a browser act with it (no CSRF to defend against).
//
//go:embed ui
var uiFiles embed.FS

// uiTypes are the dashboard's file types.
var uiTypes = map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

// ui serves /ui/ (index.html) and its files.
func (s *Server) ui(c echo.Context) error {
	name := c.Param("*")
	if name == "" {
		name = "index.html"
	}
	typ, ok := uiTypes[path.Ext(name)]
	if !ok || strings.Contains(name, "..") || strings.HasPrefix(name, "/") {
		return textError(http.StatusNotFound, "no such dashboard file; the dashboard is at /ui/")
	}
	body, err := fs.ReadFile(uiFiles, "ui/"+name)
	if err != nil {
		return textError(http.StatusNotFound, "no such dashboard file; the dashboard is at /ui/")
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	return writeBody(c, http.StatusOK, typ, body)
}

// streamPoll is how often a stream compares the state's version;
// streamKeepAlive how long it stays silent at most.
const (
	streamPoll      = 250 * time.Millisecond
	streamKeepAlive = 15 * time.Second
)

// stream serves /api/v1/stream: server-sent events. It sends "changed"
// (data: the state's version) at once and whenever flint's state changed
// since, at most every streamPoll; the dashboard then reads what it shows.
// Watching costs a counter read per stream and poll, never a table read.
// At most limits.event_streams are open at once.
func (s *Server) stream(c echo.Context) error {
	if n := s.streams.Add(1); int(n) > s.Config.Limits.EventStreams {
		s.streams.Add(-1)
		return textError(http.StatusServiceUnavailable, "%d live streams are open already (limits.event_streams): close a dashboard tab, or raise the limit", n-1)
	}
	defer s.streams.Add(-1)
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := c.Request().Context()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	var last uint64
	sent := false
	wrote := time.Now()
	for {
		if v := s.State.Version(); !sent || v != last {
			if _, err := fmt.Fprintf(w, "event: changed\ndata: %d\n\n", v); err != nil {
				return nil
			}
			w.Flush()
			last, sent, wrote = v, true, time.Now()
		} else if time.Since(wrote) >= streamKeepAlive {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
			wrote = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
