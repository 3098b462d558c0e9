package httpd

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/store"
)

// Sighting events recorded for script requests.
const (
	EventScript        = "http script"
	EventScriptUnknown = "http script (unknown)"
	EventScriptLocal   = "http script (boot disk)"
)

func (s *Server) healthz(c echo.Context) error {
	return writeBody(c, http.StatusOK, mimeText, []byte("ok\n"))
}

// bootScript is the generic script every machine loads first.
func (s *Server) bootScript(c echo.Context) error {
	return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.Chain(s.cfg.HTTPBaseURL())))
}

// machineScript answers /machines/:mac/boot.ipxe?arch=... with the machine's
// own script, or with a 404 whose body is a valid iPXE script explaining that
// the MAC is unknown.
func (s *Server) machineScript(c echo.Context) error {
	hw, err := config.ParseMAC(c.Param("mac"))
	if err != nil {
		return textError(http.StatusBadRequest,
			"malformed MAC in %s: %v. iPXE fills it in from ${mac:hexhyp}: chain to /boot.ipxe instead of writing this URL by hand",
			c.Request().URL.Path, err)
	}
	arch := c.QueryParam("arch")
	if len(arch) > 32 {
		arch = arch[:32] // it is only logged; keep a hostile value short
	}
	remote := remoteIP(c.Request())
	m, known := s.cfg.MachineByMAC(hw)
	if !known {
		s.recordSighting(hw, remote, EventScriptUnknown)
		s.log.Warn("http: boot script requested for a MAC not in the config", "mac", hw.String(), "arch", arch, "remote", remote)
		reason := fmt.Sprintf("it is not listed under machines: in %s", s.cfg.Source)
		if s.cfg.DHCP.DiscoverUnknown {
			reason += " (dhcp.discover_unknown let it boot iPXE, but flint has no boot config for unlisted machines)"
		}
		return writeBody(c, http.StatusNotFound, mimeText, []byte(ipxe.NotFound(hw.HexHyp(), reason)))
	}
	if s.Lifecycle != nil && s.Lifecycle.BootsLocally(hw) {
		s.recordSighting(hw, remote, EventScriptLocal)
		s.log.Info("http: boot script: local disk", "machine", m.Hostname, "mac", hw.String(), "arch", arch, "remote", remote)
		return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.LocalBoot(m.Hostname, m.MAC)))
	}
	s.recordSighting(hw, remote, EventScript)
	s.log.Info("http: boot script", "machine", m.Hostname, "mac", hw.String(), "arch", arch, "remote", remote)
	return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.MachineScript(s.cfg, m)))
}

// recordSighting notes the request in the store. A failure is logged, never
// sent to the machine: booting matters more than bookkeeping.
func (s *Server) recordSighting(hw config.MAC, ip netip.Addr, event string) {
	if s.st == nil {
		return
	}
	err := s.st.RecordSighting(store.Sighting{MAC: hw.String(), At: time.Now(), IP: ip, Event: event})
	if err != nil {
		s.log.Error("http: could not record sighting", "mac", hw.String(), "event", event, "err", err.Error())
	}
}

// remoteIP is the peer's address. X-Forwarded-For is ignored on purpose:
// machines talk to flint directly, and a header is trivially spoofed.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
