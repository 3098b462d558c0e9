package metrics

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flint-boot/flint/internal/testenv"
)

// TestAlertRules: deploy/prometheus/flint-rules.yml is valid for Prometheus
// (`promtool check rules`), and its unit tests (flint-rules.test.yml: the
// series that must fire FlintDown, FlintConfigsRefused,
// FlintDHCPPoolNearlyFull and FlintMachineStuckInstalling, and when they
// must not yet) pass with `promtool test rules`.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "install Debian's prometheus package (make deps)", "promtool not found")
	}
	dir := filepath.Join("..", "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "flint-rules.yml"},
		{"test", "rules", "flint-rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
