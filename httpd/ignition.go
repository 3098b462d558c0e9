package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

// ConfigRenderer makes a machine's Ignition config (*ignition.Renderer).
type ConfigRenderer interface {
	RenderProfile(mac config.MAC, spec ignition.Spec, profile string) ([]byte, error)
}

// Timeline entries of /ignition requests.
const (
	EventIgnition        = "ignition served"
	EventIgnitionUnknown = "ignition request (unknown MAC)"
)

// retryAfter is what a node is told to wait while its config can't be made;
// Ignition retries any 5xx on its own backoff anyway.
const retryAfter = 10

// ignitionConfig serves /ignition?mac=MAC: the machine's rendered config in
// the spec its client asks for. It never answers 200 with an empty or invalid
// config: a render problem is a 503 (the node keeps retrying until the
// operator fixes the asset or profile), never a half config.
func (s *Server) ignitionConfig(c echo.Context) error {
	if s.Ignition == nil {
		return textError(http.StatusServiceUnavailable, "this flint serves no Ignition configs")
	}
	raw := c.QueryParam("mac")
	hw, err := config.ParseMAC(raw)
	if err != nil {
		return textError(http.StatusBadRequest, "query parameter mac: malformed MAC %q: use /ignition?mac=52-54-00-12-34-56", raw)
	}
	stage := c.QueryParam("stage")
	if stage != "" && stage != "installed" {
		return textError(http.StatusBadRequest, "query parameter stage: %q is not known (leave it out, or stage=installed)", stage)
	}
	from := remoteIP(c.Request())
	if s.Lifecycle != nil {
		verdict, reason := s.Lifecycle.ConfigRequest(hw, from)
		switch verdict {
		case lifecycle.Refuse:
			return textError(http.StatusForbidden, "flint refuses the config of %s: %s", hw, reason)
		case lifecycle.Wait:
			c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
			s.log.Info("ignition: node waits", "mac", hw.String(), "reason", reason)
			return textError(http.StatusServiceUnavailable, "not yet: %s", reason)
		}
	}
	// A disk-mode machine's PXE boot runs the installer; the installer asks
	// for stage=installed, the machine's own config, to write to disk.
	profile := ""
	if m, ok := s.cfg.MachineByMAC(hw); ok && stage == "" && s.cfg.InstallModeOf(m) == config.InstallDisk {
		profile = ignition.InstallerProfile
	}
	spec := ignition.SpecFromAccept(c.Request().Header.Get("Accept"))
	out, err := s.Ignition.RenderProfile(hw, spec, profile)
	var pe *ignition.ProfileError
	var ae *ignition.AssetError
	switch {
	case errors.Is(err, ignition.ErrUnknownMachine):
		s.record(c, hw.String(), EventIgnitionUnknown, "404: not in the config")
		return textError(http.StatusNotFound, "MAC %s is not in flint's config (%s): add it under machines: to give it an Ignition config", hw, s.cfg.Source)
	case errors.As(err, &ae):
		s.log.Error("ignition: asset missing, node will retry", "mac", hw.String(), "asset", ae.Name, "path", ae.Path)
		s.record(c, hw.String(), EventIgnition+" (waiting)", "asset "+ae.Name+" missing")
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "%v", ae)
	case errors.As(err, &pe):
		for _, p := range pe.Problems {
			s.log.Error("ignition: profile does not render, node will retry", "mac", hw.String(), "problem", p.String())
		}
		s.record(c, hw.String(), EventIgnition+" (waiting)", "profile does not render")
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "the config of %s does not render; flint's log names the profile line to fix", hw)
	case err != nil:
		s.log.Error("ignition: render failed", "mac", hw.String(), "err", err.Error())
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "could not make the config of %s: %v", hw, err)
	case len(out) == 0:
		return textError(http.StatusInternalServerError, "the config of %s rendered empty; this is a flint bug", hw)
	}
	version, err := ignition.SpecVersion(s.cfg.Cluster.ButaneVersion, spec)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("spec %s, %d bytes", version, len(out))
	if profile != "" {
		detail += ", profile " + profile
	}
	s.record(c, hw.String(), EventIgnition, detail)
	if s.Lifecycle != nil {
		s.Lifecycle.ConfigServed(hw)
	}
	// It holds private keys: no proxy or client cache may keep a copy.
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeBody(c, http.StatusOK, "application/vnd.coreos.ignition+json;version="+version, out)
}

// record adds a MAC-named request to the machine's timeline; a failure to
// record never fails the boot.
func (s *Server) record(c echo.Context, mac, event, detail string) {
	if s.st == nil {
		return
	}
	err := s.st.RecordSighting(store.Sighting{MAC: mac, At: time.Now(), IP: remoteIP(c.Request()), Event: event, Detail: detail})
	if err != nil {
		s.log.Warn("could not record sighting", "mac", mac, "event", event, "err", err)
	}
}
