package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/flint-boot/flint/internal/testenv"
)

// TestImage builds the image from a fresh flint and Debian's iPXE, twice
// (the bytes must match), then unpacks its layers into a directory and runs
// the flint in it: what a container runtime would start.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flint")
	}
	const ipxeDir = "/usr/lib/ipxe"
	for _, f := range ipxeFiles {
		if _, err := os.Stat(filepath.Join(ipxeDir, f)); err != nil {
			testenv.Unavailable(t, "install Debian's ipxe: sudo make deps-lite", "iPXE binaries: %v", err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "flint")
	if err := testenv.GoBuild(bin, "github.com/flint-boot/flint/cmd/flint"); err != nil {
		t.Fatal(err)
	}
	o := options{Flint: bin, IPXEDir: ipxeDir, Tag: "flint:test", Created: time.Unix(1700000000, 0).UTC(), Arch: "amd64"}
	o.Out, o.OCI = filepath.Join(dir, "a.tar"), filepath.Join(dir, "oci")
	if err := build(o); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(o.Out)
	o.Out = filepath.Join(dir, "b.tar")
	if err := build(o); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(o.Out); !bytes.Equal(first, second) {
		t.Errorf("two builds from the same files differ: the image is not reproducible")
	}

	img, err := tarball.ImageFromPath(o.Out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{binPath}) || cf.OS != "linux" || !cf.Created.Time.Equal(o.Created) || cf.Config.User != "65532:65532" {
		t.Errorf("image config: entrypoint %q, os %q, created %v, user %q; want [%s], linux, %v, 65532:65532", cf.Config.Entrypoint, cf.OS, cf.Created.Time, cf.Config.User, binPath, o.Created)
	}
	t.Run("the OCI layout holds the same image", func(t *testing.T) {
		idx, err := layout.ImageIndexFromPath(o.OCI)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.Digest()
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != want || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
			t.Errorf("OCI layout index %+v, want one manifest %s tagged test", im.Manifests, want)
		}
	})

	root := filepath.Join(dir, "root")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		unpack(t, rc, root, o.Created)
		rc.Close()
	}
	if fi, err := os.Stat(filepath.Join(root, dataPath)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want a 0700 directory", dataPath, fi.Mode(), err)
	}
	for _, f := range ipxeFiles {
		want, _ := os.ReadFile(filepath.Join(ipxeDir, f))
		got, err := os.ReadFile(filepath.Join(root, ipxePath, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s in the image is not Debian's (err %v)", ipxePath, f, err)
		}
	}

	flint := filepath.Join(root, binPath)
	out, err := exec.Command(flint, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "flint ") {
		t.Fatalf("the image's flint version: %v\n%s", err, out)
	}
	// The example config, with ipxe.directory in the unpacked image.
	example, err := os.ReadFile("../../deploy/examples/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(example), "directory: "+ipxePath, "directory: "+filepath.Join(root, ipxePath), 1)
	if cfg == string(example) {
		t.Fatal("deploy/examples/cluster.yaml no longer sets ipxe.directory: " + ipxePath)
	}
	cfgPath := filepath.Join(dir, "flint.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(flint, "validate", "--config", cfgPath, "--data", filepath.Join(dir, "data"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok:") {
		t.Errorf("the image's flint validate --config %s: %v\n%s", cfgPath, err, out)
	}
	t.Run("serves on privileged ports as uid 65532 with only its file capabilities", func(t *testing.T) {
		serveUnprivileged(t, dir, root)
	})
}

// unpack extracts a layer into root, checking each entry's time and owner.
func unpack(t *testing.T, r io.Reader, root string, created time.Time) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		owner := 0
		if h.Name == dataPath[1:]+"/" {
			owner = flintUID // flint's own state, and nothing else
		}
		if !h.ModTime.Equal(created) || h.Uid != owner || h.Gid != owner {
			t.Errorf("%s: time %v owner %d:%d, want %v and %d", h.Name, h.ModTime, h.Uid, h.Gid, created, owner)
		}
		caps, hasCaps := h.PAXRecords[capsXattr]
		if want := h.Name == binPath[1:]; hasCaps != want || (want && caps != fileCaps()) {
			t.Errorf("%s: file capabilities %x (present %v); want them on %s only: %x", h.Name, caps, hasCaps, binPath, fileCaps())
		}
		dst := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dst, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 {
				if err := os.Lchown(dst, h.Uid, h.Gid); err != nil {
					t.Fatal(err)
				}
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			if caps, ok := h.PAXRecords[capsXattr]; ok && os.Geteuid() == 0 {
				// What a container runtime does with the record (root only).
				if err := unix.Setxattr(dst, "security.capability", []byte(caps), 0); err != nil {
					t.Fatalf("%s: set file capabilities: %v", dst, err)
				}
			}
		default:
			t.Errorf("%s: unexpected entry type %q", h.Name, h.Typeflag)
		}
	}
}
