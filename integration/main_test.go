package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
)

// Paths of the binaries under test, set by TestMain.
var (
	flintBin   string // bin/flint built from ./cmd/flint (or $FLINT_BIN)
	probeBin   string // ./pxeprobe
	loadBin    string // ../bench/dhcpload, the Go DHCP load generator
	buildError error  // why the binaries could not be built; every test reports it
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself in -short mode
	}
	dir, err := os.MkdirTemp("", "flint-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	buildError = buildBinaries(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries(dir string) error {
	start := time.Now()
	flintBin = os.Getenv("FLINT_BIN")
	if flintBin != "" {
		abs, err := filepath.Abs(flintBin)
		if err != nil {
			return err
		}
		flintBin = abs
		if _, err := os.Stat(flintBin); err != nil {
			return fmt.Errorf("FLINT_BIN: %w", err)
		}
	} else {
		flintBin = filepath.Join(dir, "flint")
		if err := testenv.GoBuild(flintBin, "github.com/flint-boot/flint/cmd/flint"); err != nil {
			return err
		}
	}
	probeBin = filepath.Join(dir, "pxeprobe")
	if err := testenv.GoBuild(probeBin, "github.com/flint-boot/flint/integration/pxeprobe"); err != nil {
		return err
	}
	loadBin = filepath.Join(dir, "dhcpload")
	if err := testenv.GoBuild(loadBin, "github.com/flint-boot/flint/bench/dhcpload"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "integration: flint=%s pxeprobe=%s dhcpload=%s (built in %s)\n", flintBin, probeBin, loadBin, time.Since(start).Round(time.Millisecond))
	return nil
}

// unavailable fails the test in CI and skips it elsewhere, saying how to get the prerequisite.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Unavailable(t, "run the integration tests with `sudo make test` (it installs the packages and runs as root)", format, args...)
}

// needBinaries stops a test early when flint or the probe could not be built.
func needBinaries(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if buildError != nil {
		t.Fatalf("cannot build the binaries under test: %v", buildError)
	}
}

// toolPackages maps each external program the tests run to its Debian package.
var toolPackages = map[string]string{
	"ip":       "iproute2",
	"udhcpc":   "udhcpc",
	"dhclient": "isc-dhcp-client",
	"atftp":    "atftp",
	"curl":     "curl",
	"dnsmasq":  "dnsmasq-base",
	"ipmi_sim": "openipmi",
	"ipmitool": "ipmitool",
	"dhcrelay": "isc-dhcp-relay",
	"tcpdump":  "tcpdump",
	"nft":      "nftables",
}

// needTools checks that the programs exist (as root, so namespaces work too).
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, toolPackages[tool]))
		}
	}
	if len(missing) > 0 {
		unavailable(t, "missing programs: %s", strings.Join(missing, ", "))
	}
}

// needRoot checks for the privileges network namespaces need.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "not root: network namespaces need root")
	}
	needTools(t, "ip")
}
