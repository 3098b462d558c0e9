package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults applied to fields left empty.
const (
	DefaultHTTPPort  = 8080
	DefaultHTTPSPort = 8443
	DefaultTokenTTL  = 30 * time.Minute
	// DefaultInstallTimeout: a disk install of Flatcar takes minutes; a node
	// with no report after an hour is not coming on its own.
	DefaultInstallTimeout = time.Hour
	DefaultTFTPPort       = 69
	DefaultDHCPPort       = 67
	DefaultProxyPort      = 4011
	DefaultLeaseTime      = time.Hour
	DefaultOfferHold      = 30 * time.Second
	DefaultDeclineHold    = 10 * time.Minute
	DefaultIPXEDir        = "/usr/lib/ipxe"
	DefaultShim           = "/usr/lib/shim/shimx64.efi.signed"                      // Debian shim-signed
	DefaultGrub           = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" // Debian grub-efi-amd64-signed
	DefaultKernel         = "flatcar/flatcar_production_pxe.vmlinuz"
	DefaultInitrd         = "flatcar/flatcar_production_pxe_image.cpio.gz"
	DefaultCluster        = "flint"
	DefaultInstallDisk    = "/dev/nvme0n1" // NUCs' usual disk; prefer a /dev/disk/by-id path
	DefaultButane         = "1.1.0"
	DefaultK3sAsset       = "k3s/k3s"
	DefaultEtcdAsset      = "etcd/etcd"
	DefaultEtcdctl        = "etcd/etcdctl"
	DefaultStorePrefix    = "/flint/"
)

// Default limits (see Limits).
const (
	DefaultDiscoveredMachines       = 1000
	DefaultUnknownEventsPerMinute   = 120
	DefaultTimelineEvents           = 500
	DefaultPendingEvents            = 8192
	DefaultEventStreams             = 16
	DefaultRenderedConfigs          = 4096
	DefaultRenderedConfigMiB        = 64
	DefaultTFTPTransfers            = 512
	DefaultTFTPTransfersPerClient   = 4
	DefaultHTTPConnections          = 4096
	DefaultHTTPConnectionsPerClient = 64
)

// Butane flatcar variant versions flint renders.
var butaneVersions = map[string]bool{"1.0.0": true, "1.1.0": true}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// iPXE binaries a machine may be pinned to.
var knownIPXEBinaries = map[string]bool{
	"undionly.kpxe": true, "ipxe.pxe": true, "ipxe.efi": true, "snponly.efi": true, "ipxe-arm64.efi": true, "snponly-arm64.efi": true,
}

type checker struct {
	lines    map[string]int
	problems []Problem
	warnings []Problem
}

func (c *checker) fail(field, format string, args ...any) {
	c.problems = append(c.problems, Problem{Field: field, Line: c.line(field), Message: fmt.Sprintf(format, args...)})
}

func (c *checker) warn(field, format string, args ...any) {
	c.warnings = append(c.warnings, Problem{Field: field, Line: c.line(field), Message: fmt.Sprintf(format, args...)})
}

// line finds the line of field, or of its nearest parent that has one.
func (c *checker) line(field string) int {
	for f := field; f != ""; {
		if l, ok := c.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

func (c *checker) ip(field, s string) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		c.fail(field, "%q is not an IPv4 address", s)
		return netip.Addr{}
	}
	return a
}

func (cfg *Config) validate(lines map[string]int) error {
	c := &checker{lines: lines}
	cfg.applyDefaults()

	s := &cfg.Server
	if s.Address != "" {
		s.AddressIP = c.ip("server.address", s.Address)
	}
	if s.Listen != "" {
		c.ip("server.listen", s.Listen)
	}
	for field, p := range map[string]int{"server.http_port": s.HTTPPort, "server.https_port": s.HTTPSPort, "server.tftp_port": s.TFTPPort, "server.dhcp_port": s.DHCPPort, "server.proxy_port": s.ProxyPort} {
		if p < 1 || p > 65535 {
			c.fail(field, "port %d is out of range 1-65535", p)
		}
	}
	if s.HTTPPort == s.HTTPSPort {
		c.fail("server.https_port", "must differ from server.http_port (%d)", s.HTTPPort)
	}

	d := &cfg.DHCP
	switch d.Mode {
	case ModeFull, ModeProxy, ModeOff:
	default:
		c.fail("dhcp.mode", "unknown mode %q: use full, proxy or off", d.Mode)
	}
	cfg.validateNetworks(c)
	if s.DHCPPort == s.ProxyPort {
		c.fail("server.proxy_port", "must differ from server.dhcp_port (%d)", s.DHCPPort)
	}
	for name, v := range map[string]time.Duration{"dhcp.lease_time": d.LeaseTime.Duration, "dhcp.offer_hold": d.OfferHold.Duration, "dhcp.decline_hold": d.DeclineHold.Duration} {
		if v <= 0 {
			c.fail(name, "must be a positive duration like 1h or 30s")
		}
	}
	if d.LeaseTime.Duration > 0 && d.LeaseTime.Duration < 30*time.Second {
		c.fail("dhcp.lease_time", "%s is too short: clients would renew several times a minute", d.LeaseTime.Duration)
	}

	c.bootPaths("boot", cfg.Boot.Kernel, cfg.Boot.Initrd, cfg.Boot.KernelArgs)
	cfg.validateSecureBoot(c)
	cfg.validateSecurity(c)
	cfg.validateMachines(c)
	cfg.validateBMCs(c)
	cfg.validateCluster(c)
	cfg.validateAssets(c)
	cfg.validateStore(c)

	cfg.Warnings = c.warnings
	cfg.idx = buildIndex(cfg.Machines)
	cfg.snx = buildSubnetIndex(cfg.DHCP.Networks, cfg.Machines)
	if len(c.problems) > 0 {
		return &Error{Source: cfg.Source, Problems: c.problems}
	}
	return nil
}

func (cfg *Config) applyDefaults() {
	s := &cfg.Server
	if s.HTTPPort == 0 {
		s.HTTPPort = DefaultHTTPPort
	}
	if s.TFTPPort == 0 {
		s.TFTPPort = DefaultTFTPPort
	}
	if s.DHCPPort == 0 {
		s.DHCPPort = DefaultDHCPPort
	}
	if s.ProxyPort == 0 {
		s.ProxyPort = DefaultProxyPort
	}
	if s.HTTPSPort == 0 {
		s.HTTPSPort = DefaultHTTPSPort
	}
	if cfg.Security.TokenTTL.Duration == 0 {
		cfg.Security.TokenTTL.Duration = DefaultTokenTTL
	}
	l := &cfg.Limits
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&l.DiscoveredMachines, DefaultDiscoveredMachines},
		{&l.UnknownEventsPerMinute, DefaultUnknownEventsPerMinute},
		{&l.TimelineEvents, DefaultTimelineEvents},
		{&l.PendingEvents, DefaultPendingEvents},
		{&l.EventStreams, DefaultEventStreams},
		{&l.RenderedConfigs, DefaultRenderedConfigs},
		{&l.RenderedConfigMiB, DefaultRenderedConfigMiB},
		{&l.TFTPTransfers, DefaultTFTPTransfers},
		{&l.TFTPTransfersPerClient, DefaultTFTPTransfersPerClient},
		{&l.HTTPConnections, DefaultHTTPConnections},
		{&l.HTTPConnectionsPerClient, DefaultHTTPConnectionsPerClient},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	d := &cfg.DHCP
	if d.Mode == "" {
		d.Mode = ModeProxy
	}
	if d.LeaseTime.Duration == 0 {
		d.LeaseTime.Duration = DefaultLeaseTime
	}
	if d.OfferHold.Duration == 0 {
		d.OfferHold.Duration = DefaultOfferHold
	}
	if d.DeclineHold.Duration == 0 {
		d.DeclineHold.Duration = DefaultDeclineHold
	}
	if cfg.Store.Backend == "" {
		cfg.Store.Backend = StoreBolt
	}
	if (cfg.Store.Backend == StoreEtcd || len(cfg.Store.Endpoints) > 0) && cfg.Store.Prefix == "" {
		cfg.Store.Prefix = DefaultStorePrefix
	}
	if cfg.IPXE.Directory == "" {
		cfg.IPXE.Directory = DefaultIPXEDir
	}
	if cfg.Boot.Kernel == "" {
		cfg.Boot.Kernel = DefaultKernel
	}
	if cfg.Boot.Shim == "" {
		cfg.Boot.Shim = DefaultShim
	}
	if cfg.Boot.Grub == "" {
		cfg.Boot.Grub = DefaultGrub
	}
	if cfg.Boot.Initrd == "" {
		cfg.Boot.Initrd = DefaultInitrd
	}
	a := &cfg.Assets
	if a.Flatcar.Channel == "" {
		a.Flatcar.Channel = "stable"
	}
	if a.Flatcar.Arch == "" {
		a.Flatcar.Arch = "amd64-usr"
	}
	if a.Flatcar.BaseURL == "" {
		a.Flatcar.BaseURL = "https://" + a.Flatcar.Channel + ".release.flatcar-linux.net/" + a.Flatcar.Arch
	}
	if a.K3s.BaseURL == "" {
		a.K3s.BaseURL = "https://github.com/k3s-io/k3s/releases/download"
	}
	if a.Etcd.BaseURL == "" {
		a.Etcd.BaseURL = "https://github.com/etcd-io/etcd/releases/download"
	}
	cl := &cfg.Cluster
	if cl.Name == "" {
		cl.Name = DefaultCluster
	}
	if cl.Domain == "" {
		cl.Domain = d.Domain
	}
	if cl.ButaneVersion == "" {
		cl.ButaneVersion = DefaultButane
	}
	if cl.InstallMode == "" {
		cl.InstallMode = InstallDisk
	}
	if cl.InstallTimeout.Duration == 0 {
		cl.InstallTimeout.Duration = DefaultInstallTimeout
	}
	if cl.InstallDisk == "" {
		cl.InstallDisk = DefaultInstallDisk
	}
	if cl.Assets.K3s == "" {
		cl.Assets.K3s = DefaultK3sAsset
	}
	if cl.Assets.Etcd == "" {
		cl.Assets.Etcd = DefaultEtcdAsset
	}
	if cl.Assets.Etcdctl == "" {
		cl.Assets.Etcdctl = DefaultEtcdctl
	}
}

func (cfg *Config) validateCluster(c *checker) {
	cl := &cfg.Cluster
	if !hostnameRE.MatchString(cl.Name) {
		c.fail("cluster.name", "%q is not a valid name (lower-case letters, digits and '-')", cl.Name)
	}
	switch t := cl.InstallTimeout.Duration; {
	case t < 5*time.Minute:
		c.fail("cluster.install_timeout", "%s is too short: a disk install takes minutes; use at least 5m (default 1h)", t)
	case t > 7*24*time.Hour:
		c.fail("cluster.install_timeout", "%s is too long: use at most 168h (default 1h)", t)
	}
	if !butaneVersions[cl.ButaneVersion] {
		c.fail("cluster.butane_version", "unsupported Butane flatcar version %q: use 1.0.0 or 1.1.0", cl.ButaneVersion)
	}
	for _, part := range strings.Split(cl.Domain, ".") {
		if cl.Domain != "" && !hostnameRE.MatchString(part) {
			c.fail("cluster.domain", "%q is not a valid DNS domain", cl.Domain)
			break
		}
	}
	for i, k := range cl.SSHAuthorizedKeys {
		f := strings.Fields(k)
		if len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			c.fail(fmt.Sprintf("cluster.ssh_authorized_keys[%d]", i), "not an OpenSSH public key line (like 'ssh-ed25519 AAAA... user@host')")
		}
	}
	if cl.RegistrationAddress != "" {
		cl.RegistrationIP = c.ip("cluster.registration_address", cl.RegistrationAddress)
	} else if servers := cfg.Servers(); len(servers) > 0 {
		cl.RegistrationIP = servers[0].IPAddr
	}
	checkInstall(c, "cluster", cl.InstallMode, cl.InstallDisk)
	disk := false
	for i, m := range cfg.Machines {
		checkInstall(c, fmt.Sprintf("machines[%d]", i), m.InstallMode, m.InstallDisk)
		disk = disk || cfg.InstallModeOf(&cfg.Machines[i]) == InstallDisk
	}
	var live []string
	for i := range cfg.Machines {
		m := &cfg.Machines[i]
		if m.Role == RoleServer && cfg.InstallModeOf(m) == InstallLive {
			live = append(live, m.Hostname)
		}
	}
	if len(live) > 0 {
		c.warn("cluster.install_mode", "etcd members %s run live (from RAM): every reboot wipes a member's data and flint rebuilds it, one server at a time; a power cut of more than one server loses the cluster. Use install_mode: disk for servers", strings.Join(live, ", "))
	}
	if disk && cfg.Assets.Flatcar.Version == "" {
		c.fail("assets.flatcar.version", "disk installs (install_mode: disk, the default) need the Flatcar version flatcar-install writes, the same as the PXE images, e.g. 4152.2.0; or set cluster.install_mode: live to run machines from RAM")
	}
	for field, p := range map[string]string{"cluster.assets.k3s": cl.Assets.K3s, "cluster.assets.etcd": cl.Assets.Etcd, "cluster.assets.etcdctl": cl.Assets.Etcdctl} {
		if strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
			c.fail(field, "%q must be a relative path under the assets directory", p)
		}
	}
}

func (cfg *Config) validateMachines(c *checker) {
	macs := map[string]string{}
	ips := map[netip.Addr]string{}
	names := map[string]string{}
	slots := map[Relay]string{}
	nets := buildSubnetIndex(cfg.DHCP.Networks, nil)
	servers := 0
	for i := range cfg.Machines {
		m := &cfg.Machines[i]
		f := fmt.Sprintf("machines[%d]", i)
		hw, err := ParseMAC(strings.TrimSpace(m.MAC))
		switch {
		case m.MAC == "":
			c.fail(f+".mac", "missing: every machine needs its MAC address")
		case err != nil:
			c.fail(f+".mac", "%q is not an Ethernet MAC address like 52:54:00:12:34:56 or 52-54-00-12-34-56", m.MAC)
		default:
			m.HW = hw
			m.MAC = hw.String()
			if prev, dup := macs[m.MAC]; dup {
				c.fail(f+".mac", "MAC %s is also used by %s", m.MAC, prev)
			}
			macs[m.MAC] = f
		}
		switch {
		case m.Hostname == "":
			c.fail(f+".hostname", "missing: every machine needs a hostname")
		case !hostnameRE.MatchString(m.Hostname):
			c.fail(f+".hostname", "%q is not a valid hostname (lower-case letters, digits and '-', at most 63)", m.Hostname)
		default:
			if prev, dup := names[m.Hostname]; dup {
				c.fail(f+".hostname", "hostname %s is also used by %s", m.Hostname, prev)
			}
			names[m.Hostname] = f
		}
		switch m.Role {
		case RoleServer:
			servers++
		case RoleAgent:
		case "":
			c.fail(f+".role", "missing: use server or agent")
		default:
			c.fail(f+".role", "unknown role %q: use server or agent", m.Role)
		}
		if m.IP == "" {
			c.fail(f+".ip", "missing: every machine needs a reserved address")
		} else if a := c.ip(f+".ip", m.IP); a.IsValid() {
			m.IPAddr = a
			if prev, dup := ips[a]; dup {
				c.fail(f+".ip", "address %s is also reserved for %s", a, prev)
			}
			ips[a] = f
			if a == cfg.Server.AddressIP {
				c.fail(f+".ip", "%s is flint's own address", a)
			}
		}
		cfg.validateMachineNetwork(c, nets, f, m, m.IPAddr, slots)
		c.bootPaths(f, m.Kernel, m.Initrd, m.KernelArgs)
		if m.Profile != "" && !hostnameRE.MatchString(m.Profile) {
			c.fail(f+".profile", "%q is not a profile name (lower-case letters, digits and '-')", m.Profile)
		}
		if m.IPXEBinary != "" && !knownIPXEBinaries[m.IPXEBinary] {
			c.fail(f+".ipxe_binary", "unknown iPXE binary %q: use one of undionly.kpxe, ipxe.pxe, ipxe.efi, snponly.efi, ipxe-arm64.efi, snponly-arm64.efi", m.IPXEBinary)
		}
	}
	if servers == 0 {
		c.fail("machines", "no machine has role server: a cluster needs at least one (three for a highly available etcd)")
	} else if servers%2 == 0 {
		c.warn("machines", "%d servers make an even number of etcd members: it tolerates no more failures than %d; use an odd number", servers, servers-1)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// bootPaths rejects kernel/initrd paths and kernel arguments that would break
// the iPXE script line they are written into.
func (c *checker) bootPaths(prefix, kernel, initrd string, args []string) {
	for name, v := range map[string]string{prefix + ".kernel": kernel, prefix + ".initrd": initrd} {
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			c.fail(name, "%q contains white space or control characters; iPXE cannot load it", v)
		}
	}
	for i, a := range args {
		field := fmt.Sprintf("%s.kernel_args[%d]", prefix, i)
		switch {
		case a == "":
			c.fail(field, "empty kernel argument")
		case strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			c.fail(field, "%q contains white space or control characters: give each argument its own list item", a)
		case strings.HasPrefix(a, "#") || strings.Contains(a, "||") || strings.Contains(a, "&&") || strings.Contains(a, ";"):
			c.fail(field, "%q would be read as iPXE syntax (#, ||, && or ;)", a)
		default:
			// Templates are checked against sample data so a typo fails here, not at boot.
			sample := ArgData{Hostname: "node", FQDN: "node.example", MAC: "52:54:00:00:00:01", IP: "198.18.0.1", Role: RoleServer}
			if s, err := expandArg(a, sample); err != nil {
				c.fail(field, "%v", err)
			} else if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' }) {
				c.fail(field, "%q expands to white space", a)
			}
		}
	}
}

func (cfg *Config) validateAssets(c *checker) {
	a := &cfg.Assets
	switch a.Flatcar.Channel {
	case "stable", "beta", "alpha", "lts":
	default:
		c.fail("assets.flatcar.channel", "unknown channel %q: use stable, beta, alpha or lts", a.Flatcar.Channel)
	}
	if a.Flatcar.Version == "current" {
		c.fail("assets.flatcar.version", "pin a release number like 4152.2.0: \"current\" changes under you and breaks reinstalls")
	}
	for field, u := range map[string]string{"assets.flatcar.base_url": a.Flatcar.BaseURL, "assets.k3s.base_url": a.K3s.BaseURL, "assets.etcd.base_url": a.Etcd.BaseURL} {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "file://") {
			c.fail(field, "%q is not an http(s):// or file:// URL", u)
		}
	}
}

func (cfg *Config) validateSecurity(c *checker) {
	ttl := cfg.Security.TokenTTL.Duration
	switch {
	case ttl < time.Minute:
		c.fail("security.token_ttl", "%s is too short: a machine needs minutes from its iPXE script to its config; use at least 1m (default 30m)", ttl)
	case ttl > 24*time.Hour:
		c.fail("security.token_ttl", "%s is too long: an unspent boot token is a key to the machine's secrets; use at most 24h (default 30m)", ttl)
	}
	l := &cfg.Limits
	for _, f := range []struct {
		field    string
		v        int
		min, max int
	}{
		{"limits.discovered_machines", l.DiscoveredMachines, 1, 1_000_000},
		{"limits.unknown_events_per_minute", l.UnknownEventsPerMinute, 1, 1_000_000},
		{"limits.timeline_events", l.TimelineEvents, 10, 100_000},
		{"limits.pending_events", l.PendingEvents, 16, 1_000_000},
		{"limits.event_streams", l.EventStreams, 1, 1024},
		{"limits.rendered_configs", l.RenderedConfigs, 1, 1_000_000},
		{"limits.rendered_config_mib", l.RenderedConfigMiB, 1, 65_536},
		{"limits.tftp_transfers", l.TFTPTransfers, 1, 100_000},
		{"limits.tftp_transfers_per_client", l.TFTPTransfersPerClient, 1, 100_000},
		{"limits.http_connections", l.HTTPConnections, 1, 1_000_000},
		{"limits.http_connections_per_client", l.HTTPConnectionsPerClient, 1, 1_000_000},
	} {
		if f.v < f.min || f.v > f.max {
			c.fail(f.field, "%d is out of range %d-%d", f.v, f.min, f.max)
		}
	}
	if l.TFTPTransfers > 0 && l.TFTPTransfersPerClient > l.TFTPTransfers {
		c.fail("limits.tftp_transfers_per_client", "%d is more than limits.tftp_transfers (%d)", l.TFTPTransfersPerClient, l.TFTPTransfers)
	}
	if l.HTTPConnections > 0 && l.HTTPConnectionsPerClient > l.HTTPConnections {
		c.fail("limits.http_connections_per_client", "%d is more than limits.http_connections (%d)", l.HTTPConnectionsPerClient, l.HTTPConnections)
	}
}

func checkInstall(c *checker, prefix, mode, disk string) {
	switch mode {
	case "", InstallDisk, InstallLive:
	default:
		c.fail(prefix+".install_mode", "unknown install mode %q: use disk or live", mode)
	}
	if disk != "" && (!strings.HasPrefix(disk, "/dev/") || strings.ContainsFunc(disk, func(r rune) bool { return r <= ' ' || r == '\'' || r == '"' })) {
		c.fail(prefix+".install_disk", "%q is not a device path like /dev/disk/by-id/nvme-...", disk)
	}
}
