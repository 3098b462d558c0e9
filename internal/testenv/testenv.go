// Package testenv holds what flint's test suites share about their
// environment: whether a missing prerequisite must fail (CI) or may skip,
// and how to build the binaries under test. Only tests import it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether CI=true (or 1, yes) is set: then a test whose
// prerequisite is missing fails instead of silently testing nothing.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// Unavailable fails the test in CI and skips it elsewhere; howTo says how
// to get the prerequisite (e.g. "run `sudo make test`").
func Unavailable(t testing.TB, howTo, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing (CI=true makes this a failure): %s", msg)
	}
	t.Skipf("%s; %s", msg, howTo)
}

// GoTool finds the go command even under sudo, whose PATH may lack it.
func GoTool() string {
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

// GoBuild builds package pkg as a static binary at out.
func GoBuild(out, pkg string) error {
	cmd := exec.Command(GoTool(), "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
