package ignition

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
)

// AssetError says an asset a profile needs is not in the assets directory.
type AssetError struct {
	Name  string // logical name: "k3s", "etcd", "etcdctl"
	Field string // config field naming it: "cluster.assets.k3s"
	Path  string // the file flint looked at
	Err   error
}

func (e *AssetError) Error() string {
	return fmt.Sprintf("asset %s (%s): %v: place the file there or run `flint assets sync`", e.Name, e.Field, e.Err)
}

func (e *AssetError) Unwrap() error { return e.Err }

// hasher computes SHA-512s of asset files and remembers them per path, size
// and modification time: a K3s binary is ~70 MB and should be hashed once,
// not per request, yet a replaced file must be noticed.
type hasher struct {
	mu   sync.Mutex // also serialises hashing, so concurrent renders hash a file once
	sums map[string]fileSum
}

type fileSum struct {
	size  int64
	mtime time.Time
	sum   string
}

func newHasher() *hasher { return &hasher{sums: map[string]fileSum{}} }

// sha512 returns the hex SHA-512 and size of the file at path.
func (h *hasher) sha512(path string) (string, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	if s, ok := h.sums[path]; ok && s.size == st.Size() && s.mtime.Equal(st.ModTime()) {
		return s.sum, s.size, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	d := sha512.New()
	n, err := io.Copy(d, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	sum := hex.EncodeToString(d.Sum(nil))
	// Stat again after reading: a file being written while we hashed gets
	// another mtime, and the next render hashes it anew.
	if st2, err := f.Stat(); err == nil && st2.Size() == n && st2.ModTime().Equal(st.ModTime()) {
		h.sums[path] = fileSum{size: n, mtime: st.ModTime(), sum: sum}
	}
	return sum, n, nil
}

// asset hashes one asset under dir. A missing file is an *AssetError naming
// the logical name and path.
func (h *hasher) asset(cfg *config.Config, dir string, a config.NodeAsset) (Asset, error) {
	path := filepath.Join(dir, filepath.FromSlash(a.Path))
	sum, size, err := h.sha512(path)
	if err != nil {
		return Asset{}, &AssetError{Name: a.Name, Field: a.Field, Path: path, Err: err}
	}
	return Asset{Path: a.Path, URL: cfg.HTTPBaseURL() + "/assets/" + escapePath(a.Path), SHA512: sum, Size: size}, nil
}

// assets hashes the assets machine m downloads (config.NodeAssetsOf): an
// agent renders without the etcd binaries.
func (h *hasher) assets(cfg *config.Config, dir string, m *config.Machine) (map[string]Asset, error) {
	out := map[string]Asset{}
	for _, a := range cfg.NodeAssetsOf(m) {
		asset, err := h.asset(cfg, dir, a)
		if err != nil {
			return nil, err
		}
		out[a.Name] = asset
	}
	return out, nil
}

// available hashes every asset the config's machines download; a missing
// one is left out (the machines that need it fail to render, saying so).
func (h *hasher) available(cfg *config.Config, dir string) map[string]Asset {
	out := map[string]Asset{}
	for _, a := range cfg.NodeAssets() {
		if asset, err := h.asset(cfg, dir, a); err == nil {
			out[a.Name] = asset
		}
	}
	return out
}

// escapePath URL-escapes each segment of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
