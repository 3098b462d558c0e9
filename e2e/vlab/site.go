package vlab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Where the test OS is served from, relative to the assets directory: the
// same /assets/ path and boot.kernel/boot.initrd settings a Flatcar site uses.
const (
	KernelAsset = "e2e/vmlinuz"
	InitrdAsset = "e2e/initrd.cpio.gz"
)

// FakeAssets stand in for the etcd and K3s release binaries the server and
// agent profiles install: Ignition downloads them from flint and checks their
// sha512 like the real ones, and the suite checks they arrived intact.
var FakeAssets = map[string]string{
	"k3s/k3s":      "#!/bin/sh\necho 'fake k3s for flint e2e'\n",
	"etcd/etcd":    "#!/bin/sh\necho 'fake etcd for flint e2e'\n",
	"etcd/etcdctl": "#!/bin/sh\necho 'fake etcdctl for flint e2e'\n",
}

// ConfigYAML is flint's site file for the lab: full DHCP mode on the bridge
// with a reservation per machine and no pool, so every address handed out is
// a reserved one; or, with proxy, proxy mode next to the router's dnsmasq,
// which hands out the same reserved addresses.
func ConfigYAML(vms []VM, assetsDir string, proxy bool) string {
	mode := "full"
	if proxy {
		mode = "proxy"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# flint's virtual lab (e2e/vlab): flint is the only DHCP, TFTP and HTTP(S) server on %s.
server:
  interface: %s
  address: %s
  http_port: %d
  https_port: %d
dhcp:
  mode: %s
  subnet: %s
  domain: lab.test
  lease_time: 1h
ipxe:
  directory: /usr/lib/ipxe
boot:
  # The e2e test OS (e2e/testos), served like Flatcar's PXE kernel and initrd.
  kernel: %s
  initrd: %s
  kernel_args: ["console=ttyS0", "panic=5"]
  assets_dir: %s
cluster:
  name: e2e
  install_mode: live  # the test OS runs from RAM; it has no installer
machines:
`, Bridge, Bridge, FlintIP, HTTPPort, HTTPSPort, mode, Subnet, KernelAsset, InitrdAsset, assetsDir)
	for _, v := range vms {
		extra := ""
		if len(v.KernelArgs) > 0 {
			extra += fmt.Sprintf(", kernel_args: [%s]", strings.Join(v.KernelArgs, ", "))
		}
		if v.BMC != "" {
			extra += ", bmc: " + v.BMC
		}
		if v.SecureBoot {
			extra += ", secure_boot: true"
		}
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s%s}  # %s\n", v.MAC, v.Hostname, v.IP, v.Role, extra, v.Desc)
	}
	return b.String()
}

// PlaceAssets puts the test OS (from testOSDir) and the fake release binaries
// into the assets directory.
func PlaceAssets(assetsDir, testOSDir string) error {
	files := map[string][]byte{}
	for rel, content := range FakeAssets {
		files[rel] = []byte(content)
	}
	for rel, src := range map[string]string{KernelAsset: "vmlinuz", InitrdAsset: "initrd.cpio.gz"} {
		b, err := os.ReadFile(filepath.Join(testOSDir, src))
		if err != nil {
			return fmt.Errorf("test OS: %w", err)
		}
		files[rel] = b
	}
	for rel, b := range files {
		p := filepath.Join(assetsDir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// BuildTestOS runs e2e/testos/build.sh with its cache in cacheDir and returns
// the directory holding vmlinuz and initrd.cpio.gz. The script's progress goes
// to progress.
func BuildTestOS(repoRoot, cacheDir string, progress io.Writer) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot, "e2e", "testos", "build.sh"), cacheDir)
	cmd.Dir = repoRoot
	cmd.Stderr = progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("e2e/testos/build.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
