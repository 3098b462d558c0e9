package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, ln := range strings.Split(text, "\n") {
		if strings.Contains(ln, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in config text", s)
	return 0
}

// runFlint runs the binary outside any namespace (these commands need no network).
func runFlint(t *testing.T, args ...string) Result {
	t.Helper()
	r := runCmd("", 30*time.Second, flintBin, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", r)
		}
	})
	return r
}

// TestValidate: `flint validate` accepts a good config and rejects a bad one
// with file:line: field: message for every problem.
func TestValidate(t *testing.T) {
	needBinaries(t)
	dir := t.TempDir()

	t.Run("good", func(t *testing.T) {
		good := filepath.Join(dir, "good.yaml")
		if err := os.WriteFile(good, []byte(siteConfig{Mode: "full", Pool: true, Machines: []machine{node1, node2, node3}}.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runFlint(t, "validate", "--config", good)
		if r.Code != 0 {
			t.Errorf("validate of a good config: exit %d, want 0", r.Code)
		}
		// The documented example is valid too.
		r = runFlint(t, "validate", "--config", "../deploy/examples/cluster.yaml")
		if r.Code != 0 {
			t.Errorf("validate deploy/examples/cluster.yaml: exit %d, want 0", r.Code)
		}
	})

	t.Run("bad", func(t *testing.T) {
		text := `server:
  interface: br0
  address: 198.18.0.1
dhcp:
  mode: full
  subnet: 198.18.0.0/24
  pool:
    start: 198.18.0.100
    end: 198.18.0.199
machines:
  - mac: "52:54:00:aa:bb:01"
    hostname: node1
    ip: 198.18.0.11
    role: server
  - mac: "52:54:00:AA:BB:01"   # the same MAC again, other case
    hostname: node2
    ip: 198.18.0.150           # inside the pool
    role: agent
  - mac: "52:54:00:aa:bb:03"
    hostname: node3
    ip: 198.18.0.13
    role: kingpin              # no such role
`
		path := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runFlint(t, "validate", "--config", path)
		if r.Code != 1 {
			t.Errorf("validate of a bad config: exit %d, want 1", r.Code)
		}
		for _, want := range []struct {
			field string
			line  int
			word  string // a word the message must contain
		}{
			{"machines[1].mac", lineOf(t, text, "52:54:00:AA:BB:01"), "52:54:00:aa:bb:01"},
			{"machines[1].ip", lineOf(t, text, "198.18.0.150"), "pool"},
			{"machines[2].role", lineOf(t, text, "kingpin"), "kingpin"},
		} {
			re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(fmt.Sprintf("%s:%d: %s: ", path, want.line, want.field)) + `.*` + regexp.QuoteMeta(want.word))
			if !re.MatchString(r.Stderr) {
				t.Errorf("stderr has no line %q...%q", fmt.Sprintf("%s:%d: %s: ", path, want.line, want.field), want.word)
			}
		}
	})

	t.Run("missing-file", func(t *testing.T) {
		r := runFlint(t, "validate", "--config", filepath.Join(dir, "nope.yaml"))
		if r.Code == 0 || !strings.Contains(r.Stderr, "nope.yaml") {
			t.Errorf("validate of a missing file: exit %d, stderr %q; want non-zero naming the file", r.Code, r.Stderr)
		}
	})
}
