package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

// Timeline entries of requests about MACs that are not in the config.
const (
	EventScriptUnknown   = "http script (unknown)"
	EventIgnitionUnknown = "ignition request (unknown MAC)"
)

// retryAfter is what a node is told to wait while flint cannot answer yet;
// Ignition retries any 5xx on its own backoff anyway.
const retryAfter = 10

// healthz says the process answers HTTP: a liveness probe. It checks
// nothing else, so a restart is not triggered by what a restart cannot fix.
func (s *Server) healthz(c echo.Context) error {
	return writeBody(c, http.StatusOK, mimeText, []byte("ok\n"))
}

// readyz says whether flint can serve configs (Options.Readiness: the store
// answers a read by key and the profiles load): a readiness probe. The body
// names the failed check only; why it failed goes to the log.
func (s *Server) readyz(c echo.Context) error {
	err := s.Readiness.Ready()
	if err == nil {
		return writeBody(c, http.StatusOK, mimeText, []byte("ready\n"))
	}
	check := "readiness"
	var nr *NotReady
	if errors.As(err, &nr) {
		check = nr.Check
	}
	s.log.Warn("not ready", "check", check, "err", err.Error())
	c.Response().Header().Set("Retry-After", fmt.Sprint(retryAfter))
	return writeBody(c, http.StatusServiceUnavailable, mimeText,
		[]byte(fmt.Sprintf("not ready: the %s check failed; flint's log says why (message \"not ready\")\n", check)))
}

// bootScript is the generic script every machine loads first.
func (s *Server) bootScript(c echo.Context) error {
	return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.Chain(s.Config.HTTPBaseURL())))
}

// parseMAC reads a MAC from a request, or answers 400 naming where it was.
func parseMAC(raw, where string) (config.MAC, error) {
	mac, err := config.ParseMAC(raw)
	if err != nil {
		return mac, textError(http.StatusBadRequest, "%s: %v. iPXE fills it in from ${mac:hexhyp}: chain to /boot.ipxe instead of writing URLs by hand", where, err)
	}
	return mac, nil
}

// recordUnknown notes a request about a MAC outside the config, within the
// per-source rate limit.
func (s *Server) recordUnknown(from netip.Addr, mac config.MAC, event, detail string) {
	s.Timeline.RecordUnknown(from, store.Sighting{MAC: mac.String(), At: time.Now(), IP: from, Event: event, Detail: detail})
}

// machineScript answers /machines/:mac/boot.ipxe?arch=... with what the
// lifecycle decides: the machine's install script (with a fresh boot token),
// a local-boot script, or a valid iPXE script explaining a refusal. Scripts
// that carry a token are never cached.
func (s *Server) machineScript(c echo.Context) error {
	mac, err := parseMAC(c.Param("mac"), "malformed MAC in "+c.Request().URL.Path)
	if err != nil {
		return err
	}
	arch := c.QueryParam("arch")
	if len(arch) > 32 {
		arch = arch[:32] // it is only logged; keep a hostile value short
	}
	from := remoteIP(c.Request())
	d := s.Lifecycle.Script(mac, from)
	switch d.Verdict {
	case lifecycle.ScriptUnknown:
		s.recordUnknown(from, mac, EventScriptUnknown, "")
		s.log.Info("http: boot script requested for a MAC not in the config", "mac", mac, "arch", arch, "remote", from)
		reason := fmt.Sprintf("it is not listed under machines: in %s", s.Config.Source)
		if s.Config.DHCP.DiscoverUnknown {
			reason += " (dhcp.discover_unknown let it boot iPXE, but flint has no boot config for unlisted machines)"
		}
		return writeBody(c, http.StatusNotFound, mimeText, []byte(ipxe.NotFound(mac.HexHyp(), reason)))
	case lifecycle.ScriptLocal:
		s.log.Info("http: boot script: local disk", "machine", d.Machine.Hostname, "mac", mac, "arch", arch, "remote", from, "reason", d.Reason)
		return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.LocalBoot(d.Machine.Hostname, d.Machine.MAC)))
	case lifecycle.ScriptRefuse:
		return writeBody(c, http.StatusForbidden, mimeText, []byte(ipxe.Refused(d.Machine.Hostname, d.Reason)))
	case lifecycle.ScriptWait:
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "not now: %s", d.Reason)
	}
	s.log.Info("http: boot script", "machine", d.Machine.Hostname, "mac", mac, "arch", arch, "remote", from)
	c.Response().Header().Set("Cache-Control", "no-store") // it carries a boot token
	return writeBody(c, http.StatusOK, mimeText, []byte(ipxe.MachineScript(s.Config, d.Machine, d.Token)))
}
