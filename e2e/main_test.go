// Package e2e boots real firmware from flint: five QEMU machines (SeaBIOS
// with iPXE, OVMF's native PXE, OVMF with an e1000 iPXE ROM, OVMF's UEFI
// HTTP boot, OVMF with Secure Boot through Shim and GRUB) netboot a small
// test OS from flint and run the real Ignition client against it. See vlab
// for the lab itself and testos/ for the test OS.
//
// The suite needs root (network namespaces, taps) and Debian packages
// (scripts/install-deps.sh). Without them it skips, unless CI=true, where a
// missing prerequisite is a failure. Run it with `sudo make e2e`.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/e2e/vlab"
	"github.com/flint-boot/flint/internal/testenv"
)

var (
	flintBin   string // built from ./cmd/flint, or $FLINT_BIN
	buildError error
	repoRoot   string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // the suite skips itself in -short mode
	}
	var err error
	repoRoot, err = filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "flint-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	buildError = buildFlint(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildFlint(dir string) error {
	if p := os.Getenv("FLINT_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		flintBin = abs
		_, err = os.Stat(abs)
		return err
	}
	flintBin = filepath.Join(dir, "flint")
	return testenv.GoBuild(flintBin, "github.com/flint-boot/flint/cmd/flint")
}

// unavailable fails in CI and skips elsewhere, saying how to get what is missing.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.Unavailable(t, "run the suite with `sudo make e2e` (it installs the packages and runs as root)", format, args...)
}

// needPrerequisites checks root, the programs and the firmware files the
// suite uses, and that flint was built.
func needPrerequisites(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "not root: network namespaces and tap devices need root")
	}
	var missing []string
	for tool, pkg := range map[string]string{
		"ip": "iproute2", "qemu-system-x86_64": "qemu-system-x86", "curl": "curl",
		"cpio": "cpio", "apt-get": "apt", "gcc": "gcc", "strip": "binutils", "tcpdump": "tcpdump",
		"dnsmasq": "dnsmasq-base",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, pkg))
		}
	}
	for file, pkg := range map[string]string{
		vlab.OVMFCode:                      "ovmf",
		vlab.OVMFVars:                      "ovmf",
		vlab.OVMFCodeSecure:                "ovmf",
		vlab.OVMFVarsMS:                    "ovmf",
		"/usr/lib/shim/shimx64.efi.signed": "shim-signed",
		"/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed": "grub-efi-amd64-signed",
		"/usr/lib/ipxe/ipxe.efi":                                "ipxe",
		"/usr/lib/ipxe/qemu/efi-virtio.rom":                     "ipxe-qemu",
		"/usr/lib/ipxe/qemu/efi-e1000.rom":                      "ipxe-qemu",
		"/bin/busybox":                                          "busybox-static",
		"/usr/include/blkid/blkid.h":                            "libblkid-dev",
		"/usr/lib/x86_64-linux-gnu/libc.so":                     "libc6-dev",
		"/usr/lib/x86_64-linux-gnu/libblkid.so":                 "libblkid-dev",
	} {
		if _, err := os.Stat(file); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", file, pkg))
		}
	}
	if len(missing) > 0 {
		unavailable(t, "missing: %s", strings.Join(missing, ", "))
	}
	if buildError != nil {
		t.Fatalf("cannot build flint: %v", buildError)
	}
}

// cacheDir keeps the built test OS and Ignition client between runs.
func cacheDir() string {
	if d := os.Getenv("FLINT_E2E_CACHE"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, ".work", "e2e")
}

// buildTestOS builds (or finds cached) the test OS: a build failure is a
// failure, not a skip, once the prerequisites are there.
func buildTestOS(t *testing.T) string {
	t.Helper()
	start := time.Now()
	dir, err := vlab.BuildTestOS(repoRoot, cacheDir(), os.Stderr)
	if err != nil {
		t.Fatalf("build the test OS: %v", err)
	}
	t.Logf("test OS %s ready in %v", dir, time.Since(start).Round(time.Millisecond))
	return dir
}
