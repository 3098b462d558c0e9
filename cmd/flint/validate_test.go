package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

func TestValidateEmbeddedDefault(t *testing.T) {
	out, _, err := runCLI(t, "validate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ok: dhcp mode proxy, 5 machines (3 servers, 2 agents)") {
		t.Fatalf("output: %s", out)
	}
}

func TestValidateReportsFieldAndLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "dhcp:\n  mode: full\n  subnet: 198.18.0.0/24\nmachines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n  - {mac: '52:54:00:00:00:01', hostname: b, ip: 198.18.1.9, role: boss}\n"
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "validate", "--config", f)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	for _, want := range []string{
		f + ":6: machines[1].mac: MAC 52:54:00:00:00:01 is also used by machines[0]",
		f + ":6: machines[1].role: unknown role \"boss\"",
		f + ":6: machines[1].ip: 198.18.1.9 is outside subnet 198.18.0.0/24",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range [][]string{{"--help"}, {"serve", "--help"}, {"validate", "--help"}, {"machines", "--help"}} {
		out, _, err := runCLI(t, c...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: err %v, output %q", c, err, out)
		}
	}
}

// With dhcp.subnets, validate says which subnet serves flint's own segment,
// and names each problem of the subnets at its line.
func TestValidateSubnets(t *testing.T) {
	dir := t.TempDir()
	good := "server: {address: 198.18.0.1}\ndhcp:\n  mode: full\n  subnets:\n    - {subnet: 198.18.0.0/24}\n    - {subnet: 198.18.1.0/24, router: 198.18.1.1}\n" +
		"machines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.1.9, role: server, relay: {circuit_id: slot1}}\ncluster: {install_mode: live}\n"
	f := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(f, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "validate", "--config", f, "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"subnet 198.18.0.0/24: flint's own segment", "subnet 198.18.1.0/24: relayed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(good, "198.18.1.0/24,", "198.18.0.0/23,", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "validate", "--config", bad, "--data", dir)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	if want := bad + ":6: dhcp.subnets[1].subnet: 198.18.0.0/23 overlaps dhcp.subnets[0] (198.18.0.0/24)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}
