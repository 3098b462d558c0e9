package httpd

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

// requireAdmin guards the admin API on HTTPS: the caller must present flint's
// admin token (DATA/pki/admin-token). Nothing is trusted for its address.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok := bearer(c.Request())
		if s.AdminToken == "" || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) != 1 {
			s.log.Warn("admin API: refused a request without the admin token", "path", c.Request().URL.Path, "remote", c.Request().RemoteAddr)
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="flint admin"`)
			return textError(http.StatusUnauthorized, "the admin API needs flint's admin token (Authorization: Bearer, from DATA/pki/admin-token), or use the flint CLI on flint's host")
		}
		return next(c)
	}
}

// apiMachines lists the machine records.
func (s *Server) apiMachines(c echo.Context) error {
	s.State.Flush()
	ms, err := s.State.Machines()
	if err != nil {
		s.log.Error("admin API: read machines", "err", err)
		return textError(http.StatusServiceUnavailable, "flint cannot read its state now")
	}
	if ms == nil {
		ms = []store.Machine{} // an empty list, not null
	}
	for i := range ms {
		ms[i] = ms[i].Public()
	}
	return writeJSON(c, ms)
}

// apiLeases lists the DHCP leases, expired and declined ones included.
func (s *Server) apiLeases(c echo.Context) error {
	ls, err := s.State.Leases()
	if err != nil {
		s.log.Error("admin API: read leases", "err", err)
		return textError(http.StatusServiceUnavailable, "flint cannot read its state now")
	}
	if ls == nil {
		ls = []store.Lease{}
	}
	return writeJSON(c, ls)
}

// apiMachineEvents returns one machine's boot timeline, oldest first.
func (s *Server) apiMachineEvents(c echo.Context) error {
	mac, err := parseMAC(c.Param("mac"), "malformed MAC in "+c.Request().URL.Path)
	if err != nil {
		return err
	}
	s.State.Flush()
	ev, err := s.State.Events(mac.String())
	if err != nil {
		s.log.Error("admin API: read events", "err", err)
		return textError(http.StatusServiceUnavailable, "flint cannot read its state now")
	}
	if ev == nil {
		ev = []store.Event{}
	}
	return writeJSON(c, ev)
}

// reprovisionRequest is the body of POST .../reprovision.
type reprovisionRequest struct {
	Confirm bool `json:"confirm"`
	// Cancel disarms an armed reprovision instead (flint reprovision --cancel).
	Cancel bool `json:"cancel"`
}

// apiReprovision arms a machine for reinstall (flint reprovision), or with
// cancel disarms it. Without confirm a server is only explained (the plan),
// never armed. Lifecycle decides; this only maps its answers to statuses.
func (s *Server) apiReprovision(c echo.Context) error {
	var req reprovisionRequest
	if err := decodeJSON(c, &req, `{"confirm": true} or {"cancel": true}`); err != nil {
		return err
	}
	var plan lifecycle.Plan
	var err error
	if req.Cancel {
		plan, err = s.Lifecycle.CancelReprovision(c.Param("name"))
	} else {
		plan, err = s.Lifecycle.Reprovision(c.Param("name"), req.Confirm)
	}
	switch {
	case errors.Is(err, lifecycle.ErrBusy), errors.Is(err, lifecycle.ErrNotInstalled),
		errors.Is(err, lifecycle.ErrNotArmed), errors.Is(err, lifecycle.ErrRebuildStarted):
		return textError(http.StatusConflict, "%v", err)
	case errors.Is(err, lifecycle.ErrNoMachine):
		return textError(http.StatusNotFound, "%v", err)
	case err != nil:
		s.log.Error("admin API: reprovision", "machine", c.Param("name"), "cancel", req.Cancel, "err", err)
		return textError(http.StatusServiceUnavailable, "flint cannot change %s now: %v", c.Param("name"), err)
	}
	switch {
	case plan.Armed:
		s.log.Info("reprovision armed", "machine", plan.Machine, "role", plan.Role)
	case plan.Cancelled:
		s.log.Info("reprovision cancelled", "machine", plan.Machine, "role", plan.Role)
	}
	return writeJSON(c, plan)
}

func writeJSON(c echo.Context, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeBody(c, http.StatusOK, mimeJSON, append(body, '\n'))
}
