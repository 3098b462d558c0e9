// Package assets is flint's asset mirror: the Flatcar PXE kernel and initrd
// (and disk image), K3s and etcd that machines download from /assets/.
//
// Sync fetches the releases a config names from upstream or a local mirror,
// verifies each file (OpenPGP signature and DIGESTS for Flatcar, published
// SHA-256 sums for K3s and etcd) and installs it under a versioned path in
// the assets directory:
//
//	flatcar/4152.2.0/flatcar_production_pxe.vmlinuz (+ .sig)
//	flatcar/current -> 4152.2.0
//	flatcar/flatcar_production_pxe.vmlinuz -> current/flatcar_production_pxe.vmlinuz
//	k3s/v1.31.4+k3s1/k3s, k3s/current, k3s/k3s -> current/k3s
//	etcd/v3.5.17/{etcd,etcdctl}, etcd/current, etcd/etcd, etcd/etcdctl
//	manifest.json
//
// The stable names (the config's defaults) point through one "current" link
// per product, so switching versions is a single atomic rename and a machine
// never gets a kernel of one release and an initrd of another.
//
// The rest of flint reads the store through Open, Lookup and Missing.
package assets

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flint-boot/flint/atomicfile"
	"github.com/flint-boot/flint/config"
)

// Logical names of the assets flint mirrors.
const (
	FlatcarKernel   = "flatcar-kernel"    // PXE kernel
	FlatcarInitrd   = "flatcar-initrd"    // PXE initrd (the whole live system)
	FlatcarImage    = "flatcar-image"     // disk image flatcar-install writes (disk installs only)
	K3s             = "k3s"               // K3s binary
	K3sAirgapImages = "k3s-airgap-images" // K3s images tarball (assets.k3s.airgap_images)
	Etcd            = "etcd"              // etcd server binary
	Etcdctl         = "etcdctl"           // etcd client binary
)

// ManifestFile is the manifest's name inside the assets directory.
const ManifestFile = "manifest.json"

// manifestFormat is bumped when the manifest changes incompatibly.
const manifestFormat = 1

// Entry is one verified file in the store.
type Entry struct {
	// Name is the logical name (FlatcarKernel, K3s, ...).
	Name    string `json:"name"`
	Version string `json:"version"`
	// Arch the file is built for: amd64-usr/arm64-usr (Flatcar), amd64/arm64.
	Arch string `json:"arch"`
	// Path is the file's versioned path, relative to the assets directory,
	// slash-separated (flatcar/4152.2.0/flatcar_production_pxe.vmlinuz).
	Path string `json:"path"`
	// Link is the stable path that resolves to this version's file while
	// Current is true (flatcar/flatcar_production_pxe.vmlinuz). Empty for the
	// disk image, which flatcar-install fetches by version.
	Link string `json:"link,omitempty"`
	// Current marks the version the stable links point at.
	Current bool  `json:"current"`
	Size    int64 `json:"size"`
	// SHA256 and SHA512 of the file, hex.
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
	// Source is the URL it was fetched from (for etcd binaries: the tarball
	// URL and, after '#', the member extracted).
	Source string `json:"source"`
	// Signature is the detached OpenPGP signature kept beside the file
	// (Flatcar only; flatcar-install fetches it), relative like Path.
	Signature string `json:"signature,omitempty"`
	// VerifiedBy says what vouched for the bytes.
	VerifiedBy string    `json:"verified_by"`
	FetchedAt  time.Time `json:"fetched_at"`
	// ModTime of the file when it was installed: a second sync trusts a
	// file whose size and mtime still match without hashing it again.
	ModTime time.Time `json:"mtime"`
}

// Manifest is manifest.json: every verified file the store holds.
type Manifest struct {
	Format  int       `json:"format"`
	Updated time.Time `json:"updated"`
	Entries []Entry   `json:"entries"`
	// Syncs is what every `flint assets sync` of this store did; flint
	// serve exposes it as metrics (sync is a command of its own).
	Syncs SyncStats `json:"syncs"`
}

// SyncStats counts the syncs of a store since it was created.
type SyncStats struct {
	Runs        int64     `json:"runs"`
	LastRun     time.Time `json:"last_run,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastOK: the last run synced every release.
	LastOK bool `json:"last_ok"`
	// Bytes is the content downloaded by all runs.
	Bytes int64 `json:"bytes"`
	// Failures counts, by product (flatcar, k3s, etcd), the runs that could
	// not sync its release (a download, a verification, a file in the way).
	Failures map[string]int64 `json:"failures,omitempty"`
}

// Syncs is the store's sync record as Open read it.
func (s *Store) Syncs() SyncStats { return s.m.Syncs }

// Store is an assets directory and its manifest as Open read it: a snapshot,
// safe for concurrent readers. Open again to see what a later sync did.
type Store struct {
	dir   string
	m     Manifest
	dirty bool // m changed since it was read or written
}

// DirFor is the assets directory flint serves: boot.assets_dir, or
// DATA/assets when it is empty.
func DirFor(cfg *config.Config, dataDir string) string {
	if cfg.Boot.AssetsDir != "" {
		return cfg.Boot.AssetsDir
	}
	return filepath.Join(dataDir, "assets")
}

// Open reads the store in dir. A directory without a manifest (never
// synced, or assets placed by hand) is an empty store, not an error; a
// manifest that cannot be parsed is.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		s.m.Format = manifestFormat
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read asset manifest: %w", err)
	}
	if err := json.Unmarshal(b, &s.m); err != nil {
		return nil, fmt.Errorf("asset manifest %s is damaged (%v): delete it and run flint assets sync to rebuild it", filepath.Join(dir, ManifestFile), err)
	}
	if s.m.Format > manifestFormat {
		return nil, fmt.Errorf("asset manifest %s has format %d, newer than this flint understands (%d): upgrade flint", filepath.Join(dir, ManifestFile), s.m.Format, manifestFormat)
	}
	return s, nil
}

// Dir is the assets directory.
func (s *Store) Dir() string { return s.dir }

// Entries returns every entry, current versions and older ones, in boot
// order (kernel, initrd, image, k3s, etcd...) and then by version.
func (s *Store) Entries() []Entry {
	out := append([]Entry(nil), s.m.Entries...)
	sortEntries(out)
	return out
}

// Lookup returns the current entry of a logical name (the version the
// stable links point at); ok is false when the store has none.
func (s *Store) Lookup(name string) (Entry, bool) {
	for _, e := range s.m.Entries {
		if e.Name == name && e.Current {
			return e, true
		}
	}
	return Entry{}, false
}

// LookupVersion returns the entry of a logical name at a given version,
// current or not.
func (s *Store) LookupVersion(name, version string) (Entry, bool) {
	for _, e := range s.m.Entries {
		if e.Name == name && e.Version == version {
			return e, true
		}
	}
	return Entry{}, false
}

// File is the absolute path of an entry's file.
func (s *Store) File(e Entry) string { return filepath.Join(s.dir, filepath.FromSlash(e.Path)) }

// Gap is one asset a config needs that the store cannot serve as configured.
type Gap struct {
	Name   string // logical name
	Path   string // path under the assets directory the machines will ask for
	Reason string // what is wrong and what to do
}

func (g Gap) String() string { return g.Name + ": " + g.Reason }

// Missing lists the logical names of the assets a config's machines need
// that the store lacks, in a fixed order: the Flatcar disk image only when a
// machine installs to disk (config.DiskInstalls; live PXE machines never
// fetch it). Use it in `flint validate` to warn before machines fail to boot.
func (s *Store) Missing(cfg *config.Config) []string {
	var names []string
	for _, g := range s.Check(cfg) {
		if len(names) == 0 || names[len(names)-1] != g.Name {
			names = append(names, g.Name)
		}
	}
	return names
}

// Check is Missing with a reason per path: a file that does not exist, or a
// synced file whose version is not the configured one.
func (s *Store) Check(cfg *config.Config) []Gap {
	type need struct{ name, path string }
	var needs []need
	add := func(name, p string) {
		if p == "" || strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			return // served by someone else
		}
		for _, n := range needs {
			if n == (need{name, p}) {
				return
			}
		}
		needs = append(needs, need{name, p})
	}
	add(FlatcarKernel, cfg.Boot.Kernel)
	for _, m := range cfg.Machines {
		add(FlatcarKernel, m.Kernel)
	}
	add(FlatcarInitrd, cfg.Boot.Initrd)
	for _, m := range cfg.Machines {
		add(FlatcarInitrd, m.Initrd)
	}
	fc := cfg.Assets.Flatcar
	if cfg.DiskInstalls() {
		if fc.Version == "" {
			needs = append(needs, need{FlatcarImage, ""})
		} else {
			add(FlatcarImage, path.Join("flatcar", fc.Version, imageFile))
		}
	}
	// K3s, etcd and etcdctl as the machines download them (agents never
	// fetch etcd: config.NodeAssetsOf).
	for _, a := range cfg.NodeAssets() {
		add(a.Name, a.Path)
	}
	if cfg.Assets.K3s.AirgapImages {
		add(K3sAirgapImages, path.Join("k3s", airgapFile(archOf(fc.Arch))))
	}

	want := map[string]string{
		FlatcarKernel: fc.Version, FlatcarInitrd: fc.Version, FlatcarImage: fc.Version,
		K3s: cfg.Assets.K3s.Version, K3sAirgapImages: cfg.Assets.K3s.Version,
		Etcd: cfg.Assets.Etcd.Version, Etcdctl: cfg.Assets.Etcd.Version,
	}
	var gaps []Gap
	for _, n := range needs {
		if n.path == "" {
			gaps = append(gaps, Gap{n.name, "", "disk installs need the Flatcar disk image: set assets.flatcar.version, then run flint assets sync"})
			continue
		}
		fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(n.path)))
		switch {
		case err != nil:
			gaps = append(gaps, Gap{n.name, n.path, fmt.Sprintf("%s is not in the assets directory %s: run flint assets sync (or place the file there)", n.path, s.dir)})
			continue
		case !fi.Mode().IsRegular():
			gaps = append(gaps, Gap{n.name, n.path, fmt.Sprintf("%s in %s is not a regular file", n.path, s.dir)})
			continue
		}
		if n.name == FlatcarImage {
			if _, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(n.path)+".sig")); err != nil {
				gaps = append(gaps, Gap{n.name, n.path + ".sig", fmt.Sprintf("%s.sig is missing: flatcar-install refuses an unsigned image; run flint assets sync", n.path)})
			}
			continue
		}
		// A synced stable link must hold the configured version.
		if e, ok := s.Lookup(n.name); ok && e.Link == n.path && want[n.name] != "" && e.Version != want[n.name] {
			gaps = append(gaps, Gap{n.name, n.path, fmt.Sprintf("%s is version %s but the config asks for %s: run flint assets sync", n.path, e.Version, want[n.name])})
		}
	}
	sort.SliceStable(gaps, func(i, j int) bool { return nameOrder[gaps[i].Name] < nameOrder[gaps[j].Name] })
	return gaps
}

// nameOrder lists logical names as a boot uses them.
var nameOrder = map[string]int{FlatcarKernel: 1, FlatcarInitrd: 2, FlatcarImage: 3, K3s: 4, K3sAirgapImages: 5, Etcd: 6, Etcdctl: 7}

func sortEntries(es []Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Name != es[j].Name {
			oi, oj := nameOrder[es[i].Name], nameOrder[es[j].Name]
			if oi != oj {
				return oi < oj
			}
			return es[i].Name < es[j].Name
		}
		return es[i].Version < es[j].Version
	})
}

// dropMissing forgets entries whose file is gone; it reports a change.
func (s *Store) dropMissing(dir string) bool {
	kept := s.m.Entries[:0]
	for _, e := range s.m.Entries {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(e.Path))); err == nil {
			kept = append(kept, e)
		}
	}
	changed := len(kept) != len(s.m.Entries)
	s.m.Entries = kept
	return changed
}

// writeManifest replaces manifest.json atomically.
func writeManifest(dir string, m Manifest) error {
	m.Format = manifestFormat
	sortEntries(m.Entries)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// put adds or replaces the entry for (name, version).
func (s *Store) put(e Entry) {
	for i := range s.m.Entries {
		if s.m.Entries[i].Name == e.Name && s.m.Entries[i].Version == e.Version {
			e.Current = s.m.Entries[i].Current
			s.m.Entries[i] = e
			s.dirty = true
			return
		}
	}
	s.m.Entries = append(s.m.Entries, e)
	s.dirty = true
}

// setCurrent marks version current for the named assets, and no other.
func (s *Store) setCurrent(names map[string]bool, version string) {
	for i := range s.m.Entries {
		e := &s.m.Entries[i]
		if names[e.Name] && e.Current != (e.Version == version) {
			e.Current = e.Version == version
			s.dirty = true
		}
	}
}
