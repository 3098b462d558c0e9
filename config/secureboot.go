package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// validateSecureBoot checks the Secure Boot settings: where the signed
// stages are, and that what a Secure Boot machine boots can be reached by
// GRUB (Debian's signed network GRUB has TFTP only: a path under /assets/,
// which flint serves over TFTP to it, never a URL).
func (cfg *Config) validateSecureBoot(c *checker) {
	b := &cfg.Boot
	for field, p := range map[string]string{"boot.shim": b.Shim, "boot.grub": b.Grub} {
		if !filepath.IsAbs(p) {
			c.fail(field, "%q is not an absolute path to a signed EFI binary", p)
		}
	}
	if !cfg.UsesSecureBoot() {
		return
	}
	noURL := func(field, p string) {
		l := strings.ToLower(p)
		if strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") {
			c.fail(field, "%q: a Secure Boot machine's signed GRUB loads kernel and initrd from flint over TFTP (it has no HTTP): use a path under /assets/", p)
		}
	}
	if b.SecureBoot {
		noURL("boot.kernel", b.Kernel)
		noURL("boot.initrd", b.Initrd)
	}
	for i := range cfg.Machines {
		m := &cfg.Machines[i]
		if !cfg.SecureBootOf(m) {
			continue
		}
		f := fmt.Sprintf("machines[%d]", i)
		if !b.SecureBoot {
			// The site's kernel is this machine's too unless it has its own.
			if m.Kernel == "" {
				noURL(f+".secure_boot", b.Kernel)
			}
			if m.Initrd == "" {
				noURL(f+".secure_boot", b.Initrd)
			}
		}
		noURL(f+".kernel", m.Kernel)
		noURL(f+".initrd", m.Initrd)
		if m.IPXEBinary != "" {
			c.warn(f+".ipxe_binary", "%s is not used: with secure_boot the machine boots Shim and GRUB, never iPXE", m.IPXEBinary)
		}
	}
}
