package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadLogFlagsFailEveryCommand(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{
		{"validate"},
		{"machines", "--data", data},
		{"render", "--mac", exampleMAC, "--data", data},
		{"reprovision", "nuc1", "--data", data},
		{"assets", "ls", "--data", data},
	} {
		_, _, err := runCLI(t, append(args, "--log-level", "bogus")...)
		if err == nil || !strings.Contains(err.Error(), `--log-level "bogus": use debug, info, warn or error`) {
			t.Errorf("%v --log-level bogus: want an error naming the flag and its values, got %v", args, err)
		}
		_, _, err = runCLI(t, append(args, "--log-format", "xml")...)
		if err == nil || !strings.Contains(err.Error(), `--log-format "xml": use text or json`) {
			t.Errorf("%v --log-format xml: want an error naming the flag and its values, got %v", args, err)
		}
	}
	if got := filesUnder(t, data); len(got) > 0 {
		t.Fatalf("a command with a bad flag created %v", got)
	}
}

func TestValidatePositionalConfig(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.yaml")
	cfg := "dhcp:\n  mode: \"off\"\n  subnet: 198.18.0.0/24\nassets: {flatcar: {version: 4152.2.0}}\nmachines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n"
	if err := os.WriteFile(one, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("FILE works like --config FILE, with singular counts", func(t *testing.T) {
		out, _, err := runCLI(t, "validate", one, "--data", dir)
		if err != nil {
			t.Fatal(err)
		}
		if want := one + ": ok: dhcp mode off, 1 machine (1 server, 0 agents)"; !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	})
	t.Run("FILE and a different --config is refused", func(t *testing.T) {
		_, _, err := runCLI(t, "validate", one, "--config", filepath.Join(dir, "other.yaml"))
		if err == nil || !strings.Contains(err.Error(), "pass one") {
			t.Fatalf("want an error about two config files, got %v", err)
		}
	})
	t.Run("two files are refused", func(t *testing.T) {
		_, _, err := runCLI(t, "validate", one, one)
		if err == nil || !strings.Contains(err.Error(), "one config file") {
			t.Fatalf("want an error about one file, got %v", err)
		}
	})
	t.Run("one problem is singular", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte(strings.Replace(cfg, "ip: 198.18.0.9", "ip: 198.18.1.9", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := runCLI(t, "validate", bad)
		if err == nil || !strings.Contains(err.Error(), "has 1 problem; fix it and") {
			t.Fatalf("want 'has 1 problem; fix it', got %v", err)
		}
	})
}

func TestArgumentErrorsSayWhatToPass(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"reprovision"}, "reprovision needs the machine's hostname or MAC: flint reprovision NODE"},
		{[]string{"reprovision", "nuc1", "nuc2"}, "reprovision takes one machine, got 2 (nuc1 nuc2)"},
		{[]string{"serve", "site.yaml"}, `flint serve takes no arguments, got "site.yaml": pass the config with --config FILE`},
		{[]string{"render", "nuc1"}, `flint render takes no arguments, got "nuc1": name the machine with --mac MAC`},
		{[]string{"machines", "x"}, "flint machines takes no arguments"},
		{[]string{"pki", "x"}, "flint pki takes no arguments"},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want %q, got %v", c.args, c.want, err)
		}
	}
}
