package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/pki"
)

// renderData is a data directory with a PKI and the K3s and etcd assets.
func renderData(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	if _, err := pki.Open(filepath.Join(data, "pki"), time.Now, nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"etcd/etcd", "etcd/etcdctl", "k3s/k3s"} {
		f := filepath.Join(data, "assets", a)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("binary"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

func TestRenderForPeople(t *testing.T) {
	data := renderData(t)
	t.Run("--mac takes a hostname and --pretty indents", func(t *testing.T) {
		byMAC, _, err := runCLI(t, "render", "--mac", exampleMAC, "--data", data)
		if err != nil {
			t.Fatal(err)
		}
		pretty, _, err := runCLI(t, "render", "--mac", "nuc1", "--data", data, "--pretty")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(pretty, "\n  \"ignition\": {") {
			t.Fatalf("--pretty output is not indented: %.200s", pretty)
		}
		var a, b map[string]any
		if json.Unmarshal([]byte(byMAC), &a) != nil || json.Unmarshal([]byte(pretty), &b) != nil {
			t.Fatal("output is not JSON")
		}
		if _, ok := b["storage"]; !ok || len(a) != len(b) {
			t.Fatalf("by hostname, pretty: %d keys, by MAC: %d", len(b), len(a))
		}
	})
	t.Run("a name that is neither says which names there are", func(t *testing.T) {
		_, _, err := runCLI(t, "render", "--mac", "nuc9", "--data", data)
		if err == nil || !strings.Contains(err.Error(), `--mac "nuc9" is neither a MAC nor a hostname`) || !strings.Contains(err.Error(), "nuc1, nuc2") {
			t.Fatalf("unknown name: %v", err)
		}
	})
	t.Run("secrets printed to a terminal come with a warning on stderr", func(t *testing.T) {
		defer func(f func(io.Writer) bool) { isTerminal = f }(isTerminal)
		isTerminal = func(io.Writer) bool { return false }
		if _, stderr, _ := runCLI(t, "render", "--mac", "nuc1", "--data", data); strings.Contains(stderr, "warning:") {
			t.Errorf("warning when redirected: %s", stderr)
		}
		isTerminal = func(io.Writer) bool { return true }
		out, stderr, err := runCLI(t, "render", "--mac", "nuc1", "--data", data)
		if err != nil || !strings.Contains(out, `"ignition"`) {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "warning: this is nuc1's config with its private keys") || !strings.Contains(stderr, "redirect it to a file") {
			t.Errorf("no warning on a terminal: %s", stderr)
		}
	})
}
