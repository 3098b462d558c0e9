package vlab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Firmware files from Debian's ovmf package. The vars file is copied per
// machine: OVMF writes its boot entries into it.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// The Secure Boot build (it needs SMM) and vars with Microsoft's keys
	// enrolled and Secure Boot on: what a NUC ships with.
	OVMFCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	OVMFVarsMS     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// VM is one lab machine: how QEMU emulates it and what flint's config says about it.
type VM struct {
	Name string // short name: bios, ovmf, e1000 (log and file names)
	Desc string
	UEFI bool   // OVMF instead of SeaBIOS
	NIC  string // QEMU NIC model: virtio-net-pci or e1000
	// NativePXE disables the NIC's option ROM (QEMU's iPXE), so OVMF's own
	// PXE client boots: DHCP with arch 7, then TFTP ipxe.efi from flint.
	NativePXE bool
	// HTTPBoot turns OVMF's PXE client off (IPv4 PXE and the whole IPv6
	// stack, through OVMF's fw_cfg knobs), so the firmware's only network
	// boot option is UEFI HTTP boot (HttpBootDxe, in Debian's build): DHCP
	// with arch 16 and vendor class HTTPClient, then an HTTP GET of the URL
	// flint answers with (ipxe.efi). Needs UEFI and NativePXE.
	HTTPBoot bool
	// SecureBoot boots OVMF's Secure Boot build with Microsoft's keys, and
	// flint's config says secure_boot for the machine: native PXE loads
	// Debian's signed Shim, then signed GRUB, then the signed test OS kernel.
	// Needs UEFI and NativePXE.
	SecureBoot bool

	MAC, Hostname, IP, Role string
	Tap                     string
	// KernelArgs are the machine's own kernel_args in flint's config.
	KernelArgs []string
	// BMC is its machines[].bmc as a YAML flow mapping ("" for none).
	BMC string
}

// Machines are the five boot paths the lab exercises. Three servers and two
// agents: both Ignition profiles are applied.
var Machines = []VM{
	{
		Name: "bios", Desc: "SeaBIOS, virtio-net with QEMU's iPXE ROM (iPXE asks for the HTTP script directly)",
		NIC: "virtio-net-pci", MAC: "52:54:00:e2:e0:01", Hostname: "e2e-bios", IP: "198.18.0.11", Role: "server", Tap: "tap-bios",
	},
	{
		Name: "ovmf", Desc: "OVMF native PXE, virtio-net without ROM (arch 7 -> TFTP ipxe.efi -> iPXE -> HTTP)",
		UEFI: true, NativePXE: true,
		NIC: "virtio-net-pci", MAC: "52:54:00:e2:e0:02", Hostname: "e2e-ovmf", IP: "198.18.0.12", Role: "server", Tap: "tap-ovmf",
	},
	{
		Name: "e1000", Desc: "OVMF, e1000 with QEMU's iPXE EFI ROM",
		UEFI: true,
		NIC:  "e1000", MAC: "52:54:00:e2:e0:03", Hostname: "e2e-e1000", IP: "198.18.0.13", Role: "agent", Tap: "tap-e1000",
	},
	{
		// Firmware that boots over HTTP only: OVMF's HTTP client fetches
		// ipxe.efi from flint, never TFTP.
		Name: "http", Desc: "OVMF UEFI HTTP boot, PXE off, virtio-net without ROM (arch 16 HTTPClient -> HTTP ipxe.efi -> iPXE -> HTTP)",
		UEFI: true, NativePXE: true, HTTPBoot: true,
		NIC: "virtio-net-pci", MAC: "52:54:00:e2:e0:04", Hostname: "e2e-http", IP: "198.18.0.14", Role: "server", Tap: "tap-http",
	},
	{
		// Secure Boot enforced: OVMF's Secure Boot build with Microsoft's
		// keys, native PXE, flint's signed chain (Shim, GRUB) and Debian's
		// signed kernel, everything after DHCP over TFTP.
		Name: "secure", Desc: "OVMF Secure Boot (Microsoft keys), native PXE (arch 7 -> TFTP Shim -> GRUB -> TFTP kernel, initrd)",
		UEFI: true, NativePXE: true, SecureBoot: true,
		NIC: "virtio-net-pci", MAC: "52:54:00:e2:e0:05", Hostname: "e2e-secure", IP: "198.18.0.15", Role: "agent", Tap: "tap-secure",
	},
}

// TFTPFile is the first-stage file the machine's firmware must fetch over
// TFTP, or "" when its NIC ROM already is iPXE and goes straight to HTTP.
func (v VM) TFTPFile() string {
	switch {
	case v.SecureBoot:
		return "shimx64.efi"
	case v.NativePXE && !v.HTTPBoot:
		return "ipxe.efi"
	}
	return ""
}

// HTTPFile is the first-stage path the machine's firmware must fetch over
// HTTP (UEFI HTTP boot), or "".
func (v VM) HTTPFile() string {
	if v.HTTPBoot {
		return "/ipxe/ipxe.efi"
	}
	return ""
}

// Arch is how flint names the machine's firmware architecture (DHCP option 93).
func (v VM) Arch() string {
	if v.UEFI {
		return "x86-64 UEFI"
	}
	return "BIOS"
}

// HexHyp is the MAC as iPXE's ${mac:hexhyp} writes it (URLs, API paths).
func (v VM) HexHyp() string { return strings.ReplaceAll(v.MAC, ":", "-") }

// SerialLog is where the machine's serial console is written in dir.
func (v VM) SerialLog(dir string) string { return filepath.Join(dir, "vm-"+v.Name+".serial.log") }

// QEMUArgs is the qemu-system-x86_64 command line. dir receives the OVMF
// vars copy and the serial log. Always TCG: /dev/kvm may exist and hang.
func (v VM) QEMUArgs(dir string) ([]string, error) {
	nic := fmt.Sprintf("%s,netdev=n0,mac=%s,bootindex=1", v.NIC, v.MAC)
	if v.NativePXE {
		nic += ",romfile=" // no iPXE ROM: the firmware's own PXE boots
	}
	machine := "q35"
	if v.SecureBoot {
		machine = "q35,smm=on" // OVMF's Secure Boot build keeps its variables in SMM
	}
	args := []string{
		"-name", "flint-" + v.Name,
		"-accel", "tcg",
		"-machine", machine,
		"-m", "512",
		"-smp", "1",
		"-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
		"-serial", "file:" + v.SerialLog(dir),
		"-no-reboot", // the test OS powers off; a reboot would be a failure
		"-boot", "n",
		"-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=no,downscript=no", v.Tap),
		"-device", nic,
	}
	if !v.UEFI {
		// SeaBIOS mirrors the text console (its own and iPXE's) to COM1, so the
		// serial log shows the BIOS boot too; there is no VGA to look at. It
		// reads the port as a little-endian integer file. (QEMU warns that the
		// name lacks the opt/ prefix; SeaBIOS wants exactly this name.)
		port := filepath.Join(dir, "sercon-port.bin")
		if err := os.WriteFile(port, []byte{0xf8, 0x03}, 0o644); err != nil { // 0x3f8: COM1
			return nil, err
		}
		args = append(args, "-fw_cfg", "name=etc/sercon-port,file="+port)
	}
	if v.UEFI {
		code, varsTemplate := OVMFCode, OVMFVars
		if v.SecureBoot {
			code, varsTemplate = OVMFCodeSecure, OVMFVarsMS
			// Only SMM code may write the flash: the guest cannot turn
			// Secure Boot off behind the firmware's back.
			args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		vars := filepath.Join(dir, "vm-"+v.Name+".OVMF_VARS.fd")
		if err := copyFile(varsTemplate, vars); err != nil {
			return nil, fmt.Errorf("OVMF vars (Debian package ovmf): %w", err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	if v.HTTPBoot {
		// OVMF reads these at boot (OvmfPkg/RUNTIME_CONFIG.md): no PXE over
		// IPv4, no IPv6 at all, so HTTP boot over IPv4 is all that is left.
		args = append(args,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=n")
	}
	return args, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
