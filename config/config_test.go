package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const goodConfig = `server:
  interface: veth0
  address: 198.18.0.1
dhcp:
  mode: full
  subnet: 198.18.0.0/24
  router: 198.18.0.254
  dns: [198.18.0.254]
  pool: {start: 198.18.0.100, end: 198.18.0.150}
  lease_time: 2h
machines:
  - {mac: "52:54:00:00:00:60", hostname: nuc1, ip: 198.18.0.60, role: server}
  - {mac: "52:54:00:00:00:61", hostname: nuc2, ip: 198.18.0.61, role: server}
  - {mac: "52-54-00-00-00-62", hostname: nuc3, ip: 198.18.0.62, role: server}
  - mac: "52:54:00:00:00:70"
    hostname: nuc4
    ip: 198.18.0.70
    role: agent
    ipxe_binary: snponly.efi
cluster: {install_mode: disk, install_disk: /dev/disk/by-id/nvme-NUC}
assets: {flatcar: {version: 4152.2.0}}
`

func TestParseGoodConfig(t *testing.T) {
	cfg, err := Parse("good.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", cfg.Warnings)
	}
	if got := cfg.Server.AddressIP.String(); got != "198.18.0.1" {
		t.Errorf("address = %s", got)
	}
	if cfg.DHCP.LeaseTime.Duration != 2*time.Hour || cfg.DHCP.OfferHold.Duration != DefaultOfferHold {
		t.Errorf("lease %v, offer hold %v", cfg.DHCP.LeaseTime, cfg.DHCP.OfferHold)
	}
	if cfg.Server.HTTPPort != DefaultHTTPPort || cfg.Server.ProxyPort != DefaultProxyPort || cfg.Server.HTTPSPort != DefaultHTTPSPort {
		t.Errorf("ports not defaulted: %+v", cfg.Server)
	}
	if cfg.Security.TokenTTL.Duration != DefaultTokenTTL || cfg.Limits.DiscoveredMachines != DefaultDiscoveredMachines ||
		cfg.Limits.TFTPTransfersPerClient != DefaultTFTPTransfersPerClient || cfg.Limits.HTTPConnections != DefaultHTTPConnections ||
		cfg.Limits.RenderedConfigMiB != DefaultRenderedConfigMiB || cfg.Cluster.InstallTimeout.Duration != DefaultInstallTimeout {
		t.Errorf("security/limits not defaulted: %+v %+v", cfg.Security, cfg.Limits)
	}
	if got := cfg.HTTPSBaseURL(); got != "https://198.18.0.1:8443" {
		t.Errorf("HTTPSBaseURL = %s", got)
	}
	// Hyphenated MACs are normalised so lookups by the wire form work.
	hw, _ := ParseMAC("52:54:00:00:00:62")
	m, ok := cfg.MachineByMAC(hw)
	if !ok || m.Hostname != "nuc3" || m.MAC != "52:54:00:00:00:62" {
		t.Fatalf("MachineByMAC = %+v, %v", m, ok)
	}
	if m.Line != 14 {
		t.Errorf("nuc3 line = %d, want 14", m.Line)
	}
	if !cfg.DHCP.Pool.Contains(cfg.DHCP.Pool.StartIP) || cfg.DHCP.Pool.Contains(cfg.Machines[0].IPAddr) {
		t.Error("pool bounds wrong")
	}
	if got := cfg.HTTPBaseURL(); got != "http://198.18.0.1:8080" {
		t.Errorf("HTTPBaseURL = %s", got)
	}
	if len(cfg.Servers()) != 3 {
		t.Errorf("servers = %d", len(cfg.Servers()))
	}
}

// Every bad config must fail naming the field and the line a person would edit.
func TestParseRejects(t *testing.T) {
	cases := []struct {
		name, replace, with string
		want                string // "line: field: message part"
	}{
		{"duplicate MAC", `"52:54:00:00:00:61"`, `"52:54:00:00:00:60"`, `:13: machines[1].mac: MAC 52:54:00:00:00:60 is also used by machines[0]`},
		{"duplicate IP", `ip: 198.18.0.61`, `ip: 198.18.0.60`, `:13: machines[1].ip: address 198.18.0.60 is also reserved for machines[0]`},
		{"duplicate hostname", `hostname: nuc2`, `hostname: nuc1`, `:13: machines[1].hostname: hostname nuc1 is also used`},
		{"IP outside subnet", `ip: 198.18.0.61`, `ip: 198.19.0.61`, `:13: machines[1].ip: 198.19.0.61 is outside subnet 198.18.0.0/24`},
		{"IP inside pool", `ip: 198.18.0.70`, `ip: 198.18.0.120`, `:17: machines[3].ip: 198.18.0.120 is inside the pool`},
		{"unknown role", `role: agent`, `role: worker`, `:18: machines[3].role: unknown role "worker"`},
		{"bad MAC", `"52:54:00:00:00:70"`, `"52:54:00:00:70"`, `:15: machines[3].mac: "52:54:00:00:70" is not an Ethernet MAC`},
		{"bad iPXE binary", `snponly.efi`, `grub.efi`, `:19: machines[3].ipxe_binary: unknown iPXE binary "grub.efi"`},
		{"bad mode", `mode: full`, `mode: fancy`, `:5: dhcp.mode: unknown mode "fancy"`},
		{"bad subnet", `subnet: 198.18.0.0/24`, `subnet: 198.18.0.0/33`, `:6: dhcp.subnet:`},
		{"pool outside subnet", `end: 198.18.0.150`, `end: 198.18.1.150`, `:9: dhcp.pool.end: 198.18.1.150 is outside subnet`},
		{"pool reversed", `start: 198.18.0.100`, `start: 198.18.0.200`, `:9: dhcp.pool: pool end 198.18.0.150 is before its start`},
		{"bad lease time", `lease_time: 2h`, `lease_time: forever`, `:10: dhcp.lease_time: "forever" is not a duration like 90s, 30m or 2h`},
		{"router outside subnet", `router: 198.18.0.254`, `router: 198.19.0.254`, `:7: dhcp.router: 198.19.0.254 is outside subnet`},
		{"server address outside subnet", `address: 198.18.0.1`, `address: 198.19.0.1`, `:3: server.address: 198.19.0.1 is outside subnet`},
		{"unknown field", `    ipxe_binary: snponly.efi`, `    ipxe_binray: snponly.efi`, `:19: machines[3].ipxe_binray: unknown key (did you mean ipxe_binary?); machines[3] takes: mac, hostname, ip, role, ipxe_binary,`},
		{"bad yaml", `dhcp:`, `dhcp: [`, `(yaml)`},
		{"kernel arg with space", `    ipxe_binary: snponly.efi`, "    ipxe_binary: snponly.efi\n    kernel_args: [\"console=ttyS0 quiet\"]", `:20: machines[3].kernel_args[0]: "console=ttyS0 quiet" contains white space`},
		{"kernel arg template typo", `    ipxe_binary: snponly.efi`, "    ipxe_binary: snponly.efi\n    kernel_args: [\"name={{.Hostnmae}}\"]", `:20: machines[3].kernel_args[0]: kernel argument "name={{.Hostnmae}}"`},
		{"no server", `role: server}`, `role: agent}`, `machines: no machine has role server`},
		{"https port clash", `address: 198.18.0.1`, "address: 198.18.0.1\n  http_port: 8443", `:1: server.https_port: must differ from server.http_port (8443)`},
		{"token ttl too short", `assets: {flatcar`, "security: {token_ttl: 10s}\nassets: {flatcar", `:21: security.token_ttl: 10s is too short`},
		{"token ttl too long", `assets: {flatcar`, "security: {token_ttl: 48h}\nassets: {flatcar", `:21: security.token_ttl: 48h0m0s is too long`},
		{"install timeout too short", `install_mode: disk`, "install_mode: disk, install_timeout: 1m", `:20: cluster.install_timeout: 1m0s is too short`},
		{"negative limit", `assets: {flatcar`, "limits:\n  tftp_transfers: -1\nassets: {flatcar", `:22: limits.tftp_transfers: -1 is out of range`},
		{"huge config cache", `assets: {flatcar`, "limits:\n  rendered_config_mib: 100000\nassets: {flatcar", `:22: limits.rendered_config_mib: 100000 is out of range 1-65536`},
		{"per-client above total", `assets: {flatcar`, "limits:\n  http_connections: 10\n  http_connections_per_client: 20\nassets: {flatcar", `:23: limits.http_connections_per_client: 20 is more than limits.http_connections (10)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.ReplaceAll(goodConfig, tc.replace, tc.with)
			if text == goodConfig {
				t.Fatalf("replacement %q not found", tc.replace)
			}
			_, err := Parse("site.yaml", []byte(text))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestEvenServersWarns(t *testing.T) {
	text := strings.Replace(goodConfig, "role: server}", "role: agent}", 1)
	cfg, err := Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Message, "2 servers make an even number") {
		t.Fatalf("warnings = %v", cfg.Warnings)
	}
}

func TestProxyModeNeedsNoSubnet(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte("dhcp: {mode: proxy}\ncluster: {install_mode: live}\nmachines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DHCP.Mode != ModeProxy || cfg.DHCP.SubnetPrefix.IsValid() {
		t.Fatalf("mode %s subnet %v", cfg.DHCP.Mode, cfg.DHCP.SubnetPrefix)
	}
	_, err = Parse("f.yaml", []byte("dhcp: {mode: full}\ncluster: {install_mode: live}\nmachines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n"))
	if err == nil || !strings.Contains(err.Error(), "dhcp.subnet: full mode needs the subnet") {
		t.Fatalf("full mode without subnet: %v", err)
	}
}

func TestShippedExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../deploy/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		cfg, err := LoadFile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(cfg.Warnings) > 0 {
			t.Errorf("%s warns: %v", f, cfg.Warnings)
		}
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want not-exist error, got %v", err)
	}
}

func TestLiveServersWarn(t *testing.T) {
	text := strings.Replace(goodConfig, "install_mode: disk", "install_mode: live", 1)
	cfg, err := Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Message, "etcd members nuc1, nuc2, nuc3 run live") {
		t.Fatalf("warnings = %v", cfg.Warnings)
	}
	text = strings.Replace(goodConfig, "assets: {flatcar: {version: 4152.2.0}}", "", 1)
	if _, err := Parse("site.yaml", []byte(text)); err == nil || !strings.Contains(err.Error(), "assets.flatcar.version: disk installs (install_mode: disk, the default) need the Flatcar version") {
		t.Fatalf("disk install without a version: %v", err)
	}
}

// A config that exists but cannot be read is not a missing one: the advice
// is about users and modes, not about passing another file.
func TestLoadFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadFile(dir)
	if err == nil || !strings.Contains(err.Error(), "that is a directory: pass the config file in it") {
		t.Fatalf("a directory as the config: %v", err)
	}
	denied := readError(&fs.PathError{Op: "open", Path: "/etc/flint/site.yaml", Err: syscall.EACCES})
	if !errors.Is(denied, fs.ErrPermission) || !strings.Contains(denied.Error(), "run flint as a user that can, or fix its owner or mode") ||
		strings.Contains(denied.Error(), "pass an existing file") {
		t.Fatalf("permission denied: %v", denied)
	}
	if os.Geteuid() != 0 { // root reads whatever the mode says
		path := filepath.Join(dir, "site.yaml")
		if err := os.WriteFile(path, []byte(goodConfig), 0o000); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "fix its owner or mode") {
			t.Fatalf("unreadable file: %v", err)
		}
	}
}

// The default install mode is disk (etcd data survives a power cut), and
// what `flint assets sync` fetches follows the machines' modes: the disk
// image when one installs to disk, without assets.flatcar.install_image.
func TestDefaultInstallIsDisk(t *testing.T) {
	const site = "assets: {flatcar: {version: 4152.2.0}}\nmachines:\n" +
		"  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n" +
		"  - {mac: '52:54:00:00:00:02', hostname: b, ip: 198.18.0.10, role: agent, install_mode: MODE}\n"
	t.Run("no install_mode: disk, no warning, the image is synced", func(t *testing.T) {
		cfg, err := Parse("site.yaml", []byte(strings.Replace(site, "MODE", "live", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.InstallModeOf(&cfg.Machines[0]); got != InstallDisk {
			t.Errorf("server a: install mode %q, want disk", got)
		}
		if got := cfg.InstallModeOf(&cfg.Machines[1]); got != InstallLive {
			t.Errorf("agent b: install mode %q, want its own live", got)
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("warnings = %v, want none (no server runs live)", cfg.Warnings)
		}
		if !cfg.DiskInstalls() || !cfg.AssetSources().Flatcar.InstallImage {
			t.Errorf("a disk install: DiskInstalls %v, AssetSources().Flatcar.InstallImage %v, want both true", cfg.DiskInstalls(), cfg.AssetSources().Flatcar.InstallImage)
		}
		if cfg.Assets.Flatcar.InstallImage {
			t.Error("AssetSources changed the config's own assets section")
		}
	})
	t.Run("every machine live: no image", func(t *testing.T) {
		cfg, err := Parse("site.yaml", []byte("cluster: {install_mode: live}\n"+strings.Replace(site, "MODE", "live", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DiskInstalls() || cfg.AssetSources().Flatcar.InstallImage {
			t.Errorf("all live: DiskInstalls %v, AssetSources().Flatcar.InstallImage %v, want both false", cfg.DiskInstalls(), cfg.AssetSources().Flatcar.InstallImage)
		}
	})
	t.Run("disk by default without a Flatcar version says what to do", func(t *testing.T) {
		_, err := Parse("site.yaml", []byte(strings.Replace(strings.Replace(site, "MODE", "live", 1), "assets: {flatcar: {version: 4152.2.0}}\n", "", 1)))
		if err == nil || !strings.Contains(err.Error(), "assets.flatcar.version: disk installs (install_mode: disk, the default)") || !strings.Contains(err.Error(), "install_mode: live") {
			t.Fatalf("want a problem naming assets.flatcar.version, the default and the way out, got %v", err)
		}
	})
}
