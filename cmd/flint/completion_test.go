package main

import (
	"strings"
	"testing"
)

// TestShellCompletion: `flint completion SHELL` writes a script for each
// shell an operator may use, and the completion it drives lists flint's
// commands.
func TestShellCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, err := runCLI(t, "completion", sh)
		if err != nil || !strings.Contains(out, "flint") || len(out) < 1000 {
			t.Errorf("completion %s: %v, %d bytes", sh, err, len(out))
		}
	}
	out, _, err := runCLI(t, "__complete", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serve", "validate", "machines", "reprovision", "render"} {
		if !strings.Contains(out, want) {
			t.Errorf("completing a command does not offer %s:\n%s", want, out)
		}
	}
}
