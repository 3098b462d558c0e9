// Command image builds flint's container image without a container daemon:
// one layer holding /usr/local/bin/flint and the iPXE binaries flint serves
// over TFTP (/usr/lib/ipxe, the config's default ipxe.directory), written as
// an image tarball that `docker load`, `podman load` and `ctr images import`
// read. `make image` runs it.
//
// The image is reproducible: the same binary and iPXE files give the same
// bytes. Every timestamp is SOURCE_DATE_EPOCH (default 0), owners are root,
// and the files go in in a fixed order.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ipxeFiles are the iPXE builds flint hands out (config: ipxe_binary).
var ipxeFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

// Paths inside the image.
const (
	binPath  = "/usr/local/bin/flint"
	ipxePath = "/usr/lib/ipxe"
)

type options struct {
	Flint   string    // the static flint binary to put in
	IPXEDir string    // where the iPXE binaries are read from
	Tag     string    // e.g. flint:v1.2.3
	Out     string    // the image tarball to write
	Created time.Time // every timestamp in the image
	Arch    string    // GOARCH the binary was built for
}

func main() {
	o := options{Arch: runtime.GOARCH}
	flag.StringVar(&o.Flint, "flint", "bin/flint", "the static flint binary (make build)")
	flag.StringVar(&o.IPXEDir, "ipxe", ipxePath, "directory with "+fmt.Sprint(ipxeFiles)+" (Debian package ipxe)")
	flag.StringVar(&o.Tag, "tag", "flint:dev", "image name and tag")
	flag.StringVar(&o.Out, "o", "bin/flint-image.tar", "image tarball to write")
	flag.StringVar(&o.Arch, "arch", o.Arch, "architecture the binary was built for")
	flag.Parse()
	created, err := sourceDateEpoch()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	o.Created = created
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("image: wrote %s (%s)\n", o.Out, o.Tag)
}

// sourceDateEpoch is SOURCE_DATE_EPOCH (reproducible-builds.org), default 0.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(o options) error {
	tag, err := name.NewTag(o.Tag)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", o.Tag, err)
	}
	layerTar, err := rootfs(o)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "flint tools/image: " + binPath + " and iPXE in " + ipxePath,
		},
	})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.Arch, "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{binPath}
	cf.Config.Cmd = []string{"serve", "--config", "/etc/flint/flint.yaml", "--data", "/var/lib/flint"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "flint"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return err
	}
	tmp := o.Out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", o.Out, err)
	}
	return os.Rename(tmp, o.Out)
}

// rootfs is the layer: the directories, flint and the iPXE files, with fixed
// times and root ownership.
func rootfs(o options) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Uid, h.Gid, h.Format = o.Created, 0, 0, tar.FormatPAX
		return tw.WriteHeader(h)
	}
	for _, d := range []string{"etc/", "etc/flint/", "tmp/", "usr/", "usr/lib/", "usr/lib/ipxe/", "usr/local/", "usr/local/bin/", "var/", "var/lib/", "var/lib/flint/"} {
		mode := int64(0o755)
		switch d {
		case "tmp/":
			mode = 0o1777
		case "var/lib/flint/":
			mode = 0o700 // the PKI lives here, as under systemd's StateDirectoryMode
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return nil, err
		}
	}
	add := func(src, dst string, mode int64) error {
		data, err := os.ReadFile(src) // follows symlinks: Debian's ipxe.efi is one
		if err != nil {
			return err
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	if err := add(o.Flint, binPath[1:], 0o755); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: build it first (make build)", err)
		}
		return nil, err
	}
	for _, f := range ipxeFiles {
		if err := add(filepath.Join(o.IPXEDir, f), ipxePath[1:]+"/"+f, 0o644); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: install Debian's ipxe (make deps-lite) or pass -ipxe DIR", err)
			}
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
