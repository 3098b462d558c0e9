// GRUB configs for Secure Boot machines. Their chain is signed end to end:
// the firmware loads Shim over TFTP, Shim loads grubx64.efi (Debian's signed
// grubnetx64) from the same server and directory, and that GRUB, whose
// built-in prefix is /grub on the TFTP server it came from, reads
// /grub/x86_64-efi/grub.cfg if it exists, else /grub/grub.cfg. Debian's
// signed network GRUB has tftp but no http module built in, and Secure Boot
// forbids loading modules, so everything after Shim comes over TFTP: flint
// serves GrubChain as /grub/grub.cfg, which loads the machine's own config,
// /grub/machines/MAC/grub.cfg (the MAC as GRUB writes it, with colons),
// like /boot.ipxe chains to the machine's script; GrubMachine, made from the
// same lifecycle decision as the iPXE script, loads kernel and initrd from
// /assets/ over TFTP.
//
// GRUB's script language splits words on white space and expands $ in words
// and double quotes; single quotes keep everything literally. Every word
// flint does not write itself goes through grubQuote.

package ipxe

import (
	"fmt"
	"path"
	"strings"

	"github.com/flint-boot/flint/config"
)

// GrubMachinePrefix is where the TFTP server answers with a machine's own
// GRUB config: /grub/machines/MAC/grub.cfg.
const GrubMachinePrefix = "grub/machines/"

// GrubChain is /grub/grub.cfg, served over TFTP: it loads the machine's own
// GRUB config from the same server (GRUB's $prefix) and retries; after
// Attempts failures it hands the machine back to its firmware.
func GrubChain() string {
	target := "${prefix}/machines/${net_default_mac}/grub.cfg"
	var b strings.Builder
	b.WriteString("# flint: generic GRUB config (Secure Boot). It loads this machine's own config, named by its MAC.\n")
	b.WriteString("echo \"flint: loading " + target + "\"\n")
	fmt.Fprintf(&b, "for flint_try in %s; do\n", attemptList())
	// source returns only if the machine's config did not boot a kernel.
	b.WriteString("  source " + target + "\n")
	fmt.Fprintf(&b, "  echo \"flint: could not load %s (attempt ${flint_try} of %d), retrying in %d s\"\n", target, Attempts, RetryDelaySeconds)
	fmt.Fprintf(&b, "  sleep %d\n", RetryDelaySeconds)
	b.WriteString("done\n")
	b.WriteString("echo \"flint: giving up. If flint said file not found, MAC ${net_default_mac} is not in flint's config; else flint's log shows each request.\"\n")
	writeGrubGiveUp(&b)
	return b.String()
}

// GrubMachine boots m like MachineScript does, from GRUB: the same kernel,
// initrd and kernel arguments (but initrd=: GRUB hands the initrd over in
// memory), the same Ignition URL with this boot's token. GRUB checks the
// kernel's signature through Shim when Secure Boot is on.
func GrubMachine(cfg *config.Config, m *config.Machine, token string) string {
	// Validation keeps URLs away from Secure Boot machines: these are paths
	// under /assets/, which flint's TFTP server serves to them.
	kernel := "/assets/" + strings.TrimLeft(firstNonEmpty(m.Kernel, cfg.Boot.Kernel), "/")
	initrd := "/assets/" + strings.TrimLeft(firstNonEmpty(m.Initrd, cfg.Boot.Initrd), "/")
	mac := m.MAC
	if !m.HW.IsZero() {
		mac = m.HW.String()
	}
	who := grubText(fmt.Sprintf("%s (MAC %s, role %s)", m.Hostname, mac, m.Role))
	args := bootArgs(cfg, m, token)
	for i, a := range args {
		args[i] = grubQuote(a)
	}

	var b strings.Builder
	b.WriteString("# flint: GRUB config of " + who + ", generated from flint's config.\n")
	b.WriteString("echo \"flint: booting " + who + ": " + grubText(path.Base(kernel)) + "\"\n")
	fmt.Fprintf(&b, "for flint_try in %s; do\n", attemptList())
	b.WriteString("  if linux " + grubQuote(kernel) + " " + strings.Join(args, " ") + "; then\n")
	b.WriteString("    if initrd " + grubQuote(initrd) + "; then\n")
	b.WriteString("      boot\n")
	b.WriteString("      echo \"flint: the kernel did not start: is it signed by a key Shim trusts (Secure Boot)?\"\n")
	b.WriteString("    fi\n")
	b.WriteString("  fi\n")
	fmt.Fprintf(&b, "  echo \"flint: could not load the kernel or initrd (attempt ${flint_try} of %d), retrying in %d s\"\n", Attempts, RetryDelaySeconds)
	fmt.Fprintf(&b, "  sleep %d\n", RetryDelaySeconds)
	b.WriteString("done\n")
	b.WriteString("echo \"flint: could not boot " + who + ". flint's log shows each download.\"\n")
	writeGrubGiveUp(&b)
	return b.String()
}

// GrubLocalBoot is GRUB's answer for an installed machine: back to the
// firmware, which boots its next entry (the disk), like LocalBoot's exit 1.
func GrubLocalBoot(hostname, mac string) string {
	who := grubText(hostname + " (" + mac + ")")
	var b strings.Builder
	b.WriteString("# flint: " + who + " is installed; booting its disk.\n")
	b.WriteString("# Run `flint reprovision " + grubText(hostname) + "` to reinstall it on its next boot.\n")
	b.WriteString("echo \"flint: " + grubText(hostname) + " is installed, booting from the local disk\"\n")
	b.WriteString("exit 1\n")
	return b.String()
}

// writeGrubGiveUp ends a failed config: a person at the console has a moment
// to read it, then exit 1 hands the machine back to its firmware.
func writeGrubGiveUp(b *strings.Builder) {
	fmt.Fprintf(b, "sleep %d\n", ShellPromptMillis/1000)
	b.WriteString("exit 1\n")
}

func attemptList() string {
	n := make([]string, Attempts)
	for i := range n {
		n[i] = fmt.Sprint(i + 1)
	}
	return strings.Join(n, " ")
}

// grubQuote makes s one literal GRUB word: single quotes keep everything,
// and a single quote itself is written as '\”.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// grubText makes text safe inside flint's double-quoted echo lines: no line
// breaks, no $ expansion, no quote or backslash that would end or escape
// the string, printable ASCII only.
func grubText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r > '~', r == '$', r == '"', r == '\\', r == '`':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
