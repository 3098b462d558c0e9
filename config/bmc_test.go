package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bmcConfig is goodConfig with a bmc mapping (indented under nuc4) added.
func bmcConfig(bmc string) string {
	return strings.Replace(goodConfig, "    ipxe_binary: snponly.efi\n", "    ipxe_binary: snponly.efi\n    bmc:\n"+bmc, 1)
}

func TestBMC(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "nuc4.pw")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.pw")
	if err := os.WriteFile(open, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}

	t.Run("a good bmc parses with defaults", func(t *testing.T) {
		cfg, err := Parse("site.yaml", []byte(bmcConfig("      type: ipmi\n      address: 198.18.0.9:6230\n      username: admin\n      password_file: "+secret+"\n")))
		if err != nil {
			t.Fatal(err)
		}
		b := cfg.Machines[3].BMC
		if b == nil || b.Host != "198.18.0.9" || b.Port != 6230 || b.BootMode != BootModeUEFI || b.Timeout.Duration != DefaultBMCTimeout {
			t.Fatalf("bmc = %+v", b)
		}
		if cfg.Machines[0].BMC != nil {
			t.Error("nuc1 has no bmc but got one")
		}
		pw, err := BMCPassword(b)
		if err != nil || pw != "s3cret" {
			t.Fatalf("password = %q, %v", pw, err)
		}
	})
	t.Run("addresses", func(t *testing.T) {
		for in, want := range map[string]struct {
			host string
			port int
		}{
			"bmc1": {"bmc1", 0}, "198.18.0.9": {"198.18.0.9", 0}, "bmc1.example:443": {"bmc1.example", 443},
			"[fd00::1]:623": {"fd00::1", 623}, "fd00::1": {"fd00::1", 0}, "[fd00::1]": {"fd00::1", 0},
		} {
			h, p, err := splitHostPort(in)
			if err != nil || h != want.host || p != want.port {
				t.Errorf("splitHostPort(%q) = %q, %d, %v; want %v", in, h, p, err, want)
			}
		}
		for _, in := range []string{"", ":623", "bmc1:0", "bmc1:http", "bmc1:70000", "https://bmc1", "admin@bmc1", "a b"} {
			if _, _, err := splitHostPort(in); err == nil {
				t.Errorf("splitHostPort(%q) accepted", in)
			}
		}
	})
	t.Run("a password in the YAML is refused at its line with what to use instead", func(t *testing.T) {
		got := parseProblems(t, bmcConfig("      type: ipmi\n      address: bmc4\n      username: admin\n      password: hunter2\n"))
		wantProblems(t, got, "site.yaml:24: machines[3].bmc.password: a BMC password never goes in the config file")
		if !strings.Contains(got[0], "password_file") || !strings.Contains(got[0], "password_env") || strings.Contains(got[0], "hunter2") {
			t.Errorf("problem should name password_file and password_env and never the password: %s", got[0])
		}
	})
	t.Run("every wrong field at its line", func(t *testing.T) {
		t.Setenv("FLINT_TEST_BMC_PW", "x")
		got := parseProblems(t, bmcConfig("      type: idrac\n      address: bmc4:99999\n      password_file: "+open+"\n      boot_mode: bios\n      ca_file: /etc/ca.pem\n      timeout: 20m\n"))
		wantProblems(t, got,
			`site.yaml:21: machines[3].bmc.type: unknown BMC type "idrac": use ipmi, redfish or amt`,
			`site.yaml:22: machines[3].bmc.address: "bmc4:99999" has port "99999", not 1-65535`,
			`site.yaml:20: machines[3].bmc.username: missing`,
			`site.yaml:23: machines[3].bmc.password_file: `+open+` has mode 0644: other users can read the BMC password; run chmod 0600 `+open,
			`site.yaml:24: machines[3].bmc.boot_mode: unknown boot mode "bios"`,
			`site.yaml:25: machines[3].bmc.ca_file: only a redfish BMC`,
			`site.yaml:26: machines[3].bmc.timeout: 20m0s is out of range 1s-10m`,
		)
	})
	t.Run("password sources", func(t *testing.T) {
		got := parseProblems(t, bmcConfig("      type: redfish\n      address: bmc4\n      username: admin\n"))
		wantProblems(t, got, "site.yaml:20: machines[3].bmc: no password: name a file")
		got = parseProblems(t, bmcConfig("      type: redfish\n      address: bmc4\n      username: admin\n      password_file: "+secret+"\n      password_env: PW\n"))
		wantProblems(t, got, "site.yaml:25: machines[3].bmc.password_env: give the password one way")
		got = parseProblems(t, bmcConfig("      type: amt\n      address: bmc4\n      username: admin\n      password_file: "+dir+"/missing\n"))
		wantProblems(t, got, "site.yaml:24: machines[3].bmc.password_file: "+dir+"/missing does not exist")
		got = parseProblems(t, bmcConfig("      type: amt\n      address: bmc4\n      username: admin\n      password_env: 1PW\n"))
		wantProblems(t, got, `site.yaml:24: machines[3].bmc.password_env: "1PW" is not an environment variable name`)

		cfg, err := Parse("site.yaml", []byte(bmcConfig("      type: amt\n      address: bmc4\n      username: admin\n      password_env: FLINT_TEST_BMC_PW\n      timeout: 5s\n")))
		if err != nil {
			t.Fatal(err)
		}
		b := cfg.Machines[3].BMC
		if b.Timeout.Duration != 5*time.Second {
			t.Errorf("timeout = %v", b.Timeout)
		}
		if _, err := BMCPassword(b); err == nil || !strings.Contains(err.Error(), "FLINT_TEST_BMC_PW, which is not set") {
			t.Errorf("unset variable: %v", err)
		}
		t.Setenv("FLINT_TEST_BMC_PW", "from-env")
		if pw, err := BMCPassword(b); err != nil || pw != "from-env" {
			t.Errorf("password = %q, %v", pw, err)
		}
	})
	t.Run("a password file opened up after validation is refused at use", func(t *testing.T) {
		b := &BMC{PasswordFile: open}
		_, err := BMCPassword(b)
		if err == nil || !strings.Contains(err.Error(), "chmod 0600") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("err = %v", err)
		}
	})
}
