// Command image builds flint's container image without a container daemon:
// one layer holding /usr/local/bin/flint and the iPXE binaries flint serves
// over TFTP (/usr/lib/ipxe, the config's default ipxe.directory), written as
// an image tarball that `docker load`, `podman load` and `ctr images import`
// read, and as an OCI image layout directory (skopeo, podman, crane, oras).
// `make image` runs it.
//
// flint runs as an unprivileged user (uid 65532) that owns only the data
// directory. The binary carries file capabilities (the security.capability
// extended attribute in the layer): binding ports 67, 69, 80 and 443 and the
// DHCP socket's interface binding, and nothing else; container runtimes
// grant them at exec as long as their bounding set holds them (Docker's and
// Podman's defaults do) and no_new_privs is off.
//
// The image is reproducible: the same binary and iPXE files give the same
// bytes. Every timestamp is SOURCE_DATE_EPOCH (default 0), owners are root
// (the data directory: flint's user), and the files go in in a fixed order.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
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
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ipxeFiles are the iPXE builds flint hands out (config: ipxe_binary).
var ipxeFiles = []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}

// Paths inside the image.
const (
	binPath  = "/usr/local/bin/flint"
	ipxePath = "/usr/lib/ipxe"
	dataPath = "/var/lib/flint"
)

// flintUID is the user flint runs as in the image (no name: the image has no
// /etc/passwd, and needs none).
const flintUID = 65532

// Capabilities the binary gets at exec (linux/capability.h numbers).
const (
	capNetBindService = 10 // DHCP 67, TFTP 69, HTTP(S) 80/443
	capNetRaw         = 13 // SO_BINDTODEVICE on the DHCP socket
)

// fileCaps is the security.capability value (VFS_CAP_REVISION_2, with the
// effective bit: flint does not raise capabilities itself).
func fileCaps() string {
	var b [20]byte
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetBindService|1<<capNetRaw) // permitted, caps 0-31
	return string(b[:])
}

// capsXattr is the PAX record that carries the extended attribute in a layer.
const capsXattr = "SCHILY.xattr.security.capability"

type options struct {
	Flint   string    // the static flint binary to put in
	IPXEDir string    // where the iPXE binaries are read from
	Tag     string    // e.g. flint:v1.2.3
	Out     string    // the image tarball to write
	OCI     string    // the OCI image layout directory to write ("": none)
	Created time.Time // every timestamp in the image
	Arch    string    // GOARCH the binary was built for
}

func main() {
	o := options{Arch: runtime.GOARCH}
	flag.StringVar(&o.Flint, "flint", "bin/flint", "the static flint binary (make build)")
	flag.StringVar(&o.IPXEDir, "ipxe", ipxePath, "directory with "+fmt.Sprint(ipxeFiles)+" (Debian package ipxe)")
	flag.StringVar(&o.Tag, "tag", "flint:dev", "image name and tag")
	flag.StringVar(&o.Out, "o", "bin/flint-image.tar", "image tarball to write")
	flag.StringVar(&o.OCI, "oci", "", "also write the image as an OCI image layout in this directory (replaced)")
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
	if o.OCI != "" {
		fmt.Printf("image: wrote the OCI layout %s\n", o.OCI)
	}
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
	cf.Config.User = fmt.Sprintf("%d:%d", flintUID, flintUID)
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
	if err := os.Rename(tmp, o.Out); err != nil {
		return err
	}
	if o.OCI != "" {
		return writeLayout(o.OCI, tag, img)
	}
	return nil
}

// writeLayout writes img as an OCI image layout in dir, its tag in the
// org.opencontainers.image.ref.name annotation.
func writeLayout(dir string, tag name.Tag, img v1.Image) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag.TagStr()}))
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("write %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// rootfs is the layer: the directories, flint and the iPXE files, with fixed
// times and root ownership.
func rootfs(o options) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Format = o.Created, tar.FormatPAX
		return tw.WriteHeader(h)
	}
	for _, d := range []string{"etc/", "etc/flint/", "tmp/", "usr/", "usr/lib/", "usr/lib/ipxe/", "usr/local/", "usr/local/bin/", "var/", "var/lib/", dataPath[1:] + "/"} {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}
		switch d {
		case "tmp/":
			h.Mode = 0o1777
		case dataPath[1:] + "/":
			// The PKI lives here, as under systemd's StateDirectoryMode.
			h.Mode, h.Uid, h.Gid = 0o700, flintUID, flintUID
		}
		if err := hdr(h); err != nil {
			return nil, err
		}
	}
	add := func(src, dst string, mode int64, pax map[string]string) error {
		data, err := os.ReadFile(src) // follows symlinks: Debian's ipxe.efi is one
		if err != nil {
			return err
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: mode, Size: int64(len(data)), PAXRecords: pax}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	if err := add(o.Flint, binPath[1:], 0o755, map[string]string{capsXattr: fileCaps()}); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: build it first (make build)", err)
		}
		return nil, err
	}
	for _, f := range ipxeFiles {
		if err := add(filepath.Join(o.IPXEDir, f), ipxePath[1:]+"/"+f, 0o644, nil); err != nil {
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
