package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/lifecycle"
)

// configRequest reads /ignition's query: mac, token and stage.
func configRequest(c echo.Context, pointer bool) (lifecycle.ConfigRequest, error) {
	mac, err := parseMAC(c.QueryParam("mac"), "query parameter mac")
	if err != nil {
		return lifecycle.ConfigRequest{}, err
	}
	stage := lifecycle.Stage(c.QueryParam("stage"))
	if stage != lifecycle.StageBoot && stage != lifecycle.StageInstalled {
		return lifecycle.ConfigRequest{}, textError(http.StatusBadRequest, "query parameter stage: %q is not known (leave it out, or stage=installed)", stage)
	}
	return lifecycle.ConfigRequest{MAC: mac, From: remoteIP(c.Request()), Token: c.QueryParam("token"), Stage: stage, Pointer: pointer}, nil
}

// answer turns a refusal or wait into its HTTP answer (nil when served).
func (s *Server) answer(c echo.Context, a lifecycle.Admission) error {
	kind := "secret"
	if a.Pointer() {
		kind = "pointer"
	}
	s.Metrics.Config(kind, a.Verdict.String(), a.Refused)
	switch a.Verdict {
	case lifecycle.Unknown:
		s.recordUnknown(a.From(), a.MAC(), EventIgnitionUnknown, "404: not in the config")
		return textError(http.StatusNotFound, "MAC %s is not in flint's config (%s): add it under machines: to give it an Ignition config", a.MAC(), s.Config.Source)
	case lifecycle.Refuse:
		return textError(http.StatusForbidden, "flint refuses the config of %s: %s", a.MAC(), a.Reason)
	case lifecycle.Wait:
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		s.log.Info("ignition: node waits", "machine", a.Machine.Hostname, "reason", a.Reason)
		return textError(http.StatusServiceUnavailable, "not yet: %s", a.Reason)
	}
	return nil
}

// pointerConfig serves /ignition on plain HTTP: the config named on the
// kernel command line. It holds no secret, only flint's CA and the HTTPS URL
// of the machine's real config, with the same token.
func (s *Server) pointerConfig(c echo.Context) error {
	req, err := configRequest(c, true)
	if err != nil {
		return err
	}
	if req.Stage != lifecycle.StageBoot {
		return textError(http.StatusNotFound, "the installed-system config is served over HTTPS only (%s/ignition)", s.Config.HTTPSBaseURL())
	}
	a := s.Lifecycle.AdmitConfig(req)
	if err := s.answer(c, a); err != nil {
		return err
	}
	spec := ignition.SpecFromAccept(c.Request().Header.Get("Accept"))
	target := s.Config.HTTPSBaseURL() + "/ignition?" + url.Values{"mac": {req.MAC.HexHyp()}, "token": {req.Token}}.Encode()
	out, err := ignition.Pointer(s.Config.Cluster.ButaneVersion, spec, target, s.CACert)
	if err != nil {
		return err
	}
	version, err := ignition.SpecVersion(s.Config.Cluster.ButaneVersion, spec)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store") // it carries the boot token
	return writeBody(c, http.StatusOK, "application/vnd.coreos.ignition+json;version="+version, out)
}

// secretConfig serves /ignition over HTTPS: the machine's rendered config in
// the spec its client asks for, once per boot token. It never answers 200
// with an empty or invalid config: a render problem is a 503 (the node keeps
// retrying until the operator fixes the asset or profile), never a half one.
func (s *Server) secretConfig(c echo.Context) error {
	req, err := configRequest(c, false)
	if err != nil {
		return err
	}
	a := s.Lifecycle.AdmitConfig(req)
	if err := s.answer(c, a); err != nil {
		return err
	}
	hw := a.Machine.HW
	spec := ignition.SpecFromAccept(c.Request().Header.Get("Accept"))
	out, err := s.Renderer.Render(ignition.Request{Machine: a.Machine, Spec: spec, Profile: a.Profile, ClusterState: a.ClusterState, Boot: a.Boot})
	var pe *ignition.ProfileError
	var ae *ignition.AssetError
	switch {
	case errors.As(err, &ae):
		s.log.Error("ignition: asset missing, node will retry", "mac", hw, "asset", ae.Name, "field", ae.Field)
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "asset %s (%s) is missing on flint: the operator must place it or run `flint assets sync`", ae.Name, ae.Field)
	case errors.As(err, &pe):
		for _, p := range pe.Problems {
			s.log.Error("ignition: profile does not render, node will retry", "mac", hw, "problem", p.String())
		}
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "the config of %s does not render; flint's log names the profile line to fix", hw)
	case err != nil:
		s.log.Error("ignition: render failed", "mac", hw, "err", err.Error())
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "could not make the config of %s; flint's log says why", hw)
	case len(out) == 0:
		return textError(http.StatusInternalServerError, "the config of %s rendered empty; this is a flint bug", hw)
	}
	version, err := ignition.SpecVersion(s.Config.Cluster.ButaneVersion, spec)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("spec %s, %d bytes", version, len(out))
	if a.Profile != "" {
		detail += ", profile " + a.Profile
	}
	if req.Stage == lifecycle.StageInstalled {
		detail += ", installed system"
	}
	// Spent before it is sent: of two requests with one token, one wins.
	if err := s.Lifecycle.Delivered(a, detail); errors.Is(err, lifecycle.ErrSpent) {
		return textError(http.StatusForbidden, "flint refuses the config of %s: %v", hw, err)
	} else if err != nil {
		c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return textError(http.StatusServiceUnavailable, "flint cannot record the delivery now; retry")
	}
	// It holds private keys: no proxy or client cache may keep a copy.
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeBody(c, http.StatusOK, "application/vnd.coreos.ignition+json;version="+version, out)
}
