package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/tftp"
)

// Names the Secure Boot chain asks flint's TFTP server for: the firmware
// loads Shim by the name DHCP gave it (dhcp.FileShim); Shim loads
// grubx64.efi from the same server and directory; Debian's signed network
// GRUB has the built-in prefix /grub, reads /grub/x86_64-efi/grub.cfg if it
// exists, else /grub/grub.cfg. Then /grub/machines/MAC/grub.cfg
// (ipxe.GrubMachinePrefix) and the kernel and initrd under /assets/. What
// else they ask for is optional and not found: Shim's revocations_sku.efi,
// revocations_sbat.efi and shim_certificate_0.efi, GRUB's module lists
// /grub/x86_64-efi/*.lst (every module it has is built in).
const (
	tftpShim    = "shimx64.efi"
	tftpGrub    = "grubx64.efi"
	tftpGrubCfg = "grub/grub.cfg"
	tftpAssets  = "assets/"
)

// secureBootFiles are the TFTP files of the Secure Boot chain, or nil when no
// machine uses it. flint refuses to start without the signed binaries rather
// than have Secure Boot machines fail at their first boot.
func secureBootFiles(cfg *config.Config) (map[string]tftp.Named, error) {
	if !cfg.UsesSecureBoot() {
		return nil, nil
	}
	for _, f := range []struct{ field, path, pkg string }{
		{"boot.shim", cfg.Boot.Shim, "shim-signed"},
		{"boot.grub", cfg.Boot.Grub, "grub-efi-amd64-signed"},
	} {
		fi, err := os.Stat(f.path)
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("not a regular file")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: secure_boot is on but %s %s cannot be served: %v; install Debian's %s or point %s at the signed binary", cfg.Source, f.field, f.path, err, f.pkg, f.field)
		}
	}
	return map[string]tftp.Named{
		tftpShim:    {Path: cfg.Boot.Shim},
		tftpGrub:    {Path: cfg.Boot.Grub},
		tftpGrubCfg: {Data: []byte(ipxe.GrubChain())},
	}, nil
}

// grubConfigs answers /grub/machines/MAC/grub.cfg over TFTP with what the
// lifecycle decides for the machine, asked from the client's address: the
// same decision as its iPXE script (a fresh boot token, the local disk once
// installed, or a refusal), written for GRUB. A refusal is the TFTP error.
func grubConfigs(cfg *config.Config, lc *lifecycle.Manager, log *slog.Logger) func(netip.Addr, string) ([]byte, error) {
	return func(client netip.Addr, name string) ([]byte, error) {
		raw, file, _ := strings.Cut(strings.TrimPrefix(name, ipxe.GrubMachinePrefix), "/")
		mac, err := config.ParseMAC(raw)
		if err != nil || file != "grub.cfg" {
			return nil, fmt.Errorf("file not found: %s (flint serves /%sMAC/grub.cfg)", name, ipxe.GrubMachinePrefix)
		}
		d := lc.ScriptAs(mac, client, lifecycle.EventGrubConfig)
		switch d.Verdict {
		case lifecycle.ScriptUnknown:
			log.Info("tftp: GRUB config requested for a MAC not in the config", "mac", mac, "remote", client)
			return nil, fmt.Errorf("file not found: MAC %s is not in flint's config", mac)
		case lifecycle.ScriptLocal:
			log.Info("tftp: GRUB config: local disk", "machine", d.Machine.Hostname, "mac", mac, "remote", client, "reason", d.Reason)
			return []byte(ipxe.GrubLocalBoot(d.Machine.Hostname, d.Machine.MAC)), nil
		case lifecycle.ScriptRefuse:
			return nil, fmt.Errorf("refused: %s", d.Reason)
		case lifecycle.ScriptWait:
			return nil, fmt.Errorf("not now: %s", d.Reason)
		}
		log.Info("tftp: GRUB config", "machine", d.Machine.Hostname, "mac", mac, "remote", client)
		return []byte(ipxe.GrubMachine(cfg, d.Machine, d.Token)), nil
	}
}
