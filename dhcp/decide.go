// Package dhcp is flint's DHCP service: an authoritative DHCP server for one
// subnet (full mode) or a proxyDHCP/PXE boot server next to someone else's
// DHCP server (proxy mode). Both hand netboot clients the first-stage iPXE
// binary, and iPXE itself the HTTP boot script.
package dhcp

import (
	"fmt"
	"net/netip"
	"strings"
)

// Client architecture types (option 93, RFC 4578 and the IANA registry).
const (
	ArchBIOS          uint16 = 0
	ArchX86UEFI       uint16 = 6
	ArchX64UEFI       uint16 = 7 // RFC 4578 says "EFI BC"; in practice x86-64 firmware sends 7
	ArchX64UEFIAlt    uint16 = 9 // RFC 4578 says "EFI x86-64"; some firmware sends 9
	ArchARM32UEFI     uint16 = 10
	ArchARM64UEFI     uint16 = 11
	ArchX86UEFIHTTP   uint16 = 15
	ArchX64UEFIHTTP   uint16 = 16
	ArchARM32UEFIHTTP uint16 = 18
	ArchARM64UEFIHTTP uint16 = 19
)

// First-stage iPXE binaries. The TFTP server serves them by these names and
// httpd serves them under /ipxe/.
const (
	FileBIOS       = "undionly.kpxe"
	FileUEFI       = "ipxe.efi"
	FileARM64UEFI  = "ipxe-arm64.efi"
	httpIPXEPrefix = "/ipxe/"
	scriptPath     = "/boot.ipxe"
)

// FileShim is the first stage of the Secure Boot chain (Shim, signed by
// Microsoft's UEFI CA), served over TFTP; it loads grubx64.efi from the same
// server and directory.
const FileShim = "shimx64.efi"

// Vendor classes (option 60) of netboot firmware.
const (
	VendorPXEClient  = "PXEClient"
	VendorHTTPClient = "HTTPClient"
)

// BootRequest is what the boot decision depends on, taken from one DHCP
// request, the config and the machine it came from.
type BootRequest struct {
	Arch        uint16 // option 93 (first entry); meaningful only if HasArch
	HasArch     bool
	VendorClass string // option 60, e.g. "PXEClient:Arch:00007:UNDI:003016"
	IPXE        bool   // option 77 user class says "iPXE": the client already runs iPXE

	Known           bool   // the MAC is a machine in the config
	DiscoverUnknown bool   // config dhcp.discover_unknown
	IPXEBinary      string // the machine's ipxe_binary override ("" for none)
	SecureBoot      bool   // the machine boots the signed chain (Shim, GRUB), not iPXE

	TFTPServer  netip.Addr // flint's address: siaddr (next-server)
	HTTPBaseURL string     // e.g. "http://198.18.0.1:8080"
}

// BootDecision is the boot information to put in a reply.
type BootDecision struct {
	// File goes into the BOOTP file field: a TFTP file name or an http:// URL.
	// Empty means "no boot information" (see Reason).
	File string
	// NextServer goes into siaddr.
	NextServer netip.Addr
	// HTTPClient means the reply must carry option 60 "HTTPClient" (UEFI HTTP
	// boot ignores offers without it).
	HTTPClient bool
	// Reason says why there is no boot information, or notes how File was chosen.
	Reason string
}

// Boots reports whether the decision carries boot information.
func (d BootDecision) Boots() bool { return d.File != "" }

// Decide picks the boot file for a request. It is pure: same input, same answer.
func Decide(r BootRequest) BootDecision {
	pxe := strings.HasPrefix(r.VendorClass, VendorPXEClient)
	httpBoot := strings.HasPrefix(r.VendorClass, VendorHTTPClient)
	if !pxe && !httpBoot && !r.IPXE {
		return BootDecision{Reason: "not a netboot client (no PXEClient/HTTPClient vendor class, no iPXE user class)"}
	}
	if !r.Known && !r.DiscoverUnknown {
		return BootDecision{Reason: "unknown machine and dhcp.discover_unknown is false"}
	}
	boot := func(file, reason string) BootDecision {
		return BootDecision{File: file, NextServer: r.TFTPServer, Reason: reason}
	}
	httpFile := func(file, reason string) BootDecision {
		d := boot(r.HTTPBaseURL+httpIPXEPrefix+file, reason)
		d.HTTPClient = true
		return d
	}

	// iPXE asks again once it runs; handing it a binary again would loop forever.
	if r.IPXE {
		d := boot(r.HTTPBaseURL+scriptPath, "iPXE client: boot script")
		d.HTTPClient = httpBoot
		return d
	}

	if !r.HasArch {
		if pxe {
			return boot(FileBIOS, "no client architecture: assuming BIOS")
		}
		return BootDecision{Reason: "HTTPClient without a client architecture (option 93)"}
	}

	switch r.Arch {
	case ArchBIOS:
		file, note := pick(FileBIOS, r.IPXEBinary, biosBinaries)
		return boot(file, "BIOS"+note)
	case ArchX64UEFI, ArchX64UEFIAlt:
		if r.SecureBoot {
			return boot(FileShim, ArchName(r.Arch)+" Secure Boot: Shim, then GRUB")
		}
		file, note := pick(FileUEFI, r.IPXEBinary, x86EFIBinaries)
		return boot(file, ArchName(r.Arch)+note)
	case ArchX86UEFI:
		file, note := pick(FileUEFI, r.IPXEBinary, x86EFIBinaries)
		return boot(file, ArchName(r.Arch)+note)
	case ArchARM64UEFI:
		file, note := pick(FileARM64UEFI, r.IPXEBinary, arm64EFIBinaries)
		return boot(file, ArchName(r.Arch)+note)
	case ArchX64UEFIHTTP:
		if r.SecureBoot {
			// Shim and GRUB find their next stage and config from the PXE
			// (TFTP) boot information; flint has not proven them over HTTP boot.
			return BootDecision{Reason: "secure_boot machines boot by UEFI PXE, not UEFI HTTP boot: put PXE (IPv4) first in the firmware's boot order"}
		}
		file, note := pick(FileUEFI, r.IPXEBinary, x86EFIBinaries)
		return httpFile(file, ArchName(r.Arch)+note)
	case ArchARM64UEFIHTTP:
		file, note := pick(FileARM64UEFI, r.IPXEBinary, arm64EFIBinaries)
		return httpFile(file, ArchName(r.Arch)+note)
	}
	return BootDecision{Reason: fmt.Sprintf("unsupported client architecture %d", r.Arch)}
}

// Binaries that run on each firmware family: a machine's ipxe_binary override
// applies only where it can run (a BIOS binary sent to UEFI firmware would hang it).
var (
	biosBinaries     = map[string]bool{"undionly.kpxe": true, "ipxe.pxe": true}
	x86EFIBinaries   = map[string]bool{"ipxe.efi": true, "snponly.efi": true}
	arm64EFIBinaries = map[string]bool{"ipxe-arm64.efi": true, "snponly-arm64.efi": true}
)

// pick returns the override if it fits the firmware, else the default, with a
// note for the logs when an override was ignored.
func pick(def, override string, fits map[string]bool) (string, string) {
	switch {
	case override == "":
		return def, ""
	case fits[override]:
		return override, " (machine override)"
	default:
		return def, fmt.Sprintf(" (ipxe_binary %s does not run on this firmware; using %s)", override, def)
	}
}

// ArchName names a client architecture for people ("x86-64 UEFI").
func ArchName(code uint16) string {
	switch code {
	case ArchBIOS:
		return "BIOS"
	case ArchX86UEFI:
		return "x86 UEFI"
	case ArchX64UEFI, ArchX64UEFIAlt:
		return "x86-64 UEFI"
	case ArchARM32UEFI:
		return "arm32 UEFI"
	case ArchARM64UEFI:
		return "arm64 UEFI"
	case ArchX86UEFIHTTP:
		return "x86 UEFI HTTP"
	case ArchX64UEFIHTTP:
		return "x86-64 UEFI HTTP"
	case ArchARM32UEFIHTTP:
		return "arm32 UEFI HTTP"
	case ArchARM64UEFIHTTP:
		return "arm64 UEFI HTTP"
	}
	return fmt.Sprintf("arch %d", code)
}
