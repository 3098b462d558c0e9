package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Run("flint version prints the version and the Go version", func(t *testing.T) {
		out, _, err := runCLI(t, "version")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "flint dev\n") || !strings.Contains(out, "go "+runtime.Version()) {
			t.Fatalf("output:\n%s", out)
		}
	})
	t.Run("-ldflags version and the embedded modules", func(t *testing.T) {
		defer func(v string) { version = v }(version)
		version = "v1.2.3"
		var b bytes.Buffer
		writeVersion(&b, &debug.BuildInfo{Deps: []*debug.Module{
			{Path: "github.com/coreos/butane", Version: "v0.29.0"},
			{Path: "github.com/coreos/ignition/v2", Version: "v2.27.0", Replace: &debug.Module{Path: "../ignition", Version: "v2.27.1-local"}},
			{Path: "github.com/spf13/cobra", Version: "v1.9.0"},
		}})
		out := b.String()
		for _, want := range []string{"flint v1.2.3\n", "  github.com/coreos/butane v0.29.0\n", "  github.com/coreos/ignition/v2 v2.27.1-local\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "cobra") {
			t.Errorf("output lists a module that is not embedded for rendering:\n%s", out)
		}
	})
}
