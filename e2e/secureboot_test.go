package e2e

import (
	"strings"
	"testing"
)

// The TFTP names after Shim, as the clients ask for them: Shim loads
// grubx64.efi next to itself; Debian's network GRUB reads grub.cfg under its
// prefix /grub (then the machine's own, kernel and initrd: checkTimeline).
const (
	secureBootGrub    = "grubx64.efi"
	secureBootGrubCfg = "/grub/grub.cfg"
)

// The Secure Boot machine (vlab.Machines, "secure") boots with Secure Boot
// enforced: OVMF's Secure Boot build with Microsoft's keys enrolled (Debian's
// .ms files), q35 with SMM. Its native PXE loads Debian's signed Shim from
// flint over TFTP, Shim checks and loads Debian's signed network GRUB, GRUB
// loads the machine's GRUB config from flint (the same decision as an iPXE
// script: kernel, initrd, kernel arguments and the Ignition URL with a boot
// token) and boots the test OS's Debian kernel, which Shim's Debian key must
// have signed. The test OS reports Secure Boot as the firmware and the
// kernel see it, and Ignition applies the config as on every machine.

// checkSecureBoot: the Secure Boot machine's test OS found Secure Boot on
// and enforced; every other UEFI machine found it off, and BIOS no EFI.
func checkSecureBoot(t *testing.T, r *vmRun) {
	t.Helper()
	c := r.console
	switch {
	case r.SecureBoot:
		if c.SecureBoot != "1" || c.KernelSecureBoot != "secureboot:_Secure_boot_enabled" || !strings.Contains(c.Lockdown, "[integrity]") && !strings.Contains(c.Lockdown, "[confidentiality]") {
			t.Errorf("Secure Boot: EFI variable %q, kernel %q, lockdown %q; want 1, enabled and a lockdown", c.SecureBoot, c.KernelSecureBoot, c.Lockdown)
		} else {
			t.Logf("Secure Boot enforced: EFI variable SecureBoot=%s, kernel %q, lockdown %s", c.SecureBoot, c.KernelSecureBoot, c.Lockdown)
		}
	case r.UEFI:
		if c.SecureBoot != "0" {
			t.Errorf("Secure Boot EFI variable %q, want 0 (OVMF without Secure Boot)", c.SecureBoot)
		}
	default:
		if c.SecureBoot != "no-efi" {
			t.Errorf("Secure Boot %q, want no-efi on BIOS", c.SecureBoot)
		}
	}
}
