package config

import (
	"errors"
	"strings"
	"testing"
)

func TestSecureBootSettings(t *testing.T) {
	// Site default off, nuc4 (lines 15-19) on.
	text := strings.Replace(goodConfig, "    ipxe_binary: snponly.efi\n", "    secure_boot: true\n", 1)
	cfg, err := Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, false, false, true} {
		if got := cfg.SecureBootOf(&cfg.Machines[i]); got != want {
			t.Errorf("%s: SecureBootOf = %v, want %v", cfg.Machines[i].Hostname, got, want)
		}
	}
	if !cfg.UsesSecureBoot() || cfg.Boot.Shim != DefaultShim || cfg.Boot.Grub != DefaultGrub {
		t.Errorf("UsesSecureBoot %v, shim %q, grub %q: want true and Debian's files", cfg.UsesSecureBoot(), cfg.Boot.Shim, cfg.Boot.Grub)
	}

	// The site on, one machine off.
	text = strings.Replace(goodConfig, "cluster: {", "boot: {secure_boot: true}\ncluster: {", 1)
	text = strings.Replace(text, "    ipxe_binary: snponly.efi\n", "    secure_boot: false\n", 1)
	cfg, err = Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, true, true, false} {
		if got := cfg.SecureBootOf(&cfg.Machines[i]); got != want {
			t.Errorf("%s: SecureBootOf = %v, want %v", cfg.Machines[i].Hostname, got, want)
		}
	}

	// ipxe_binary on a Secure Boot machine is never used: a warning at its line.
	text = strings.Replace(goodConfig, "    ipxe_binary: snponly.efi\n", "    ipxe_binary: snponly.efi\n    secure_boot: true\n", 1)
	cfg, err = Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Line != 19 || !strings.Contains(cfg.Warnings[0].Message, "snponly.efi is not used: with secure_boot") {
		t.Errorf("warnings %+v, want one at line 19 about ipxe_binary", cfg.Warnings)
	}
}

func TestSecureBootRejects(t *testing.T) {
	sb := "    secure_boot: true\n"
	cases := []struct{ name, replace, with, want string }{
		{"not a bool", "    ipxe_binary: snponly.efi\n", "    secure_boot: sometimes\n", `:19: machines[3].secure_boot:`},
		{"http kernel", "    ipxe_binary: snponly.efi\n", sb + "    kernel: http://example.test/vmlinuz\n", `:20: machines[3].kernel: "http://example.test/vmlinuz": a Secure Boot machine's signed GRUB loads kernel and initrd from flint over TFTP`},
		{"https site initrd", "cluster: {", "boot: {initrd: https://example.test/initrd}\ncluster: {", ``},
		{"relative shim", "cluster: {", "boot: {shim: shimx64.efi}\ncluster: {", `:20: boot.shim: "shimx64.efi" is not an absolute path`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(goodConfig, tc.replace, tc.with, 1)
			if tc.name == "https site initrd" {
				// The site's initrd is the machine's: the problem is at the machine's secure_boot.
				text = strings.Replace(text, "    ipxe_binary: snponly.efi\n", sb, 1)
				tc.want = `:19: machines[3].secure_boot: "https://example.test/initrd": a Secure Boot machine's signed GRUB loads kernel and initrd from flint over TFTP`
			}
			_, err := Parse("site.yaml", []byte(text))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}
