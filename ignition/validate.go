package ignition

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/profiles"
)

// placeholderAddress stands in for flint's address when the config leaves
// server.address to be resolved from interfaces at serve time: validation
// needs some URL, and TEST-NET-1 (RFC 5737) never routes anywhere.
var placeholderAddress = netip.MustParseAddr("192.0.2.1")

// ValidateAll checks that every machine's config renders and returns every
// problem (nil when all render): it renders one machine of each kind (same
// profile, role and install mode) in both specs, and an installer for disk
// installs, so a site of 10,000 machines is checked in the time of a few.
// Everything else a render depends on per machine (names, addresses, kernel
// arguments) the config's own validation checks. Problems of Kind KindAsset
// name missing asset files; the profiles are still checked then, with
// placeholder hashes. Used by `flint validate`, and by `flint serve` to
// refuse a config that would hand out broken Ignition configs.
func ValidateAll(cfg *config.Config, secrets Secrets, assetsDir string) []Problem {
	if !cfg.Server.AddressIP.IsValid() {
		c := *cfg
		c.Server.AddressIP = placeholderAddress
		cfg = &c
	}
	r, err := NewRenderer(cfg, secrets, assetsDir, RenderOptions{})
	if err != nil {
		return []Problem{{Kind: KindProfile, Message: err.Error()}}
	}
	return r.Problems()
}

// Problems is ValidateAll on this renderer: `flint serve` checks with the
// renderer it then serves from, so the start-up renders warm its cache.
func (r *Renderer) Problems() []Problem {
	cfg, assetsDir := r.cfg, r.assetsDir
	// Report every missing asset, then go on with a placeholder hash so the
	// profiles are still checked.
	var problems []Problem
	assets := map[string]Asset{}
	for _, a := range cfg.NodeAssets() {
		asset, err := r.hasher.asset(cfg, assetsDir, a)
		if err != nil {
			problems = append(problems, Problem{Kind: KindAsset, Message: err.Error()})
			asset = Asset{Path: a.Path, URL: cfg.HTTPBaseURL() + "/assets/" + escapePath(a.Path), SHA512: strings.Repeat("0", 128)}
		}
		assets[a.Name] = asset
	}

	type kind struct{ profile, role, mode string }
	type variant struct {
		spec    Spec
		profile string
	}
	checked := map[kind]bool{}
	seen := map[string]bool{}
	for i := range cfg.Machines {
		m := &cfg.Machines[i]
		k := kind{profiles.ProfileOf(m), m.Role, cfg.InstallModeOf(m)}
		if checked[k] {
			continue
		}
		checked[k] = true
		variants := []variant{{SpecV3, ""}, {SpecLegacy, ""}}
		if cfg.InstallModeOf(m) == config.InstallDisk {
			// Its PXE boot runs the installer, which fetches the role config.
			variants = append(variants, variant{SpecV3, InstallerProfile})
		}
		// Each machine renders with the assets it gets, as when it boots.
		mine := map[string]Asset{}
		for _, a := range cfg.NodeAssetsOf(m) {
			mine[a.Name] = assets[a.Name]
		}
		for _, v := range variants {
			_, err := r.render(m, v.spec, mine, v.profile, ClusterStateNew)
			for _, p := range problemsOf(m, err) {
				// The same template error shows up for every machine of a
				// profile and in both specs: report it once.
				k := p.File + "\x00" + strconv.Itoa(p.Line) + "\x00" + p.Message
				if p.Kind != KindProfile {
					k = p.Machine + k
				}
				if !seen[k] {
					seen[k] = true
					problems = append(problems, p)
				}
			}
			if err != nil {
				break // the legacy render would repeat the problem
			}
		}
	}
	return problems
}

// problemsOf converts a render error into problems.
func problemsOf(m *config.Machine, err error) []Problem {
	if err == nil {
		return nil
	}
	var pe *ProfileError
	if errors.As(err, &pe) {
		return pe.Problems
	}
	var perr *profiles.Error
	if errors.As(err, &perr) {
		return []Problem{{Kind: KindProfile, Machine: m.Hostname, Profile: profiles.ProfileOf(m), File: perr.File, Line: perr.Line, Message: perr.Message}}
	}
	return []Problem{{Kind: KindMachine, Machine: m.Hostname, Profile: profiles.ProfileOf(m), Message: err.Error()}}
}
