// Package ipxe writes the iPXE scripts flint serves: the generic /boot.ipxe
// every machine loads first, the per-machine script that boots Flatcar, and the
// answer for MACs flint does not know; and, for Secure Boot machines, the
// same in GRUB's language (grub.go). All functions are pure.
//
// iPXE's script language has no quoting: a line is split on whitespace, ${...}
// is expanded, a token starting with '#' starts a comment and the tokens "||",
// "&&" and ";" chain commands. A command that fails without a following "||"
// aborts the script. Text flint does not control goes through safeText first.
package ipxe

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/flint-boot/flint/config"
)

const (
	// Attempts is how often a script tries a download before giving up.
	Attempts = 5
	// RetryDelaySeconds is the pause between attempts: long enough for flint to
	// be restarted or a switch port to come up, short enough for a boot storm.
	RetryDelaySeconds = 5
	// ShellPromptMillis is how long a failed script offers the iPXE shell
	// before handing the machine back to its firmware.
	ShellPromptMillis = 30000
)

// failedFlag is set by a per-machine script that gave up, so the generic
// script it was chained from gives up too instead of fetching it again
// (otherwise the retries would multiply: Attempts chains x Attempts downloads).
const failedFlag = "flint_boot_failed"

// Chain is /boot.ipxe: it chains to the machine's own script, named by the MAC
// of the NIC iPXE booted from and by iPXE's build architecture.
func Chain(baseURL string) string {
	target := baseURL + "/machines/${mac:hexhyp}/boot.ipxe?arch=${buildarch}"
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# flint: generic boot script. It loads this machine's own script, named by its MAC.\n")
	b.WriteString("echo flint: loading the boot script of ${mac} (${buildarch}) from " + baseURL + "\n")
	// A flag left over from an earlier attempt (someone retrying from the
	// shell) must not end this one early.
	b.WriteString("clear " + failedFlag + " ||\n")
	// Its own counter: the machine's script resets flint_tries.
	b.WriteString("set flint_chain_tries:int32 0\n")
	b.WriteString(":flint_chain\n")
	// chain only returns if the machine's script did not boot a kernel.
	b.WriteString("chain " + target + " && exit 0 ||\n")
	b.WriteString("isset ${" + failedFlag + "} && exit 1 ||\n")
	writeRetry(&b, "flint_chain_tries", "flint_chain", "the boot script "+target)
	b.WriteString(":flint_failed\n")
	b.WriteString("echo flint: giving up: could not load " + target + "\n")
	b.WriteString("echo flint: if flint answered 404, MAC ${mac} is not in flint's config: add it under machines: and restart flint.\n")
	b.WriteString("echo flint: otherwise check that flint runs and is reachable at " + baseURL + " (flint's log shows each request).\n")
	writeGiveUp(&b)
	return b.String()
}

// MachineScript boots m with Flatcar: kernel and initrd from m's overrides or
// cfg.Boot, Ignition from flint's /ignition with this boot's token.
func MachineScript(cfg *config.Config, m *config.Machine, token string) string {
	base := cfg.HTTPBaseURL()
	kernel := firstNonEmpty(m.Kernel, cfg.Boot.Kernel)
	initrd := firstNonEmpty(m.Initrd, cfg.Boot.Initrd)
	kernelURL := AssetURL(base, kernel)
	initrdURL := AssetURL(base, initrd)

	mac := m.MAC
	if !m.HW.IsZero() {
		mac = m.HW.String()
	}
	who := safeText(fmt.Sprintf("%s (MAC %s, role %s)", m.Hostname, mac, m.Role))

	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# flint: boot script of " + who + ", generated from flint's config.\n")
	b.WriteString("echo flint: booting " + who + ": " + safeText(path.Base(kernelURL)) + "\n")
	writeFetch(&b, "flint_kernel", "the kernel "+kernelURL,
		"kernel "+kernelURL+" "+strings.Join(KernelArgs(cfg, m, token), " "), "flint_initrd")
	b.WriteString(":flint_initrd\n")
	writeFetch(&b, "flint_initrd_fetch", "the initrd "+initrdURL, "initrd "+initrdURL, "flint_boot")
	b.WriteString(":flint_boot\n")
	b.WriteString("boot ||\n")
	b.WriteString("echo flint: the kernel " + kernelURL + " did not start: is it a Linux kernel for ${buildarch}?\n")
	b.WriteString(":flint_failed\n")
	b.WriteString("echo flint: could not boot " + who + ". flint's log shows each download.\n")
	b.WriteString("set " + failedFlag + " 1\n")
	writeGiveUp(&b)
	return b.String()
}

// KernelArgs is m's kernel command line, in this order: initrd= (Flatcar's PXE
// boot hangs unless the kernel line names its initrd), first boot, the Ignition
// URL with the boot token, cfg.Boot.KernelArgs, m.KernelArgs. The token is
// checked by the caller (lifecycle tokens are 64 hex digits): nothing in it can
// break the line.
func KernelArgs(cfg *config.Config, m *config.Machine, token string) []string {
	initrd := firstNonEmpty(m.Initrd, cfg.Boot.Initrd)
	return append([]string{"initrd=" + imageName(initrd)}, bootArgs(cfg, m, token)...)
}

// bootArgs is m's kernel command line without iPXE's initrd= (a loader that
// hands the kernel its initrd in memory, as GRUB does, must not name a file
// the kernel's EFI stub would then look for).
func bootArgs(cfg *config.Config, m *config.Machine, token string) []string {
	args := []string{
		"flatcar.first_boot=1",
		// The machine's own MAC, not ${mac:hexhyp}: the config belongs to the
		// machine, whichever NIC fetched the script, and the URL reads on its own.
		"ignition.config.url=" + cfg.HTTPBaseURL() + "/ignition?mac=" + m.HW.HexHyp() + "&token=" + safeText(token),
	}
	extra, err := cfg.KernelArgs(m)
	if err != nil {
		// Validated when the config loaded; keep the raw arguments rather than none.
		extra = append(append([]string{}, cfg.Boot.KernelArgs...), m.KernelArgs...)
	}
	return append(args, extra...)
}

// NotFound answers a MAC flint has no machine for. flint serves it with HTTP
// 404, so iPXE itself only reports the failed download (the generic script then
// retries and explains); the text is for the operator who fetches the URL.
func NotFound(mac, reason string) string {
	mac, reason = safeText(mac), safeText(reason)
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# flint: MAC " + mac + " is not in flint's config: " + reason + "\n")
	b.WriteString("# To boot it, add it under machines: in flint's config (mac, hostname, ip, role) and restart\n")
	b.WriteString("# flint, or set dhcp.discover_unknown: true. `flint machines` lists the MACs flint has seen.\n")
	b.WriteString("echo flint: MAC " + mac + " is not in flint's config: " + reason + "\n")
	b.WriteString("echo flint: add it under machines: in the config and restart flint, or set dhcp.discover_unknown: true\n")
	b.WriteString("# UEFI: exit 1 makes the firmware try its next boot entry; a bare exit (success)\n")
	b.WriteString("# leaves many firmwares sitting in their boot menu. BIOS moves on either way.\n")
	b.WriteString("exit 1\n")
	return b.String()
}

// Refused answers a script request flint turned down (it is served with HTTP
// 403, so iPXE reports the failed download; the generic script then retries
// and gives up). The text is for the operator who reads the console or
// fetches the URL.
func Refused(hostname, reason string) string {
	hostname, reason = safeText(hostname), safeText(reason)
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# flint: refused the boot script of " + hostname + ": " + reason + "\n")
	b.WriteString("echo flint: refused the boot script of " + hostname + ": " + reason + "\n")
	b.WriteString("exit 1\n")
	return b.String()
}

// AssetURL is where iPXE fetches a kernel or initrd: an absolute http(s) URL
// as is, anything else as a path under flint's /assets/.
func AssetURL(baseURL, p string) string {
	if isHTTPURL(p) {
		return p
	}
	return baseURL + "/assets/" + escapePath(strings.TrimLeft(p, "/"))
}

// writeFetch writes a download with a retry loop: on success it jumps to next,
// after Attempts failures to :flint_failed.
func writeFetch(b *strings.Builder, label, what, command, next string) {
	b.WriteString("set flint_tries:int32 0\n")
	b.WriteString(":" + label + "\n")
	b.WriteString(command + " && goto " + next + " ||\n")
	writeRetry(b, "flint_tries", label, what)
}

// writeRetry counts a failed attempt in counter and jumps back to label, or
// to :flint_failed once Attempts have failed. sleep is followed by "||"
// because a key press cancels it, which would otherwise abort the script.
func writeRetry(b *strings.Builder, counter, label, what string) {
	fmt.Fprintf(b, "inc %s\n", counter)
	fmt.Fprintf(b, "iseq ${%s} %d && goto flint_failed ||\n", counter, Attempts)
	fmt.Fprintf(b, "echo flint: could not load %s (attempt ${%s} of %d), retrying in %d s\n", what, counter, Attempts, RetryDelaySeconds)
	fmt.Fprintf(b, "sleep %d ||\n", RetryDelaySeconds)
	fmt.Fprintf(b, "goto %s\n", label)
}

// writeGiveUp ends a failed script. NUCs boot unattended, so dropping straight
// into the iPXE shell would hang them forever: a person at the console gets a
// short window to open the shell, otherwise exit 1 hands the machine back to
// its firmware, which tries the next boot entry (often the network again, a
// natural retry). A bare exit would report success and UEFI would stop in its
// boot menu.
func writeGiveUp(b *strings.Builder) {
	fmt.Fprintf(b, "prompt --timeout %d flint: press any key within %d s for the iPXE shell && shell ||\n", ShellPromptMillis, ShellPromptMillis/1000)
	b.WriteString("exit 1\n")
}

// imageName is the name iPXE gives a downloaded image: the last segment of its
// URL path, which initrd= on the kernel line must match.
func imageName(p string) string {
	if isHTTPURL(p) {
		if u, err := url.Parse(p); err == nil {
			return path.Base(u.Path)
		}
	}
	return path.Base(p)
}

func isHTTPURL(p string) bool {
	l := strings.ToLower(p)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// escapePath percent-encodes what would split the iPXE line (whitespace,
// control bytes) or change the URL's meaning (#, ?), plus non-ASCII bytes.
// Everything else stays as written, so ${...} in a path still expands in iPXE.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f || c == '#' || c == '?' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// safeText makes text safe to print with echo or in a comment: no line breaks
// (a new line would be a new command), no ${ expansion, no '#' (a comment
// mid-line), no command separators, printable ASCII only.
func safeText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r > '~', r == '$', r == '#', r == '|', r == '&', r == ';', r == '\\':
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// LocalBoot is the script for a machine whose disk install finished: boot
// the local disk. BIOS: sanboot the first disk without describing it (so the
// OS doesn't see an iSCSI/SAN boot). UEFI: `exit 1` — a failure makes the
// firmware move on to its next boot entry (the disk), where a bare `exit`
// (success) leaves many firmwares sitting in their boot menu.
func LocalBoot(hostname, mac string) string {
	hostname, mac = safeText(hostname), safeText(mac)
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("# flint: " + hostname + " (" + mac + ") is installed; booting its disk.\n")
	b.WriteString("# Run `flint reprovision " + hostname + "` to reinstall it on its next boot.\n")
	b.WriteString("echo flint: " + hostname + " is installed, booting from the local disk\n")
	b.WriteString("iseq ${platform} efi && goto flint_efi ||\n")
	b.WriteString("sanboot --no-describe --drive 0x80 ||\n")
	b.WriteString("echo flint: sanboot of the first disk failed; trying the next boot device\n")
	b.WriteString("exit 1\n")
	b.WriteString(":flint_efi\n")
	b.WriteString("exit 1\n")
	return b.String()
}
