// Package ignition renders a machine's profile into its Ignition config:
// Go template (profiles package) -> Butane YAML -> Ignition JSON, checked
// by Butane in strict mode and by Ignition's own parser, so flint never
// serves a config a node would reject. Legacy clients get spec 2.3.0,
// translated from the same config and checked with the legacy parser.
package ignition

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	butane "github.com/coreos/butane/config"
	butanecommon "github.com/coreos/butane/config/common"
	v3_3 "github.com/coreos/ignition/v2/config/v3_3"
	v3_4 "github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/vcontext/report"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/profiles"
)

// ErrUnknownMachine is returned for a MAC the config does not list.
var ErrUnknownMachine = errors.New("no machine with this MAC in the config")

// Renderer renders and caches machines' Ignition configs. It is safe for
// concurrent use. Profiles and assets are checked on every render (a stat
// per asset, the overlay directory's files), so edits take effect without a
// restart and the cache never serves a config built from old files; a cached
// config costs a map lookup and the tokens written in. The cache is bounded
// (RenderOptions.MaxCached) and renders on demand.
//
// What a render depends on besides the config comes in as arguments (the
// Request): the lifecycle decides the profile, the etcd state and the
// per-delivery tokens. The cache holds each config with placeholders where
// the tokens go; every delivery gets its own tokens written in.
type Renderer struct {
	cfg       *config.Config
	secrets   Secrets
	assetsDir string
	log       *slog.Logger
	hasher    *hasher

	// translations counts pipeline runs (cache misses), for tests.
	translations atomic.Int64

	profiles *profiles.Loader

	mu     sync.Mutex
	parsed *parsedSet
	cache  *configCache
	now    func() time.Time
}

// RenderOptions tune a Renderer; zero values take the defaults.
type RenderOptions struct {
	Log *slog.Logger
	// MaxCached bounds the rendered configs kept (config
	// limits.rendered_configs), MaxCachedBytes their size
	// (limits.rendered_config_mib).
	MaxCached      int
	MaxCachedBytes int
	// MaxAge is how long a rendered config is served before it is rendered
	// again (its certificates renewed if due). Default an hour.
	MaxAge time.Duration
}

// Default cache bounds.
const (
	DefaultMaxCached      = 4096
	DefaultMaxCachedBytes = 64 << 20
	DefaultMaxAge         = time.Hour
)

// parsedSet is a profile set with its templates parsed, per profile, lazily.
type parsedSet struct {
	set       *profiles.Set
	templates map[string]*instrumented
	errs      map[string]error
}

// NewRenderer makes a renderer for cfg. It checks that the profiles load;
// problems in them surface per render and from ValidateAll.
func NewRenderer(cfg *config.Config, secrets Secrets, assetsDir string, o RenderOptions) (*Renderer, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxCached <= 0 {
		o.MaxCached = DefaultMaxCached
	}
	if o.MaxCachedBytes <= 0 {
		o.MaxCachedBytes = DefaultMaxCachedBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	r := &Renderer{
		cfg:       cfg,
		secrets:   secrets,
		assetsDir: assetsDir,
		log:       o.Log,
		hasher:    newHasher(),
		cache:     newConfigCache(o.MaxCached, o.MaxCachedBytes, o.MaxAge),
		profiles:  profiles.NewLoader(cfg.Cluster.ProfilesDir),
		now:       time.Now,
	}
	if _, err := r.profileSet(); err != nil {
		return nil, err
	}
	return r, nil
}

// CheckProfiles loads the current profiles without rendering anything: a
// stat per overlay file while they are unchanged, a reload when they changed.
// /readyz asks it.
func (r *Renderer) CheckProfiles() error {
	_, err := r.profileSet()
	return err
}

// Invalidate drops every cached config.
func (r *Renderer) Invalidate() { r.cache.dropAll() }

// InvalidateMachine drops the cached configs of one machine, e.g. after its
// credentials changed.
func (r *Renderer) InvalidateMachine(mac config.MAC) { r.cache.dropMachine(mac) }

// Cached is how many rendered configs are kept now, and their bytes.
func (r *Renderer) Cached() (configs, bytes int) { return r.cache.len() }

// InstallerProfile is what a disk-mode machine's PXE-booted live system runs.
const InstallerProfile = "installer"

// Request is one render: a machine and what its lifecycle decided.
type Request struct {
	Machine *config.Machine
	Spec    Spec
	// Profile is the profile to render; "" is the machine's own. A disk
	// install's live system runs InstallerProfile, which fetches the
	// machine's own config for the installed system.
	Profile string
	// ClusterState is ETCD_INITIAL_CLUSTER_STATE for a server: "" or
	// ClusterStateNew, or ClusterStateExisting for a member rebuilt into a
	// running cluster.
	ClusterState string
	// Boot are the tokens of this delivery; empty ones leave their
	// placeholder (flint render shows them so).
	Boot BootSecrets
}

// BootSecrets are the per-delivery tokens a config carries: the node's report
// token and, in an installer's config, the token of the installed-system
// config. The renderer writes them over placeholders in the cached config.
type BootSecrets struct {
	ReportToken    string
	InstalledToken string
}

// Placeholders stand where the per-delivery tokens go in cached configs: as
// long as a token (64 characters) and made only of characters that every
// encoding on the way (YAML, Butane's data URLs, JSON) keeps as they are.
const (
	ReportTokenPlaceholder    = profiles.PlaceholderPrefix + "REPORT_TOKEN_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	InstalledTokenPlaceholder = profiles.PlaceholderPrefix + "INSTALLED_TOKEN_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
)

// Render returns the Ignition config of req.Machine in req.Spec. Errors:
// *AssetError (a missing asset), *ProfileError (the profile or what it
// produced is invalid), or an error from the PKI. The result is never empty
// and always passed Ignition's parser.
func (r *Renderer) Render(req Request) ([]byte, error) {
	if req.Machine == nil {
		return nil, ErrUnknownMachine
	}
	assets, err := r.hasher.assets(r.cfg, r.assetsDir, req.Machine)
	if err != nil {
		return nil, err
	}
	out, err := r.render(req.Machine, req.Spec, assets, req.Profile, req.ClusterState)
	if err != nil {
		return nil, err
	}
	return withTokens(out, req.Boot)
}

// RenderMAC renders the machine with this MAC with its own profile as a new
// cluster member, tokens left as placeholders (flint render, tests).
func (r *Renderer) RenderMAC(mac config.MAC, spec Spec) ([]byte, error) {
	m, ok := r.cfg.MachineByMAC(mac)
	if !ok {
		return nil, fmt.Errorf("%s: %w", mac, ErrUnknownMachine)
	}
	return r.Render(Request{Machine: m, Spec: spec})
}

// withTokens writes the delivery's tokens over the placeholders of a cached
// config (a copy: the cache keeps the placeholders).
func withTokens(cfg []byte, b BootSecrets) ([]byte, error) {
	out := cfg
	for _, t := range []struct{ placeholder, token string }{
		{ReportTokenPlaceholder, b.ReportToken},
		{InstalledTokenPlaceholder, b.InstalledToken},
	} {
		if t.token == "" {
			continue
		}
		if len(t.token) != len(t.placeholder) {
			return nil, fmt.Errorf("a per-boot token must be %d characters, got %d", len(t.placeholder), len(t.token))
		}
		out = bytes.ReplaceAll(out, []byte(t.placeholder), []byte(t.token))
	}
	return out, nil
}

func (r *Renderer) render(m *config.Machine, spec Spec, assets map[string]Asset, profile, state string) ([]byte, error) {
	start := time.Now()
	ps, err := r.profileSet()
	if err != nil {
		return nil, err
	}
	if profile == "" {
		profile = profiles.ProfileOf(m)
	}
	if state == "" || m.Role != config.RoleServer {
		state = ClusterStateNew
	}
	if state != ClusterStateNew && state != ClusterStateExisting {
		return nil, fmt.Errorf("%s: cluster state %q is neither %q nor %q", m.Hostname, state, ClusterStateNew, ClusterStateExisting)
	}
	key := cacheKey{mac: m.HW, spec: spec, profile: profile, state: state}
	inputs := inputsOf(ps.set.Digest(), assets)
	if out, ok := r.cache.get(key, inputs, r.now()); ok {
		return out, nil
	}
	data, err := buildData(r.cfg, m, dataInputs{secrets: r.secrets, assets: assets, clusterState: state, profile: profile})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Hostname, err)
	}
	r.translations.Add(1)
	out, err := r.translate(ps, m, profile, spec, data)
	if err != nil {
		return nil, err
	}
	r.cache.put(key, cached{inputs: inputs, at: r.now(), config: out})
	r.log.Debug("rendered ignition config", "machine", m.Hostname, "profile", profile, "spec", spec.String(), "bytes", len(out), "took", time.Since(start))
	return out, nil
}

// profileSet loads the current profiles and reuses the parsed templates
// while the files are unchanged.
func (r *Renderer) profileSet() (*parsedSet, error) {
	set, err := r.profiles.Load()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.parsed == nil || r.parsed.set.Digest() != set.Digest() {
		r.parsed = &parsedSet{set: set, templates: map[string]*instrumented{}, errs: map[string]error{}}
	}
	return r.parsed, nil
}

// template returns the instrumented template of profile, parsing it once per set.
func (r *Renderer) template(ps *parsedSet, profile string) (*instrumented, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := ps.templates[profile]; ok {
		return t, nil
	}
	if err, ok := ps.errs[profile]; ok {
		return nil, err
	}
	t, err := ps.set.Parse(profile)
	if err != nil {
		ps.errs[profile] = err
		return nil, err
	}
	in := instrument(t)
	ps.templates[profile] = in
	return in, nil
}

// translate runs the pipeline: template -> Butane -> Ignition JSON ->
// Ignition's parser (-> spec 2.3 and the legacy parser).
func (r *Renderer) translate(ps *parsedSet, m *config.Machine, profile string, spec Spec, data *Data) ([]byte, error) {
	base := Problem{Kind: KindProfile, Machine: m.Hostname, Profile: profile}
	fail := func(butaneYAML []byte, ps ...Problem) error {
		return &ProfileError{Problems: ps, Butane: butaneYAML}
	}

	t, err := r.template(ps, profile)
	if err != nil {
		return nil, fail(nil, templateProblem(ps.set, base, err))
	}
	rendered, lines, err := t.execute(profile+profiles.Ext, data)
	if err != nil {
		return nil, fail(nil, templateProblem(ps.set, base, err))
	}
	loc := &locator{set: ps.set, lines: lines, rendered: rendered, base: base}

	ign, rpt, err := butane.TranslateBytes(rendered, butanecommon.TranslateBytesOptions{
		// Keep contents readable (and translatable to spec 2.x): no gzip.
		TranslateOptions: butanecommon.TranslateOptions{NoResourceAutoCompression: true},
	})
	// Strict, like `butane --strict`: warnings fail too.
	if len(rpt.Entries) > 0 {
		return nil, fail(rendered, loc.fromReport(rpt)...)
	}
	if err != nil {
		return nil, fail(rendered, loc.fromError(err)...)
	}

	if err := checkPlaceholders(rendered, ign); err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	want, err := SpecVersion(data.Cluster.ButaneVersion, SpecV3)
	if err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	if err := validateV3(ign, want); err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	if spec != SpecLegacy {
		return ign, nil
	}

	// Legacy: up-translate to 3.4 types (a no-op for 3.4), then down to 2.3.
	cfg34, _, err := v3_4.ParseCompatibleVersion(ign)
	if err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	legacy, err := toLegacy(cfg34)
	if err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	out, err := marshalLegacy(legacy)
	if err != nil {
		return nil, err
	}
	if err := validateLegacy(out); err != nil {
		return nil, fail(rendered, loc.at(0, err.Error()))
	}
	return out, nil
}

// checkPlaceholders makes sure every token placeholder the template wrote
// reaches the config as it is, so the delivery can write the token there: a
// token passed through dataurl (base64) would be lost.
func checkPlaceholders(rendered, ign []byte) error {
	for _, p := range []struct{ placeholder, field string }{
		{ReportTokenPlaceholder, ".Boot.ReportToken"},
		{InstalledTokenPlaceholder, ".Boot.InstalledToken"},
	} {
		in, out := bytes.Count(rendered, []byte(p.placeholder)), bytes.Count(ign, []byte(p.placeholder))
		if in != out {
			return fmt.Errorf("%s appears %d times in the Butane config but %d times in the Ignition config: write it as plain text (inline:), not through dataurl", p.field, in, out)
		}
	}
	return nil
}

// validateV3 parses ign with the parser of exactly the expected spec version,
// as Ignition itself would, and fails on any report entry.
func validateV3(ign []byte, version string) error {
	if len(bytes.TrimSpace(ign)) == 0 {
		return errors.New("Butane produced an empty Ignition config")
	}
	var rpt report.Report
	var err error
	switch version {
	case "3.3.0":
		_, rpt, err = v3_3.Parse(ign)
	case "3.4.0":
		_, rpt, err = v3_4.Parse(ign)
	default:
		return fmt.Errorf("no parser for Ignition spec %s", version)
	}
	if err != nil || len(rpt.Entries) > 0 {
		return fmt.Errorf("Ignition spec %s parser rejects the config: %v %s", version, err, strings.TrimSpace(rpt.String()))
	}
	return nil
}
