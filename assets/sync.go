package assets

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/flint-boot/flint/atomicfile"
	"github.com/flint-boot/flint/config"
)

// File names upstream publishes.
const (
	kernelFile = "flatcar_production_pxe.vmlinuz"
	initrdFile = "flatcar_production_pxe_image.cpio.gz"
	imageFile  = "flatcar_production_image.bin.bz2"
)

// The products a sync fetches, each a release of its own.
const (
	ProductFlatcar = "flatcar"
	ProductK3s     = "k3s"
	ProductEtcd    = "etcd"
)

// Products lists them in the order a sync takes them.
var Products = []string{ProductFlatcar, ProductK3s, ProductEtcd}

// stateDir holds partial downloads and the lock, inside the assets
// directory so that finished files move into place with a rename.
const stateDir = ".sync"

// Options tune Sync. The zero value works.
type Options struct {
	// HTTPClient fetches http(s) URLs; nil: one that honours HTTPS_PROXY and
	// limits waiting for headers, never a whole transfer.
	HTTPClient *http.Client
	Log        *slog.Logger
	// Progress is told about each download; nil: nothing.
	Progress Progress
	// Attempts per file before giving up (later ones resume); 0: 4.
	Attempts int
	// RetryBackoff is the first wait between attempts, doubled each time; 0: 2s.
	RetryBackoff time.Duration
	// StallTimeout fails a transfer that receives nothing this long; 0: 1m.
	StallTimeout time.Duration
	UserAgent    string
	// Prune deletes the releases other than the configured ones (their
	// PRODUCT/VERSION directories and manifest entries) once every release
	// synced. Only directories the manifest knows are touched.
	Prune bool
	// Now stamps manifest entries; nil: time.Now.
	Now func() time.Time
}

// Result says what a sync did.
type Result struct {
	Releases []ReleaseResult
	Requests int64    // requests sent (file:// opens count too)
	Bytes    int64    // content bytes received
	Pruned   []string // release directories deleted (Options.Prune)
}

// UpToDate reports that nothing had to be fetched or switched.
func (r *Result) UpToDate() bool {
	for _, rr := range r.Releases {
		if len(rr.Fetched) > 0 || rr.Switched || rr.Err != nil {
			return false
		}
	}
	return true
}

// ReleaseResult is one product's release.
type ReleaseResult struct {
	Product string // flatcar, k3s or etcd
	Version string
	Fetched []Entry // downloaded and verified by this sync
	Kept    []Entry // already in the store and unchanged
	// Switched: the stable links now point at this version and did not before.
	Switched bool
	Err      error
}

// ConfigError lists settings Sync needs.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "the assets section cannot be synced:\n  " + strings.Join(e.Problems, "\n  ")
}

// productNames are the logical names each product's release holds.
var productNames = map[string][]string{
	"flatcar": {FlatcarKernel, FlatcarInitrd, FlatcarImage},
	"k3s":     {K3s, K3sAirgapImages},
	"etcd":    {Etcd, Etcdctl},
}

// release is one product version to mirror.
type release struct {
	product string // directory under the store: flatcar, k3s, etcd
	version string
	arch    string // amd64-usr style for Flatcar; amd64 style for K3s and etcd
	files   []*artifact
	sumsURL string // K3s, etcd: checksum file of the release
	tarball string // etcd: the archive the binaries come from
	tarURL  string
}

// artifact is one file of a release.
type artifact struct {
	name       string // logical name
	file       string // name in the release directory
	url        string // where it comes from (etcd: the tarball)
	link       string // stable path, "" for none
	perm       os.FileMode
	sigURL     string // Flatcar: detached signature
	digestsURL string // Flatcar: DIGESTS
}

// Sync mirrors the releases src names into the assets directory dir and
// points the stable paths at them. Each file is verified before it enters
// the store; a failed verification deletes the download and leaves the
// previous version and the links as they were. Files already present,
// unchanged since they were verified, are not fetched again. The releases
// are independent: one failing does not stop the others; the error joins
// every failure and Result says what happened to each.
func Sync(ctx context.Context, dir string, src config.Assets, opt Options) (*Result, error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	kr, err := loadKeyring(src.Flatcar.SigningKey)
	if err != nil {
		return nil, err
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	f := &fetcher{
		client: opt.HTTPClient, userAgent: opt.UserAgent, log: opt.Log, progress: opt.Progress,
		stall: opt.StallTimeout, attempts: opt.Attempts, backoff: opt.RetryBackoff,
	}
	if f.client == nil {
		f.client = defaultClient()
	}
	if f.userAgent == "" {
		f.userAgent = "flint-assets-sync"
	}
	if f.progress == nil {
		f.progress = noProgress{}
	}
	if f.stall <= 0 {
		f.stall = time.Minute
	}
	if f.attempts <= 0 {
		f.attempts = 4
	}
	if f.backoff <= 0 {
		f.backoff = 2 * time.Second
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create assets directory: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, stateDir))
	if err != nil {
		return nil, err
	}
	defer unlock()

	st, err := Open(dir)
	if err != nil {
		return nil, err
	}
	rels := plan(src)
	// Refuse before downloading anything rather than after, naming every
	// file in the way: one run tells the operator all there is to move.
	var blocking []error
	failed := map[string]bool{}
	for _, rel := range rels {
		slots := []string{rel.product + "/current"}
		for _, a := range rel.files {
			if a.link != "" {
				slots = append(slots, a.link)
			}
		}
		for _, slot := range slots {
			if err := checkLinkSlot(dir, slot); err != nil {
				blocking = append(blocking, err)
				failed[rel.product] = true
			}
		}
	}
	if len(blocking) > 0 {
		st.recordSync(dir, opt.Now(), 0, failed, opt.Log)
		return nil, errors.Join(blocking...)
	}
	s := &syncer{dir: dir, store: st, f: f, kr: kr, log: opt.Log, now: opt.Now}
	res := &Result{}
	var errs []error
	for _, rel := range rels {
		rr := s.syncRelease(ctx, rel)
		res.Releases = append(res.Releases, rr)
		if rr.Err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", rel.product, rel.version, rr.Err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	if opt.Prune && len(errs) == 0 {
		res.Pruned = s.prune()
	}
	// Entries whose files were deleted by hand leave the manifest.
	if s.store.dropMissing(dir) {
		if err := writeManifest(dir, s.store.m); err != nil {
			errs = append(errs, fmt.Errorf("write manifest: %w", err))
		}
	}
	res.Requests, res.Bytes = f.requests.Load(), f.bytes.Load()
	for _, rr := range res.Releases {
		if rr.Err != nil {
			failed[rr.Product] = true
		}
	}
	if ctx.Err() != nil && len(res.Releases) < len(rels) {
		failed[rels[len(res.Releases)].product] = true // stopped before it
	}
	s.store.recordSync(dir, opt.Now(), res.Bytes, failed, opt.Log)
	return res, errors.Join(errs...)
}

// recordSync adds a run to the manifest's sync record and writes it; a
// write that fails is logged (the sync's files are in place regardless).
func (s *Store) recordSync(dir string, now time.Time, bytes int64, failed map[string]bool, log *slog.Logger) {
	r := &s.m.Syncs
	r.Runs++
	r.LastRun = now
	r.Bytes += bytes
	r.LastOK = len(failed) == 0
	if r.LastOK {
		r.LastSuccess = now
	}
	for p := range failed {
		if r.Failures == nil {
			r.Failures = map[string]int64{}
		}
		r.Failures[p]++
	}
	if err := writeManifest(dir, s.m); err != nil {
		log.Warn("could not record the sync in the manifest; flint's asset sync metrics miss it", "err", err.Error())
	}
}

// prune deletes the version directories of entries that are not current,
// and partial downloads of other versions.
func (s *syncer) prune() []string {
	keep := map[string]bool{}
	for _, e := range s.store.m.Entries {
		if e.Current {
			keep[path.Dir(e.Path)] = true
		}
	}
	var removed []string
	seen := map[string]bool{}
	for _, e := range s.store.m.Entries {
		d := path.Dir(e.Path)
		if keep[d] || seen[d] {
			continue
		}
		seen[d] = true
		if err := os.RemoveAll(s.abs(d)); err != nil {
			s.log.Warn("could not delete an old release", "dir", s.abs(d), "err", err.Error())
			continue
		}
		os.RemoveAll(filepath.Join(s.dir, stateDir, "parts", filepath.FromSlash(d)))
		s.log.Info("deleted old release", "dir", s.abs(d))
		removed = append(removed, d)
	}
	sort.Strings(removed)
	return removed
}

// checkSource names every setting Sync needs that is missing or unusable.
func checkSource(src config.Assets) error {
	var p []string
	fc := src.Flatcar
	if fc.Version == "" {
		p = append(p, "assets.flatcar.version is not set: pin a release like 4152.2.0 (https://www.flatcar.org/releases lists the channels' current ones)")
	}
	if fc.SigningKey == "" {
		p = append(p, "assets.flatcar.signing_key is not set: save the Flatcar image signing key (https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc), check its fingerprint F88C FEDE FF29 A5B4 D952 3864 E25D 9AED 0593 B34A, and give its path")
	}
	if src.K3s.Version == "" {
		p = append(p, "assets.k3s.version is not set: pin a release like v1.31.4+k3s1 (https://github.com/k3s-io/k3s/releases)")
	}
	if src.Etcd.Version == "" {
		p = append(p, "assets.etcd.version is not set: pin a release like v3.5.17 (https://github.com/etcd-io/etcd/releases)")
	}
	for _, f := range []struct{ field, v string }{{"assets.flatcar.version", fc.Version}, {"assets.k3s.version", src.K3s.Version}, {"assets.etcd.version", src.Etcd.Version}} {
		if f.v != "" && (f.v == "current" || strings.ContainsAny(f.v, "/\\ \t\n\r") || strings.HasPrefix(f.v, ".")) {
			p = append(p, fmt.Sprintf("%s %q is not a release number", f.field, f.v))
		}
	}
	if fc.Arch != "amd64-usr" && fc.Arch != "arm64-usr" {
		p = append(p, fmt.Sprintf("assets.flatcar.arch %q: use amd64-usr or arm64-usr", fc.Arch))
	}
	for _, f := range []struct{ field, u string }{{"assets.flatcar.base_url", fc.BaseURL}, {"assets.k3s.base_url", src.K3s.BaseURL}, {"assets.etcd.base_url", src.Etcd.BaseURL}} {
		if !strings.HasPrefix(f.u, "http://") && !strings.HasPrefix(f.u, "https://") && !strings.HasPrefix(f.u, "file://") {
			p = append(p, fmt.Sprintf("%s %q is not an http(s):// or file:// URL", f.field, f.u))
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// archOf maps Flatcar's board name to the Go-style name K3s and etcd use.
func archOf(flatcarArch string) string {
	if flatcarArch == "arm64-usr" {
		return "arm64"
	}
	return "amd64"
}

func airgapFile(arch string) string { return "k3s-airgap-images-" + arch + ".tar.zst" }

// plan lists the files of each configured release and where they go.
func plan(src config.Assets) []*release {
	fc := src.Flatcar
	arch := archOf(fc.Arch)
	flatcar := &release{product: ProductFlatcar, version: fc.Version, arch: fc.Arch}
	add := func(name, file, link string) {
		u := fileJoin(fc.BaseURL, fc.Version, file)
		flatcar.files = append(flatcar.files, &artifact{name: name, file: file, url: u, link: link, perm: 0o644, sigURL: u + ".sig", digestsURL: u + ".DIGESTS"})
	}
	add(FlatcarKernel, kernelFile, "flatcar/"+kernelFile)
	add(FlatcarInitrd, initrdFile, "flatcar/"+initrdFile)
	if fc.InstallImage {
		add(FlatcarImage, imageFile, "") // flatcar-install asks for VERSION/ by name
	}

	k := src.K3s
	k3s := &release{product: ProductK3s, version: k.Version, arch: arch, sumsURL: fileJoin(k.BaseURL, k.Version, "sha256sum-"+arch+".txt")}
	bin := "k3s"
	if arch != "amd64" {
		bin = "k3s-" + arch
	}
	k3s.files = append(k3s.files, &artifact{name: K3s, file: "k3s", url: fileJoin(k.BaseURL, k.Version, bin), link: "k3s/k3s", perm: 0o755})
	if k.AirgapImages {
		ag := airgapFile(arch)
		k3s.files = append(k3s.files, &artifact{name: K3sAirgapImages, file: ag, url: fileJoin(k.BaseURL, k.Version, ag), link: "k3s/" + ag, perm: 0o644})
	}

	e := src.Etcd
	tarball := "etcd-" + e.Version + "-linux-" + arch + ".tar.gz"
	etcd := &release{product: ProductEtcd, version: e.Version, arch: arch, sumsURL: fileJoin(e.BaseURL, e.Version, "SHA256SUMS"), tarball: tarball, tarURL: fileJoin(e.BaseURL, e.Version, tarball)}
	for _, name := range []string{Etcd, Etcdctl} {
		etcd.files = append(etcd.files, &artifact{name: name, file: name, url: etcd.tarURL + "#" + strings.TrimSuffix(tarball, ".tar.gz") + "/" + name, link: "etcd/" + name, perm: 0o755})
	}
	return []*release{flatcar, k3s, etcd}
}

type syncer struct {
	dir   string
	store *Store
	f     *fetcher
	kr    openpgp.EntityList
	log   *slog.Logger
	now   func() time.Time
}

func (s *syncer) relPath(rel *release, file string) string {
	return path.Join(rel.product, rel.version, file)
}

func (s *syncer) abs(rel string) string { return filepath.Join(s.dir, filepath.FromSlash(rel)) }

func (s *syncer) partPath(rel *release, file string) string {
	return filepath.Join(s.dir, stateDir, "parts", rel.product, rel.version, file+".part")
}

func (s *syncer) syncRelease(ctx context.Context, rel *release) ReleaseResult {
	rr := ReleaseResult{Product: rel.product, Version: rel.version}
	var pending []*artifact
	for _, a := range rel.files {
		if e, ok := s.present(rel, a); ok {
			rr.Kept = append(rr.Kept, e)
		} else {
			pending = append(pending, a)
		}
	}
	if len(pending) > 0 {
		var fetched []Entry
		var err error
		switch rel.product {
		case "flatcar":
			fetched, err = s.fetchFlatcar(ctx, rel, pending)
		case "etcd":
			fetched, err = s.fetchEtcd(ctx, rel, pending)
		default:
			fetched, err = s.fetchSummed(ctx, rel, pending)
		}
		// Record what was verified even if a sibling failed: it is good and
		// the next sync need not fetch it again.
		for _, e := range fetched {
			s.store.put(e)
		}
		rr.Fetched = fetched
		if err != nil {
			if s.store.dirty {
				if werr := writeManifest(s.dir, s.store.m); werr != nil {
					s.log.Warn("could not record verified files in the manifest", "err", werr.Error())
				}
				s.store.dirty = false
			}
			rr.Err = err
			return rr
		}
	}
	switched, err := s.switchLinks(rel)
	if err != nil {
		rr.Err = err
		return rr
	}
	rr.Switched = switched
	if len(rr.Fetched) > 0 || switched || s.store.dirty {
		s.store.m.Updated = s.now().UTC()
		if err := writeManifest(s.dir, s.store.m); err != nil {
			rr.Err = fmt.Errorf("write manifest: %w", err)
		}
		s.store.dirty = false
	}
	return rr
}

// present reports that a verified copy of the artifact is in the store: the
// manifest has it and its size and mtime are unchanged since then. A file
// whose mtime alone changed is hashed and kept if it still matches.
func (s *syncer) present(rel *release, a *artifact) (Entry, bool) {
	e, ok := s.store.LookupVersion(a.name, rel.version)
	if !ok || e.Path != s.relPath(rel, a.file) || e.Arch != rel.arch {
		return Entry{}, false
	}
	p := s.abs(e.Path)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return Entry{}, false
	}
	if e.Signature != "" {
		if _, err := os.Stat(s.abs(e.Signature)); err != nil {
			return Entry{}, false
		}
	}
	if fi.Size() != e.Size {
		s.log.Warn("file changed size since it was verified; fetching it again", "file", p, "size", fi.Size(), "verified_size", e.Size)
		return Entry{}, false
	}
	if !fi.ModTime().Equal(e.ModTime) {
		_, _, sum512, err := hashFile(p)
		if err != nil || sum512 != e.SHA512 {
			s.log.Warn("file changed since it was verified; fetching it again", "file", p)
			return Entry{}, false
		}
		s.log.Info("file was touched but its content is the verified one", "file", p)
		e.ModTime = fi.ModTime()
		s.store.put(e)
	}
	if fi.Mode().Perm() != a.perm {
		if err := os.Chmod(p, a.perm); err != nil {
			return Entry{}, false
		}
	}
	return e, true
}

// fetchFlatcar downloads each file with its signature and DIGESTS, and
// keeps it only if both vouch for it.
func (s *syncer) fetchFlatcar(ctx context.Context, rel *release, pending []*artifact) ([]Entry, error) {
	var out []Entry
	for _, a := range pending {
		sig, err := s.f.getSmall(ctx, a.sigURL)
		if err != nil {
			return out, s.explain(err, "assets.flatcar", "the signature "+a.file+".sig is required")
		}
		digests, err := s.f.getSmall(ctx, a.digestsURL)
		if err != nil {
			return out, s.explain(err, "assets.flatcar", a.file+".DIGESTS is required")
		}
		want512, err := parseDigests(digests, a.file)
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.digestsURL, err)
		}
		part := s.partPath(rel, a.file)
		if err := s.f.download(ctx, a.url, part, s.relPath(rel, a.file)); err != nil {
			return out, s.explain(err, "assets.flatcar")
		}
		v, err := newSigVerifier(a.file, s.kr, sig)
		if err != nil {
			discard(part)
			return out, err
		}
		size, sum256, sum512, herr := hashFile(part, v)
		serr := v.finish()
		if herr != nil {
			return out, herr
		}
		if serr != nil {
			discard(part)
			return out, serr
		}
		if sum512 != want512 {
			discard(part)
			return out, &HashError{File: a.file, Algo: "sha512", Expected: want512, Got: sum512, Source: a.digestsURL}
		}
		dst := s.relPath(rel, a.file)
		if err := os.MkdirAll(filepath.Dir(s.abs(dst)), 0o755); err != nil {
			return out, err
		}
		// Signature and DIGESTS first: a crash then leaves a .sig without its
		// file, never a file flatcar-install cannot verify.
		if err := atomicfile.Write(s.abs(dst)+".sig", sig, 0o644); err != nil {
			return out, err
		}
		if err := atomicfile.Write(s.abs(dst)+".DIGESTS", digests, 0o644); err != nil {
			return out, err
		}
		e, err := s.install(rel, a, part, dst, size, sum256, sum512)
		if err != nil {
			return out, err
		}
		e.Signature = dst + ".sig"
		e.VerifiedBy = fmt.Sprintf("OpenPGP signature by %s (%s.sig) and sha512 from %s.DIGESTS", v.signer, a.file, a.file)
		s.logInstalled(e)
		out = append(out, e)
	}
	return out, nil
}

// fetchSummed downloads K3s files and checks them against the release's
// sha256sum file.
func (s *syncer) fetchSummed(ctx context.Context, rel *release, pending []*artifact) ([]Entry, error) {
	sums, err := s.f.getSmall(ctx, rel.sumsURL)
	if err != nil {
		return nil, s.explain(err, "assets."+rel.product)
	}
	var out []Entry
	for _, a := range pending {
		remote := path.Base(a.url)
		remote = strings.ReplaceAll(remote, "%2B", "+")
		want, err := parseSHA256Sums(sums, remote)
		if err != nil {
			return out, fmt.Errorf("%s: %w", rel.sumsURL, err)
		}
		part := s.partPath(rel, a.file)
		dst := s.relPath(rel, a.file)
		if err := s.f.download(ctx, a.url, part, dst); err != nil {
			return out, s.explain(err, "assets."+rel.product)
		}
		size, sum256, sum512, err := hashFile(part)
		if err != nil {
			return out, err
		}
		if sum256 != want {
			discard(part)
			return out, &HashError{File: remote, Algo: "sha256", Expected: want, Got: sum256, Source: rel.sumsURL}
		}
		e, err := s.install(rel, a, part, dst, size, sum256, sum512)
		if err != nil {
			return out, err
		}
		e.VerifiedBy = "sha256 from " + path.Base(rel.sumsURL)
		s.logInstalled(e)
		out = append(out, e)
	}
	return out, nil
}

// fetchEtcd downloads the release tarball, checks it against SHA256SUMS and
// extracts the pending binaries. The tarball itself is not kept.
func (s *syncer) fetchEtcd(ctx context.Context, rel *release, pending []*artifact) ([]Entry, error) {
	sums, err := s.f.getSmall(ctx, rel.sumsURL)
	if err != nil {
		return nil, s.explain(err, "assets.etcd")
	}
	want, err := parseSHA256Sums(sums, rel.tarball)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel.sumsURL, err)
	}
	part := s.partPath(rel, rel.tarball)
	if err := s.f.download(ctx, rel.tarURL, part, s.relPath(rel, rel.tarball)); err != nil {
		return nil, s.explain(err, "assets.etcd")
	}
	_, sum256, _, err := hashFile(part)
	if err != nil {
		return nil, err
	}
	if sum256 != want {
		discard(part)
		return nil, &HashError{File: rel.tarball, Algo: "sha256", Expected: want, Got: sum256, Source: rel.sumsURL}
	}
	relDir := s.abs(path.Join(rel.product, rel.version))
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		return nil, err
	}
	extracted, err := extractMembers(part, strings.TrimSuffix(rel.tarball, ".tar.gz"), relDir, pending)
	defer func() {
		for _, x := range extracted {
			os.Remove(x.tmp) // no-op once installed
		}
	}()
	if err != nil {
		discard(part) // verified but unusable: fetching it again will not help
		return nil, fmt.Errorf("%s: %w", rel.tarball, err)
	}
	var out []Entry
	for _, x := range extracted {
		e, err := s.install(rel, x.a, x.tmp, s.relPath(rel, x.a.file), x.size, x.sum256, x.sum512)
		if err != nil {
			return out, err
		}
		e.VerifiedBy = "sha256 of " + rel.tarball + " from SHA256SUMS"
		s.logInstalled(e)
		out = append(out, e)
	}
	discard(part)
	return out, nil
}

type member struct {
	a              *artifact
	tmp            string
	size           int64
	sum256, sum512 string
}

// extractMembers writes dir/<name> of each pending artifact from the
// tarball into temporary files in dst, hashing them on the way.
func extractMembers(tarball, topDir, dst string, pending []*artifact) ([]member, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("not a gzip file: %w", err)
	}
	want := map[string]*artifact{}
	for _, a := range pending {
		want[topDir+"/"+a.file] = a
	}
	var out []member
	tr := tar.NewReader(gz)
	for len(want) > 0 {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, fmt.Errorf("read tar: %w", err)
		}
		a, ok := want[strings.TrimPrefix(h.Name, "./")]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		delete(want, strings.TrimPrefix(h.Name, "./"))
		tmp, err := os.CreateTemp(dst, "."+a.file+".tmp*")
		if err != nil {
			return out, err
		}
		hs := newHashes()
		n, err := io.Copy(io.MultiWriter(tmp, hs), tr)
		cerr := tmp.Close()
		out = append(out, member{a: a, tmp: tmp.Name(), size: n})
		if err != nil {
			return out, err
		}
		if cerr != nil {
			return out, cerr
		}
		out[len(out)-1].sum256, out[len(out)-1].sum512 = hs.sums()
	}
	if len(want) > 0 {
		var missing []string
		for name := range want {
			missing = append(missing, name)
		}
		sort.Strings(missing)
		return out, fmt.Errorf("the archive has no %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// install moves a verified file into its versioned place and returns its
// manifest entry (VerifiedBy left to the caller).
func (s *syncer) install(rel *release, a *artifact, tmp, dst string, size int64, sum256, sum512 string) (Entry, error) {
	if err := atomicfile.Install(tmp, s.abs(dst), a.perm); err != nil {
		return Entry{}, fmt.Errorf("install %s: %w", dst, err)
	}
	os.Remove(tmp + ".json") // the partial download's metadata
	fi, err := os.Stat(s.abs(dst))
	if err != nil {
		return Entry{}, err
	}
	return Entry{
		Name: a.name, Version: rel.version, Path: dst, Link: a.link, Size: size,
		SHA256: sum256, SHA512: sum512, Source: a.url, FetchedAt: s.now().UTC(), ModTime: fi.ModTime(),
		Arch: rel.arch,
	}, nil
}

func (s *syncer) logInstalled(e Entry) {
	s.log.Info("verified and stored", "file", e.Path, "size", e.Size, "sha256", e.SHA256, "verified_by", e.VerifiedBy)
}

// switchLinks points PRODUCT/current at the release and creates the stable
// links through it. Flipping "current" is one rename, so machines see
// every file of the old release or every file of the new one.
func (s *syncer) switchLinks(rel *release) (bool, error) {
	cur := s.abs(rel.product + "/current")
	old, _ := os.Readlink(cur)
	for _, a := range rel.files {
		if a.link == "" {
			continue
		}
		target, err := filepath.Rel(filepath.Dir(s.abs(a.link)), filepath.Join(cur, a.file))
		if err != nil {
			return false, err
		}
		// The links stay valid through the switch: they name current/FILE.
		if err := replaceSymlink(target, s.abs(a.link)); err != nil {
			return false, fmt.Errorf("link %s: %w", a.link, err)
		}
	}
	if err := replaceSymlink(rel.version, cur); err != nil {
		return false, fmt.Errorf("switch %s/current to %s: %w", rel.product, rel.version, err)
	}
	// Every logical name of the product follows the switch, also one the
	// config stopped mirroring (an old airgap tarball is no longer current).
	names := map[string]bool{}
	for _, n := range productNames[rel.product] {
		names[n] = true
	}
	s.store.setCurrent(names, rel.version)
	if old != rel.version {
		s.log.Info("switched to release", "product", rel.product, "version", rel.version, "previous", old)
	}
	return old != rel.version, nil
}

// explain adds what to check to errors that retrying will not fix.
func (s *syncer) explain(err error, section string, why ...string) error {
	var se *StatusError
	if errors.As(err, &se) && se.NotFound() {
		hint := ""
		if len(why) > 0 {
			hint = " (" + why[0] + ": a mirror must carry it beside the file, as upstream does)"
		}
		return fmt.Errorf("%w: the mirror has no such file%s; check %s.version and %s.base_url", err, hint, section, section)
	}
	return err
}

// discard deletes a download that failed verification, and its metadata.
func discard(part string) {
	os.Remove(part)
	os.Remove(part + ".json")
}
