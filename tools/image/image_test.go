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

	"github.com/google/go-containerregistry/pkg/v1/tarball"

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
	o.Out = filepath.Join(dir, "a.tar")
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
	if !slices.Equal(cf.Config.Entrypoint, []string{binPath}) || cf.OS != "linux" || !cf.Created.Time.Equal(o.Created) {
		t.Errorf("image config: entrypoint %q, os %q, created %v; want [%s], linux, %v", cf.Config.Entrypoint, cf.OS, cf.Created.Time, binPath, o.Created)
	}

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
		if !h.ModTime.Equal(created) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: time %v owner %d:%d, want %v and root", h.Name, h.ModTime, h.Uid, h.Gid, created)
		}
		dst := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
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
		default:
			t.Errorf("%s: unexpected entry type %q", h.Name, h.Typeflag)
		}
	}
}
