// Package systemd_test checks deploy/systemd/flint.service with systemd's own
// tools, the way an operator installing it would see it.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flint-boot/flint/internal/testenv"
)

const installed = "/usr/local/bin/flint"

// unitCopy writes flint.service into a temp dir with the binary path the
// install instructions use replaced by one that exists here (verify checks
// that ExecStart's program is executable; it is never run).
func unitCopy(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.Unavailable(t, "install it: sudo apt-get install systemd (or scripts/install-deps.sh)",
			"systemd-analyze not found: %v", err)
	}
	unit, err := os.ReadFile("flint.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+installed+" serve ") {
		t.Fatalf("flint.service: ExecStart does not run %s serve", installed)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flint.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), installed, self)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnitVerifies(t *testing.T) {
	path := unitCopy(t)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", path)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify flint.service: %v\n%s", err, out)
	}
	// verify also reports on other units of the host (dependencies it loads);
	// only what it says about flint.service is ours to fix.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "flint.service") {
			t.Errorf("systemd-analyze verify warns about the unit: %s", line)
		}
	}
}

var overall = regexp.MustCompile(`Overall exposure level for flint\.service: ([0-9.]+) (\S+)`)

func TestUnitSecurity(t *testing.T) {
	path := unitCopy(t)
	cmd := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", path)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=true flint.service: %v\n%s", err, out)
	}
	m := overall.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no overall exposure level in systemd-analyze security's output:\n%s", out)
	}
	score, level := m[1], m[2]
	switch level {
	case "OK", "SAFE", "PERFECT":
	default:
		t.Errorf("flint.service exposure %s %s, want OK or better; what it flags:\n%s", score, level, flagged(string(out)))
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "exposure " + score + " " + level; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not record the unit's score: want %q in it (update it to what systemd-analyze says)", want)
	}
}

func flagged(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "✗") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
