package httpd

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/lifecycle"
)

// nodeEvent is what a node reports about itself (config applied, install
// finished, etcd healthy...).
type nodeEvent struct {
	MAC    string `json:"mac"`
	Event  string `json:"event"`
	Detail string `json:"detail"`
}

var eventNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// decodeJSON reads a small JSON body strictly: the right content type, no
// unknown fields, nothing after the object.
func decodeJSON(c echo.Context, v any, example string) error {
	ct := c.Request().Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != mimeJSON {
		return textError(http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json), like %s", example)
	}
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return textError(http.StatusBadRequest, "the body must be JSON like %s: %v", example, err)
	}
	if dec.More() {
		return textError(http.StatusBadRequest, "the body must be one JSON object like %s", example)
	}
	return nil
}

// apiPostEvent takes a node's progress report (over HTTPS). It must carry the
// report token of the machine's last config; the lifecycle checks it, moves
// the machine and records the event.
func (s *Server) apiPostEvent(c echo.Context) error {
	const example = `{"mac": "52:54:00:12:34:56", "event": "config-applied", "detail": "..."}`
	var ev nodeEvent
	if err := decodeJSON(c, &ev, example); err != nil {
		return err
	}
	mac, err := config.ParseMAC(ev.MAC)
	if err != nil {
		return textError(http.StatusBadRequest, "event field mac: malformed MAC %q", ev.MAC)
	}
	if !eventNameRE.MatchString(ev.Event) {
		return textError(http.StatusBadRequest, "event field event: %q must be 1-64 letters, digits, '-', '_', '.' or spaces", ev.Event)
	}
	if len(ev.Detail) > 1024 || checkBytes(ev.Detail) != nil {
		return textError(http.StatusBadRequest, "event field detail: at most 1024 printable characters")
	}
	from := remoteIP(c.Request())
	err = s.Lifecycle.NodeEvent(lifecycle.NodeReport{MAC: mac, From: from, Token: bearer(c.Request()), Event: ev.Event, Detail: ev.Detail})
	switch {
	case errors.Is(err, lifecycle.ErrUnknownMachine):
		s.recordUnknown(from, mac, "node "+ev.Event+" (unknown MAC)", "")
		return textError(http.StatusNotFound, "MAC %s is not in flint's config", mac)
	case errors.Is(err, lifecycle.ErrRefused):
		return textError(http.StatusForbidden, "%v", err)
	case err != nil:
		return textError(http.StatusServiceUnavailable, "flint cannot record the event now; retry")
	}
	return c.NoContent(http.StatusNoContent)
}
