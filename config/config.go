// Package config loads and validates flint's site file: the server, the DHCP
// network and the machines it boots. Every error names the YAML field and line.
package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Roles a machine can have.
const (
	RoleServer = "server" // etcd member + K3s server
	RoleAgent  = "agent"  // K3s agent
)

// DHCP modes.
const (
	ModeFull  = "full"  // flint owns the subnet's addresses
	ModeProxy = "proxy" // another server hands out addresses; flint adds boot info
	ModeOff   = "off"   // no DHCP at all (an external DHCP server points at flint)
)

// Config is the whole site file.
type Config struct {
	Server   Server    `yaml:"server"`
	DHCP     DHCP      `yaml:"dhcp"`
	IPXE     IPXE      `yaml:"ipxe"`
	Boot     Boot      `yaml:"boot"`
	Cluster  Cluster   `yaml:"cluster"`
	Assets   Assets    `yaml:"assets"`
	Security Security  `yaml:"security"`
	Limits   Limits    `yaml:"limits"`
	Store    Store     `yaml:"store"`
	Machines []Machine `yaml:"machines"`

	// Source is the file name the config came from ("<embedded default>" for the built-in one).
	Source string `yaml:"-"`
	// Warnings found while validating that do not stop flint (e.g. an even number of etcd members).
	Warnings []Problem `yaml:"-"`

	// idx finds machines by key; Parse builds it (see index).
	idx *machineIndex
	// snx finds subnets by address and machines by switch port; Parse builds it.
	snx *subnetIndex
	// lines maps field paths to their lines, for checks made after Parse.
	lines map[string]int
}

// line is the line of field (or its nearest parent) in the config file, 0
// when unknown.
func (c *Config) line(field string) int {
	ch := checker{lines: c.lines}
	return ch.line(field)
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Server is where flint listens and how machines reach it.
type Server struct {
	// Interface is the provisioning NIC: the DHCP server and (unless Listen
	// names an address) the TFTP server bind to it (SO_BINDTODEVICE). Empty:
	// all interfaces.
	Interface string `yaml:"interface"`
	// Address machines use to reach flint (next-server, option 54, URLs). Empty: the
	// first IPv4 address of Interface, or of the first non-loopback interface.
	Address string `yaml:"address"`
	// Listen is the IP the HTTP and TFTP servers bind to. Empty: all addresses.
	Listen   string `yaml:"listen"`
	HTTPPort int    `yaml:"http_port"`
	// HTTPSPort serves what must not cross the network in clear: the configs
	// that hold a machine's secrets, node reports and the admin API.
	HTTPSPort int `yaml:"https_port"`
	TFTPPort  int `yaml:"tftp_port"`
	DHCPPort  int `yaml:"dhcp_port"`
	ProxyPort int `yaml:"proxy_port"` // PXE boot-server port (proxy mode), normally 4011

	// Parsed forms, filled by Validate.
	AddressIP netip.Addr `yaml:"-"`
}

// DHCP describes the network flint serves.
type DHCP struct {
	Mode   string   `yaml:"mode"`
	Subnet string   `yaml:"subnet"`
	Pool   *Pool    `yaml:"pool"`
	Router string   `yaml:"router"`
	DNS    []string `yaml:"dns"`
	Domain string   `yaml:"domain"`
	// LeaseTime of addresses handed out in full mode (Go duration: 1h, 30m).
	LeaseTime Duration `yaml:"lease_time"`
	// OfferHold is how long an offered address stays reserved for the client it was offered to.
	OfferHold Duration `yaml:"offer_hold"`
	// DeclineHold is how long an address a client DECLINEd stays out of the pool.
	DeclineHold Duration `yaml:"decline_hold"`
	// DiscoverUnknown makes flint boot machines that are not in the config (proxy and full mode).
	DiscoverUnknown bool `yaml:"discover_unknown"`
	// Subnets are several networks flint serves in full mode, its own
	// segment and those behind DHCP relays; the single Subnet (with Pool,
	// Router and DNS) is the one-network form of the same.
	Subnets []Subnet `yaml:"subnets"`

	// Networks are the subnets served, parsed: Subnets, or the one of
	// Subnet. Filled by Validate.
	Networks []Subnet `yaml:"-"`
	// Parsed forms of the single-subnet form, filled by Validate.
	SubnetPrefix netip.Prefix `yaml:"-"`
	RouterIP     netip.Addr   `yaml:"-"`
	DNSIPs       []netip.Addr `yaml:"-"`
}

// Pool is an inclusive range of addresses for machines without a reservation.
type Pool struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`

	StartIP netip.Addr `yaml:"-"`
	EndIP   netip.Addr `yaml:"-"`
}

// Contains reports whether ip lies in the pool.
func (p *Pool) Contains(ip netip.Addr) bool {
	return p != nil && p.StartIP.IsValid() && ip.Compare(p.StartIP) >= 0 && ip.Compare(p.EndIP) <= 0
}

// IPXE says where the first-stage iPXE binaries come from.
type IPXE struct {
	// Directory holding undionly.kpxe, ipxe.efi, snponly.efi (and arm64 builds).
	// Empty: the Debian ipxe package's files (/usr/lib/ipxe).
	Directory string `yaml:"directory"`
}

// Boot is what the per-machine iPXE script loads, unless a machine overrides it.
type Boot struct {
	// Kernel and Initrd are paths under /assets/ (or absolute http(s) URLs).
	Kernel string `yaml:"kernel"`
	Initrd string `yaml:"initrd"`
	// KernelArgs are appended to every machine's kernel command line.
	KernelArgs []string `yaml:"kernel_args"`
	// AssetsDir is the directory /assets/ serves. Empty: DATA/assets.
	AssetsDir string `yaml:"assets_dir"`
	// SecureBoot boots every machine (unless it says otherwise) through a
	// signed chain instead of iPXE: UEFI PXE loads Shim over TFTP, Shim loads
	// GRUB, GRUB loads the machine's GRUB config from flint over HTTP and
	// boots a kernel signed by a key Shim trusts.
	SecureBoot bool `yaml:"secure_boot"`
	// Shim and Grub are the signed first and second stages. Empty: Debian's
	// shim-signed and grub-efi-amd64-signed files.
	Shim string `yaml:"shim"`
	Grub string `yaml:"grub"`
}

// Cluster is what every node's Ignition config shares.
type Cluster struct {
	// Name identifies the cluster; the etcd initial-cluster token is derived from it.
	Name string `yaml:"name"`
	// Domain makes node FQDNs (hostname.domain). Empty: dhcp.domain.
	Domain string `yaml:"domain"`
	// ButaneVersion of the profiles' `variant: flatcar` (1.0.0 -> Ignition 3.3.0, 1.1.0 -> 3.4.0).
	ButaneVersion string `yaml:"butane_version"`
	// RegistrationAddress agents use to join (K3S_URL) and servers put in their TLS SANs.
	// Empty: the first server's IP.
	RegistrationAddress string `yaml:"registration_address"`
	// SSHAuthorizedKeys for the `core` user on every node.
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
	// ProfilesDir holds Butane templates that override or add to the embedded ones, by name.
	ProfilesDir string `yaml:"profiles_dir"`
	// Assets are paths under /assets/ for the binaries the profiles install.
	Assets ClusterAssets `yaml:"assets"`
	// InstallMode is how machines run Flatcar: "disk" (the default: etcd data
	// survives a power cut) installs it on InstallDisk and boots from disk
	// afterwards; "live" PXE-boots it into RAM on every boot.
	InstallMode string `yaml:"install_mode"`
	// InstallDisk is the disk flatcar-install writes (a /dev/disk/by-id path is safest).
	InstallDisk string `yaml:"install_disk"`
	// InstallTimeout is how long a machine may stay installing (its config
	// served, no report yet) before flint marks it stuck.
	InstallTimeout Duration `yaml:"install_timeout"`

	RegistrationIP netip.Addr `yaml:"-"`
}

// ClusterAssets names the files under the assets directory that nodes download.
type ClusterAssets struct {
	K3s     string `yaml:"k3s"`
	Etcd    string `yaml:"etcd"`
	Etcdctl string `yaml:"etcdctl"`
}

// Assets says which upstream releases `flint assets sync` mirrors and from where.
type Assets struct {
	Flatcar FlatcarSource `yaml:"flatcar"`
	K3s     K3sSource     `yaml:"k3s"`
	Etcd    EtcdSource    `yaml:"etcd"`
}

// FlatcarSource is a Flatcar release: PXE kernel/initrd and the disk image.
type FlatcarSource struct {
	Channel string `yaml:"channel"` // stable, beta, alpha, lts
	Version string `yaml:"version"` // e.g. 4152.2.0 (never "current": installs must be reproducible)
	Arch    string `yaml:"arch"`    // amd64-usr or arm64-usr
	// BaseURL holds VERSION/ directories (upstream: https://CHANNEL.release.flatcar-linux.net/ARCH).
	BaseURL string `yaml:"base_url"`
	// SigningKey is an ASCII-armored OpenPGP public key file that signs the release.
	SigningKey string `yaml:"signing_key"`
	// InstallImage mirrors flatcar_production_image.bin.bz2 even when no machine
	// installs to disk (AssetSources adds it when one does).
	InstallImage bool `yaml:"install_image"`
}

// K3sSource is a K3s release.
type K3sSource struct {
	Version string `yaml:"version"` // e.g. v1.31.4+k3s1
	// BaseURL holds VERSION/ directories (upstream: GitHub release downloads).
	BaseURL      string `yaml:"base_url"`
	AirgapImages bool   `yaml:"airgap_images"` // also mirror k3s-airgap-images-amd64.tar.zst
}

// EtcdSource is an etcd release.
type EtcdSource struct {
	Version string `yaml:"version"` // e.g. v3.5.17
	BaseURL string `yaml:"base_url"`
}

// Security tunes how flint hands out secrets.
type Security struct {
	// TokenTTL is how long a boot token (in a machine's iPXE script) can fetch
	// that machine's config; it is spent by the first config it fetches.
	TokenTTL Duration `yaml:"token_ttl"`
}

// Limits bound what a flood of hostile packets can make flint hold. Known
// machines are never evicted or refused by them.
type Limits struct {
	// DiscoveredMachines caps the records of MACs that are not in the config;
	// beyond it the least recently seen are forgotten.
	DiscoveredMachines int `yaml:"discovered_machines"`
	// UnknownEventsPerMinute is how many events about unknown MACs one source
	// (an address, or DHCP as a whole) may add to flint's state per minute.
	UnknownEventsPerMinute int `yaml:"unknown_events_per_minute"`
	// TimelineEvents bounds each machine's boot timeline; the oldest go first.
	TimelineEvents int `yaml:"timeline_events"`
	// PendingEvents bounds the timeline events waiting for their batch
	// write; beyond it they are dropped and counted.
	PendingEvents int `yaml:"pending_events"`
	// EventStreams bounds the dashboard's live streams open at once
	// (/api/v1/stream); beyond it a new one is refused with 503.
	EventStreams int `yaml:"event_streams"`
	// RenderedConfigs bounds the rendered Ignition configs kept in memory;
	// others are rendered when asked for.
	RenderedConfigs int `yaml:"rendered_configs"`
	// RenderedConfigMiB bounds the bytes of those configs, in MiB: a profile
	// that embeds large files makes each config big.
	RenderedConfigMiB int `yaml:"rendered_config_mib"`
	// TFTPTransfers caps concurrent TFTP transfers; TFTPTransfersPerClient
	// caps those of one client address.
	TFTPTransfers          int `yaml:"tftp_transfers"`
	TFTPTransfersPerClient int `yaml:"tftp_transfers_per_client"`
	// HTTPConnections caps open HTTP(S) connections per listener;
	// HTTPConnectionsPerClient caps those of one client address.
	HTTPConnections          int `yaml:"http_connections"`
	HTTPConnectionsPerClient int `yaml:"http_connections_per_client"`
}

// Store backends.
const (
	StoreBolt = "bolt" // DATA/flint.db, one flint per data directory
	StoreEtcd = "etcd" // an etcd cluster several flint instances share
)

// Store says where flint keeps leases, machine records and timelines.
type Store struct {
	// Backend is bolt (the default) or etcd.
	Backend string `yaml:"backend"`
	// Endpoints are the etcd members' client URLs (https://host:2379).
	Endpoints []string `yaml:"endpoints"`
	// CAFile verifies the members; CertFile and KeyFile are flint's client
	// certificate (PEM files; the key 0600).
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Prefix goes before every key flint writes (default /flint/): sites
	// sharing an etcd each take their own.
	Prefix string `yaml:"prefix"`
	// EncryptionKeyFile holds the 32-byte key that seals flint's PKI (CA,
	// keys, tokens, node passwords) in etcd (0600; see ReadEncryptionKey).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
}

// Machine is one box flint knows by MAC.
type Machine struct {
	MAC      string `yaml:"mac"`
	Hostname string `yaml:"hostname"`
	IP       string `yaml:"ip"`
	Role     string `yaml:"role"`
	// Per-machine overrides.
	IPXEBinary string   `yaml:"ipxe_binary"` // e.g. snponly.efi for NICs that need it
	KernelArgs []string `yaml:"kernel_args"` // appended after boot.kernel_args
	Kernel     string   `yaml:"kernel"`
	Initrd     string   `yaml:"initrd"`
	// Profile is the template this machine renders; empty: its role.
	Profile string `yaml:"profile"`
	// InstallMode and InstallDisk override the cluster's.
	InstallMode string `yaml:"install_mode"`
	InstallDisk string `yaml:"install_disk"`
	// SecureBoot overrides boot.secure_boot for this machine.
	SecureBoot *bool `yaml:"secure_boot"`
	// BMC is the machine's baseboard management controller, for flint power
	// and flint reprovision --reboot; nil: none.
	BMC *BMC `yaml:"bmc"`
	// Relay identifies the machine by the switch port a DHCP relay reports
	// (option 82) instead of by MAC: whichever box is plugged into that port
	// gets this machine's address. Full mode only.
	Relay *Relay `yaml:"relay"`

	HW     MAC        `yaml:"-"` // MAC, parsed
	IPAddr netip.Addr `yaml:"-"`
	Line   int        `yaml:"-"` // line of the machine's entry, for messages
}

// Duration is a time.Duration written as "1h", "30s" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string; the error carries the line, which
// yaml.v3 does not add to errors of custom unmarshalers.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a duration like 1h, 30m or 45s", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
