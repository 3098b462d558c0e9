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
)

// Paths of the binaries under test, set by TestMain.
var (
	flintBin   string // bin/flint built from ./cmd/flint (or $FLINT_BIN)
	probeBin   string // ./pxeprobe
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
		if err := goBuild(flintBin, "github.com/flint-boot/flint/cmd/flint"); err != nil {
			return err
		}
	}
	probeBin = filepath.Join(dir, "pxeprobe")
	if err := goBuild(probeBin, "github.com/flint-boot/flint/integration/pxeprobe"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "integration: flint=%s pxeprobe=%s (built in %s)\n", flintBin, probeBin, time.Since(start).Round(time.Millisecond))
	return nil
}

func goBuild(out, pkg string) error {
	cmd := exec.Command(goTool(), "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// goTool finds the go command even under sudo, whose PATH may lack it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// inCI reports whether a missing prerequisite must fail instead of skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// unavailable fails the test in CI and skips it elsewhere, saying how to get the prerequisite.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("prerequisite missing (CI=true makes this a failure): %s", msg)
	}
	t.Skipf("%s; run the integration tests with `sudo make test` (it installs the packages and runs as root)", msg)
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
