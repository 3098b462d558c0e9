package ipxe

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flint-boot/flint/internal/testenv"
)

// grubCheck runs GRUB's own parser (grub-script-check, Debian grub-common)
// over a config.
func grubCheck(t *testing.T, cfg string) {
	t.Helper()
	bin, err := exec.LookPath("grub-script-check")
	if err != nil {
		testenv.Unavailable(t, "run scripts/install-deps.sh", "grub-script-check: %v (Debian package grub-common)", err)
		return
	}
	p := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, p).CombinedOutput(); err != nil {
		t.Fatalf("grub-script-check: %v: %s\n%s", err, out, cfg)
	}
}

func TestGrubMachine(t *testing.T) {
	cfg := testCfg(t)
	tok := strings.Repeat("ab", 32)
	nuc1 := &cfg.Machines[0]
	s := GrubMachine(cfg, nuc1, tok)
	grubCheck(t, s)
	// The iPXE script's arguments but initrd=, each one literal word;
	// kernel and initrd from /assets/ on the TFTP server GRUB came from.
	want := "  if linux '/assets/flatcar/flatcar_production_pxe.vmlinuz' 'flatcar.first_boot=1' " +
		"'ignition.config.url=http://198.18.0.1:8080/ignition?mac=52-54-00-12-34-56&token=" + tok + "' 'console=tty0' 'console=ttyS0,115200n8'; then\n"
	if !strings.Contains(s, want) {
		t.Errorf("no line\n%s\nin\n%s", want, s)
	}
	if !strings.Contains(s, "    if initrd '/assets/flatcar/flatcar_production_pxe_image.cpio.gz'; then\n      boot\n") {
		t.Errorf("no initrd and boot lines in\n%s", s)
	}
	if ipxeArgs := KernelArgs(cfg, nuc1, tok); ipxeArgs[0] != "initrd=flatcar_production_pxe_image.cpio.gz" {
		t.Errorf("iPXE's first argument %q, want initrd=", ipxeArgs[0])
	} else if strings.Contains(s, ipxeArgs[0]) {
		t.Errorf("GRUB config names %s: the kernel's EFI stub would look for that file", ipxeArgs[0])
	}

	// A machine's own initrd; an argument GRUB would otherwise expand.
	nuc2 := &cfg.Machines[1]
	nuc2.Kernel = "custom/vmlinuz"
	nuc2.KernelArgs = []string{"x=$y'z;"}
	s = GrubMachine(cfg, nuc2, tok)
	grubCheck(t, s)
	for _, w := range []string{"linux '/assets/custom/vmlinuz' ", `'x=$y'\''z;'`, "initrd '/assets/custom/initrd-v2.cpio.gz'"} {
		if !strings.Contains(s, w) {
			t.Errorf("no %s in\n%s", w, s)
		}
	}
}

func TestGrubChainAndLocalBoot(t *testing.T) {
	s := GrubChain()
	grubCheck(t, s)
	if !strings.Contains(s, "  source ${prefix}/machines/${net_default_mac}/grub.cfg\n") || !strings.HasPrefix("grub/machines/", GrubMachinePrefix) {
		t.Errorf("the generic config does not load the machine's own (%s):\n%s", GrubMachinePrefix, s)
	}
	if !strings.HasSuffix(s, "exit 1\n") || !strings.Contains(s, "for flint_try in 1 2 3 4 5; do") {
		t.Errorf("no bounded retry ending in exit 1:\n%s", s)
	}
	local := GrubLocalBoot("nuc1", "52:54:00:12:34:56")
	grubCheck(t, local)
	if !strings.HasSuffix(local, "exit 1\n") || strings.Contains(local, "linux") {
		t.Errorf("local boot must hand the machine back to its firmware:\n%s", local)
	}
	if got := grubText("a\"$b\nc\\"); got != "a__b c_" {
		t.Errorf("grubText: %q", got)
	}
}
