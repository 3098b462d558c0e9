package httpd

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

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

func writeJSON(c echo.Context, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeBody(c, http.StatusOK, mimeJSON, append(body, '\n'))
}
