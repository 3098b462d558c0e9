package main

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

const secureSite = `server: {interface: br0, address: 198.18.0.1}
dhcp: {mode: full, subnet: 198.18.0.0/24}
boot: {secure_boot: true, shim: SHIM, grub: GRUB}
cluster: {install_mode: disk, install_disk: /dev/vda}
assets: {flatcar: {version: 4152.2.0}}
machines:
  - {mac: "52:54:00:e2:e0:05", hostname: nuc1, ip: 198.18.0.15, role: server}
  - {mac: "52:54:00:e2:e0:06", hostname: nuc2, ip: 198.18.0.16, role: agent, secure_boot: false}
`

func secureConfig(t *testing.T, shim, grub string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("site.yaml", []byte(strings.NewReplacer("SHIM", shim, "GRUB", grub).Replace(secureSite)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSecureBootFiles: flint serves the signed stages by the names Shim and
// GRUB ask for, and does not start without them.
func TestSecureBootFiles(t *testing.T) {
	dir := t.TempDir()
	shim, grub := filepath.Join(dir, "shimx64.efi.signed"), filepath.Join(dir, "grubnetx64.efi.signed")
	if _, err := secureBootFiles(secureConfig(t, shim, grub)); err == nil || !strings.Contains(err.Error(), "boot.shim "+shim) || !strings.Contains(err.Error(), "install Debian's shim-signed") {
		t.Errorf("missing Shim: %v", err)
	}
	for _, p := range []string{shim, grub} {
		if err := os.WriteFile(p, []byte("MZ"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	named, err := secureBootFiles(secureConfig(t, shim, grub))
	if err != nil {
		t.Fatal(err)
	}
	if named["shimx64.efi"].Path != shim || named["grubx64.efi"].Path != grub || !strings.Contains(string(named["grub/grub.cfg"].Data), "source ${prefix}/machines/${net_default_mac}/grub.cfg") || len(named) != 3 {
		t.Errorf("named files: %+v", named)
	}
	cfg := secureConfig(t, shim, grub)
	cfg.Boot.SecureBoot = false
	if named, err := secureBootFiles(cfg); named != nil || err != nil {
		t.Errorf("without Secure Boot machines: %v, %v", named, err)
	}
}

// TestGrubConfigs: /grub/machines/MAC/grub.cfg over TFTP is the lifecycle's
// decision for that machine and address, like its iPXE script: a config
// with a fresh boot token, a refusal from another address, the disk once
// installed, nothing for a MAC outside the config.
func TestGrubConfigs(t *testing.T) {
	cfg := secureConfig(t, "/s", "/g")
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var known []store.KnownMachine
	for _, m := range cfg.Machines {
		known = append(known, store.KnownMachine{MAC: m.MAC, Hostname: m.Hostname, Role: m.Role, ReservedIP: m.IPAddr})
	}
	if err := st.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	// The address flint leased it: the lifecycle answers only from there.
	now := time.Now()
	if err := st.PutLease(store.Lease{IP: netip.MustParseAddr("198.18.0.15"), MAC: "52:54:00:e2:e0:05", State: store.LeaseBound, Start: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	lc, err := lifecycle.New(cfg, st, lifecycle.Options{ReportKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	gen := grubConfigs(cfg, lc, slog.New(slog.DiscardHandler))
	own := netip.MustParseAddr("198.18.0.15")
	const name = "grub/machines/52:54:00:e2:e0:05/grub.cfg"

	got, err := gen(own, name)
	if err != nil {
		t.Fatal(err)
	}
	tok := regexp.MustCompile(`ignition\.config\.url=http://198\.18\.0\.1:8080/ignition\?mac=52-54-00-e2-e0-05&token=[0-9a-f]{64}'`)
	if !tok.Match(got) || !strings.Contains(string(got), "linux '/assets/flatcar/flatcar_production_pxe.vmlinuz'") {
		t.Errorf("nuc1's GRUB config:\n%s", got)
	}
	if again, _ := gen(own, name); string(again) == string(got) {
		t.Error("two requests, one boot token")
	}
	if _, err := gen(netip.MustParseAddr("198.18.0.99"), name); err == nil || !strings.HasPrefix(err.Error(), "refused: ") {
		t.Errorf("from another address: %v", err)
	}
	for _, bad := range []string{"grub/machines/52:54:00:e2:e0:99/grub.cfg", "grub/machines/nonsense/grub.cfg", "grub/machines/52:54:00:e2:e0:05/other.cfg"} {
		if _, err := gen(own, bad); err == nil || !strings.HasPrefix(err.Error(), "file not found") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if _, err := st.UpdateMachine("52:54:00:e2:e0:05", func(m *store.Machine) error { m.State = store.StateInstalled; return nil }); err != nil {
		t.Fatal(err)
	}
	local, err := gen(own, name)
	if err != nil || !strings.HasSuffix(string(local), "exit 1\n") || strings.Contains(string(local), "linux") {
		t.Errorf("installed: %v\n%s", err, local)
	}
	// The timeline says how the decisions were asked for.
	evs, err := st.Events("52:54:00:e2:e0:05")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range evs {
		names = append(names, e.Event)
	}
	if got := strings.Join(names, ", "); !strings.Contains(got, "tftp grub config, tftp grub config") || !strings.Contains(got, "tftp grub config refused") ||
		!strings.Contains(got, "tftp grub config (boot disk)") || strings.Contains(got, "http script") {
		t.Errorf("timeline: %s", got)
	}
}
