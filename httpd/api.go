package httpd

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

// apiMachines lists the machine records (the CLI reads this while the running
// server holds the database lock).
func (s *Server) apiMachines(c echo.Context) error {
	if s.st == nil {
		return textError(http.StatusServiceUnavailable, "this flint runs without a state store")
	}
	ms, err := s.st.Machines()
	if err != nil {
		return textError(http.StatusInternalServerError, "read machines from flint's state: %v", err)
	}
	if ms == nil {
		ms = []store.Machine{} // an empty list, not null
	}
	return writeJSON(c, ms)
}

// apiLeases lists the DHCP leases, expired and declined ones included.
func (s *Server) apiLeases(c echo.Context) error {
	if s.st == nil {
		return textError(http.StatusServiceUnavailable, "this flint runs without a state store")
	}
	ls, err := s.st.Leases()
	if err != nil {
		return textError(http.StatusInternalServerError, "read leases from flint's state: %v", err)
	}
	if ls == nil {
		ls = []store.Lease{}
	}
	return writeJSON(c, ls)
}

// apiMachineEvents returns one machine's boot timeline, oldest first.
func (s *Server) apiMachineEvents(c echo.Context) error {
	if s.st == nil {
		return textError(http.StatusServiceUnavailable, "this flint runs without a state store")
	}
	hw, err := config.ParseMAC(c.Param("mac"))
	if err != nil {
		return textError(http.StatusBadRequest, "malformed MAC %q: use 52-54-00-12-34-56 or 52:54:00:12:34:56", c.Param("mac"))
	}
	ev, err := s.st.Events(hw.String())
	if err != nil {
		return textError(http.StatusInternalServerError, "read events from flint's state: %v", err)
	}
	if ev == nil {
		ev = []store.Event{}
	}
	return writeJSON(c, ev)
}

// nodeEvent is what a node reports about itself (config applied, install
// finished, etcd healthy...).
type nodeEvent struct {
	MAC    string `json:"mac"`
	Event  string `json:"event"`
	Detail string `json:"detail"`
}

// apiPostEvent records a node's progress report on its timeline.
func (s *Server) apiPostEvent(c echo.Context) error {
	if s.st == nil {
		return textError(http.StatusServiceUnavailable, "this flint runs without a state store")
	}
	var ev nodeEvent
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return textError(http.StatusBadRequest, "event body must be JSON {\"mac\": \"52:54:00:12:34:56\", \"event\": \"...\", \"detail\": \"...\"}: %v", err)
	}
	hw, err := config.ParseMAC(ev.MAC)
	if err != nil {
		return textError(http.StatusBadRequest, "event field mac: malformed MAC %q", ev.MAC)
	}
	if !eventNameRE.MatchString(ev.Event) {
		return textError(http.StatusBadRequest, "event field event: %q must be 1-64 letters, digits, '-', '_', '.' or spaces", ev.Event)
	}
	if len(ev.Detail) > 1024 || checkBytes(ev.Detail) != nil {
		return textError(http.StatusBadRequest, "event field detail: at most 1024 printable characters")
	}
	ip := remoteIP(c.Request())
	if s.Lifecycle != nil {
		if err := s.Lifecycle.NodeEvent(hw, ip, ev.Event); errors.Is(err, lifecycle.ErrRefused) {
			s.log.Warn("node event refused", "mac", hw.String(), "event", ev.Event, "ip", ip, "err", err)
			return textError(http.StatusForbidden, "%v", err)
		} else if err != nil {
			s.log.Warn("node event not applied", "mac", hw.String(), "event", ev.Event, "err", err)
		}
	}
	err = s.st.RecordSighting(store.Sighting{MAC: hw.String(), At: time.Now(), IP: ip, Event: "node " + ev.Event, Detail: ev.Detail})
	if err != nil {
		s.log.Warn("could not record node event", "mac", hw.String(), "event", ev.Event, "err", err)
		return textError(http.StatusInternalServerError, "record event: %v", err)
	}
	s.log.Info("node event", "mac", hw.String(), "event", ev.Event, "ip", ip)
	return c.NoContent(http.StatusNoContent)
}

// apiReprovision arms a machine for reinstall (flint reprovision). Only from
// this host: anyone who can arm a reprovision opens that machine's install
// window, and with it access to its keys.
func (s *Server) apiReprovision(c echo.Context) error {
	if s.st == nil {
		return textError(http.StatusServiceUnavailable, "this flint runs without a state store")
	}
	if ip := remoteIP(c.Request()); !s.fromThisHost(ip) {
		s.log.Warn("reprovision refused: not from this host", "remote", ip, "machine", c.Param("name"))
		return textError(http.StatusForbidden, "reprovision is only accepted from flint's own host (run flint reprovision there)")
	}
	plan, err := lifecycle.Reprovision(s.st, c.Param("name"), c.QueryParam("confirm") == "yes", time.Now())
	switch {
	case errors.Is(err, lifecycle.ErrBusy):
		return textError(http.StatusConflict, "%v", err)
	case err != nil && !plan.Armed && plan.Machine == "":
		return textError(http.StatusNotFound, "%v", err)
	case err != nil:
		return textError(http.StatusInternalServerError, "%v", err)
	}
	if plan.Armed {
		s.log.Info("reprovision armed", "machine", plan.Machine, "role", plan.Role)
	}
	return writeJSON(c, plan)
}

// fromThisHost: loopback, or flint's own listen address (the CLI connects
// there when server.listen names one).
func (s *Server) fromThisHost(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	listen, err := netip.ParseAddr(s.cfg.Server.Listen)
	return err == nil && !listen.IsUnspecified() && ip == listen
}

var eventNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)

// timeline attributes a request without a MAC to the machine at its address.
func (s *Server) timeline(c echo.Context, event, detail string) {
	if s.Timeline == nil {
		return
	}
	if ip := remoteIP(c.Request()); ip.IsValid() {
		s.Timeline(ip, event, detail)
	}
}

func writeJSON(c echo.Context, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeBody(c, http.StatusOK, mimeJSON, append(body, '\n'))
}
