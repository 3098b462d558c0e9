package dhcp

import (
	"testing"
)

func TestDecide(t *testing.T) {
	const base = "http://198.18.0.1:8080"
	known := func(r BootRequest) BootRequest {
		r.Known, r.TFTPServer, r.HTTPBaseURL = true, flintIP, base
		return r
	}
	const pxeVC = "PXEClient:Arch:00007:UNDI:003016"
	tests := []struct {
		name       string
		req        BootRequest
		file       string // "" means no boot info
		httpClient bool
		reason     string // checked when file is ""
	}{
		{name: "no vendor or user class", req: known(BootRequest{Arch: 7, HasArch: true}),
			reason: "not a netboot client (no PXEClient/HTTPClient vendor class, no iPXE user class)"},
		{name: "other vendor class", req: known(BootRequest{VendorClass: "MSFT 5.0", Arch: 0, HasArch: true}),
			reason: "not a netboot client (no PXEClient/HTTPClient vendor class, no iPXE user class)"},
		{name: "unknown machine", req: BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, TFTPServer: flintIP, HTTPBaseURL: base},
			reason: "unknown machine and dhcp.discover_unknown is false"},
		{name: "unknown machine with discover_unknown", req: BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, DiscoverUnknown: true, TFTPServer: flintIP, HTTPBaseURL: base},
			file: "ipxe.efi"},
		{name: "unknown iPXE without discover_unknown", req: BootRequest{VendorClass: pxeVC, IPXE: true, TFTPServer: flintIP, HTTPBaseURL: base},
			reason: "unknown machine and dhcp.discover_unknown is false"},

		{name: "BIOS", req: known(BootRequest{VendorClass: "PXEClient:Arch:00000:UNDI:002001", Arch: 0, HasArch: true}), file: "undionly.kpxe"},
		{name: "PXE without arch is BIOS", req: known(BootRequest{VendorClass: "PXEClient"}), file: "undionly.kpxe"},
		{name: "BIOS ignores a UEFI override", req: known(BootRequest{VendorClass: pxeVC, Arch: 0, HasArch: true, IPXEBinary: "snponly.efi"}), file: "undionly.kpxe"},
		{name: "BIOS takes a BIOS override", req: known(BootRequest{VendorClass: pxeVC, Arch: 0, HasArch: true, IPXEBinary: "ipxe.pxe"}), file: "ipxe.pxe"},
		{name: "x86 UEFI (6)", req: known(BootRequest{VendorClass: pxeVC, Arch: 6, HasArch: true}), file: "ipxe.efi"},
		{name: "x86-64 UEFI (7)", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true}), file: "ipxe.efi"},
		{name: "x86-64 UEFI (9)", req: known(BootRequest{VendorClass: pxeVC, Arch: 9, HasArch: true}), file: "ipxe.efi"},
		{name: "UEFI override snponly", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, IPXEBinary: "snponly.efi"}), file: "snponly.efi"},
		{name: "UEFI ignores an arm64 override", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, IPXEBinary: "snponly-arm64.efi"}), file: "ipxe.efi"},
		{name: "arm64 UEFI", req: known(BootRequest{VendorClass: pxeVC, Arch: 11, HasArch: true}), file: "ipxe-arm64.efi"},
		{name: "arm64 UEFI override", req: known(BootRequest{VendorClass: pxeVC, Arch: 11, HasArch: true, IPXEBinary: "snponly-arm64.efi"}), file: "snponly-arm64.efi"},

		{name: "x86-64 UEFI HTTP boot", req: known(BootRequest{VendorClass: "HTTPClient:Arch:00016:UNDI:003001", Arch: 16, HasArch: true}),
			file: base + "/ipxe/ipxe.efi", httpClient: true},
		{name: "x86-64 UEFI HTTP boot with override", req: known(BootRequest{VendorClass: "HTTPClient", Arch: 16, HasArch: true, IPXEBinary: "snponly.efi"}),
			file: base + "/ipxe/snponly.efi", httpClient: true},
		{name: "arm64 UEFI HTTP boot", req: known(BootRequest{VendorClass: "HTTPClient:Arch:00019:UNDI:003001", Arch: 19, HasArch: true}),
			file: base + "/ipxe/ipxe-arm64.efi", httpClient: true},
		{name: "HTTPClient without arch", req: known(BootRequest{VendorClass: "HTTPClient"}),
			reason: "HTTPClient without a client architecture (option 93)"},

		// iPXE asking again gets the script, never a binary (chainload loop).
		{name: "iPXE on BIOS", req: known(BootRequest{VendorClass: "PXEClient:Arch:00000:UNDI:002001", Arch: 0, HasArch: true, IPXE: true}), file: base + "/boot.ipxe"},
		{name: "iPXE on UEFI", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, IPXE: true}), file: base + "/boot.ipxe"},
		{name: "iPXE with override", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, IPXE: true, IPXEBinary: "snponly.efi"}), file: base + "/boot.ipxe"},
		{name: "iPXE on arm64", req: known(BootRequest{VendorClass: pxeVC, Arch: 11, HasArch: true, IPXE: true}), file: base + "/boot.ipxe"},
		{name: "iPXE without vendor class", req: known(BootRequest{IPXE: true}), file: base + "/boot.ipxe"},
		{name: "iPXE on unsupported arch still gets the script", req: known(BootRequest{VendorClass: pxeVC, Arch: 2, HasArch: true, IPXE: true}), file: base + "/boot.ipxe"},

		{name: "Secure Boot x86-64 UEFI", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, SecureBoot: true}), file: "shimx64.efi"},
		{name: "Secure Boot arch 9", req: known(BootRequest{VendorClass: pxeVC, Arch: 9, HasArch: true, SecureBoot: true}), file: "shimx64.efi"},
		{name: "Secure Boot ignores ipxe_binary", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, SecureBoot: true, IPXEBinary: "snponly.efi"}), file: "shimx64.efi"},
		{name: "Secure Boot on BIOS boots iPXE", req: known(BootRequest{VendorClass: pxeVC, Arch: 0, HasArch: true, SecureBoot: true}), file: "undionly.kpxe"},
		{name: "Secure Boot, iPXE asks (Secure Boot off in the firmware)", req: known(BootRequest{VendorClass: pxeVC, Arch: 7, HasArch: true, IPXE: true, SecureBoot: true}), file: base + "/boot.ipxe"},
		{name: "Secure Boot over UEFI HTTP boot", req: known(BootRequest{VendorClass: "HTTPClient:Arch:00016:UNDI:003000", Arch: 16, HasArch: true, SecureBoot: true}),
			reason: "secure_boot machines boot by UEFI PXE, not UEFI HTTP boot: put PXE (IPv4) first in the firmware's boot order"},
		{name: "unsupported arch", req: known(BootRequest{VendorClass: pxeVC, Arch: 2, HasArch: true}), reason: "unsupported client architecture 2"},
		{name: "unsupported arch arm32", req: known(BootRequest{VendorClass: pxeVC, Arch: 10, HasArch: true}), reason: "unsupported client architecture 10"},
		{name: "unsupported HTTP arch", req: known(BootRequest{VendorClass: "HTTPClient", Arch: 15, HasArch: true}), reason: "unsupported client architecture 15"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.req)
			if d.File != tc.file {
				t.Fatalf("file %q, want %q (reason %q)", d.File, tc.file, d.Reason)
			}
			if d.Boots() != (tc.file != "") {
				t.Fatalf("Boots() = %v with file %q", d.Boots(), d.File)
			}
			if d.HTTPClient != tc.httpClient {
				t.Errorf("HTTPClient = %v, want %v", d.HTTPClient, tc.httpClient)
			}
			if tc.file == "" {
				if d.Reason != tc.reason {
					t.Errorf("reason %q, want %q", d.Reason, tc.reason)
				}
				if d.NextServer.IsValid() {
					t.Errorf("next-server %v without a file", d.NextServer)
				}
			} else if d.NextServer != flintIP {
				t.Errorf("next-server %v, want %v", d.NextServer, flintIP)
			}
		})
	}
}

func TestArchName(t *testing.T) {
	for code, want := range map[uint16]string{
		0: "BIOS", 6: "x86 UEFI", 7: "x86-64 UEFI", 9: "x86-64 UEFI", 11: "arm64 UEFI",
		16: "x86-64 UEFI HTTP", 19: "arm64 UEFI HTTP", 10: "arm32 UEFI", 2: "arch 2", 300: "arch 300",
	} {
		if got := ArchName(code); got != want {
			t.Errorf("ArchName(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestIPXEUserClass(t *testing.T) {
	for in, want := range map[string]bool{
		"iPXE":               true,  // what iPXE really sends
		"\x04iPXE":           true,  // RFC 3004 framing
		"\x03foo\x04iPXE":    true,  // RFC 3004, second class
		"":                   false, // absent
		"ipxe":               false, // case matters
		"iPXE-custom":        false,
		"\x05iPXE":           false, // length runs past the end
		"\x00iPXE":           false, // zero length is invalid framing
		"\x04gPXE":           false,
		"\x09iPXE\x00\x00xx": false,
	} {
		if got := isIPXEUserClass([]byte(in)); got != want {
			t.Errorf("isIPXEUserClass(%q) = %v, want %v", in, got, want)
		}
	}
}
