package ignition

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/pki"
)

// Data is what a profile template sees as ".": everything flint knows about
// one machine and its cluster. All addresses are plain strings ("10.0.0.60")
// so templates can print them directly. Fields a role does not need are
// still set (non-secret) or left empty (secrets), as noted below.
type Data struct {
	// Cluster is what every node of the site shares.
	Cluster ClusterData
	// Machine is the node being rendered.
	Machine MachineData
	// Hosts is the source of /etc/hosts: the servers, in config order, and
	// the machine itself if it is not one. Not every machine: a node needs the
	// servers' names (etcd, K3s), and a config that grows with the site makes
	// every render and download of a 10,000-machine site slower and tells each
	// agent the name of every other machine.
	Hosts []Host
	// Servers lists the machines with role server (the etcd members and K3s
	// servers), in config order.
	Servers []Host
	// URLs are flint's own addresses as the node reaches them.
	URLs URLs
	// Assets are the files nodes download from flint, by logical name:
	// "k3s" on every machine, "etcd" and "etcdctl" on servers only
	// (config.NodeAssetsOf). A missing file stops the render, so every entry
	// has its hash.
	Assets map[string]Asset
	// Etcd is the etcd cluster's bootstrap settings (the same on every node).
	Etcd EtcdData
	// K3s is the K3s cluster's join settings.
	K3s K3sData
	// Secrets are the node's own credentials, PEM text as the files hold it.
	// Templates must pass them through dataurl, never paste them into YAML.
	Secrets SecretsData
	// Install is how the machine runs Flatcar (cluster/machine install_mode).
	Install InstallData
	// TLS is how the node checks flint's HTTPS server.
	TLS TLSData
	// Boot are the tokens of one delivery of this config. In the template they
	// are placeholders the delivery overwrites: write them as plain text
	// (inline:), never through dataurl.
	Boot BootData
}

// TLSData is what a node needs to talk to flint over HTTPS.
type TLSData struct {
	// CACert is flint's CA certificate (PEM; public), which signs flint's
	// HTTPS certificate (and the etcd certificates).
	CACert string
}

// BootData are per-delivery secrets.
type BootData struct {
	// ReportToken authenticates the node's progress reports
	// (Authorization: Bearer TOKEN to URLs.Events).
	ReportToken string
	// InstalledToken fetches the installed system's config once
	// (already part of URLs.Installed).
	InstalledToken string
}

// InstallData says where Flatcar lives on the machine.
type InstallData struct {
	// Mode is "disk" (flatcar-install, then boot from disk) or "live" (PXE into
	// RAM on every boot).
	Mode string
	// Disk is the device flatcar-install writes (disk mode).
	Disk string
	// FlatcarVersion is assets.flatcar.version: the image flatcar-install writes.
	FlatcarVersion string
	// BaseURL is where flatcar-install -b fetches VERSION/flatcar_production_image.bin.bz2.
	BaseURL string
}

// ClusterData is the cluster: section of the config, resolved.
type ClusterData struct {
	// Name is cluster.name.
	Name string
	// Domain is cluster.domain (default dhcp.domain); may be empty.
	Domain string
	// ButaneVersion is the `version:` of the flatcar Butane variant (1.0.0 or 1.1.0).
	ButaneVersion string
	// RegistrationAddress is where agents join K3s (K3S_URL) and what servers
	// add to their TLS SANs: cluster.registration_address, default the first
	// server's IP.
	RegistrationAddress string
	// SSHAuthorizedKeys are the `core` user's public keys.
	SSHAuthorizedKeys []string
	// EtcdToken is ETCD_INITIAL_CLUSTER_TOKEN: "flint-" + Name, so members of
	// two clusters never join each other.
	EtcdToken string
}

// MachineData is the node being rendered.
type MachineData struct {
	// Hostname is machine.hostname ("nuc1"); also the etcd member and K3s node name.
	Hostname string
	// FQDN is Hostname.Domain, or Hostname when there is no domain.
	FQDN string
	// MAC is the boot NIC's address, lower case with colons ("02:00:0a:00:00:3c").
	MAC string
	// ByPort: the machine is a relay port (machines[].relay), not a MAC:
	// whichever box is plugged into it boots as this machine, so its NIC is
	// matched by kind, not by MAC.
	ByPort bool
	// IP is the reserved address (machine.ip).
	IP string
	// PrefixLen is the prefix length of the machine's subnet (24 for a /24).
	PrefixLen int
	// Gateway is its subnet's router; empty when there is none.
	Gateway string
	// DNS are its subnet's DNS servers.
	DNS []string
	// Role is "server" or "agent".
	Role string
	// Profile is the profile being rendered (machine.profile, default the role).
	Profile string
}

// Host is one machine of the cluster.
type Host struct {
	Name string // hostname
	FQDN string // FQDN, or the hostname when there is no domain
	IP   string
	Role string
}

// URLs are flint's HTTP(S) addresses.
type URLs struct {
	// Flint is the base URL of flint's HTTP server ("http://10.0.0.2:8080").
	Flint string
	// FlintTLS is the base URL of flint's HTTPS server ("https://10.0.0.2:8443");
	// check it with TLS.CACert.
	FlintTLS string
	// Assets is the base URL of the assets directory, ending in "/".
	Assets string
	// Installed is the config of the installed system of a disk install, over
	// HTTPS with its one-time token; the installer profile fetches it and
	// hands it to flatcar-install.
	Installed string
	// Events is where nodes POST progress reports over HTTPS
	// ({"mac","event","detail"}, Authorization: Bearer Boot.ReportToken).
	Events string
}

// Asset is one file in flint's assets directory.
type Asset struct {
	// Path is the file's path under the assets directory ("k3s/k3s").
	Path string
	// URL is where nodes download it (URLs.Assets + Path).
	URL string
	// SHA512 is the lower-case hex SHA-512 of the file flint serves; templates
	// write it as `verification: {hash: sha512-{{.SHA512}}}`.
	SHA512 string
	// Size in bytes.
	Size int64
}

// EtcdData is the etcd cluster, formatted for etcd's and K3s' settings.
type EtcdData struct {
	// InitialCluster is ETCD_INITIAL_CLUSTER: "nuc1=https://10.0.0.60:2380,..."
	// over all servers.
	InitialCluster string
	// InitialClusterState is "new" for a cluster being formed, "existing" for a
	// member rebuilt into a running cluster (Renderer.ClusterState decides).
	InitialClusterState string
	// Endpoints are the client URLs of all members, comma-separated
	// ("https://10.0.0.60:2379,https://10.0.0.61:2379,...").
	Endpoints string
}

// K3sData is how K3s nodes find each other.
type K3sData struct {
	// Token is the cluster's K3s server token (secret): servers only, empty
	// for agents. It also encrypts K3s's bootstrap data in etcd.
	Token string
	// AgentToken is what agents join with (servers set K3S_AGENT_TOKEN to it);
	// it cannot read the bootstrap data.
	AgentToken string
	// DatastoreEndpoint is K3S_DATASTORE_ENDPOINT for servers: Etcd.Endpoints.
	DatastoreEndpoint string
	// URL is K3S_URL for agents: "https://<RegistrationAddress>:6443". Servers
	// must not set it.
	URL string
}

// SecretsData are a node's credentials. Agents get only NodePassword.
type SecretsData struct {
	// CACert is the etcd CA certificate (PEM).
	CACert string
	// ServerCert and ServerKey are the node's etcd serving certificate and key.
	ServerCert, ServerKey string
	// PeerCert and PeerKey are the node's etcd peer certificate and key.
	PeerCert, PeerKey string
	// ClientCert and ClientKey are the etcd client certificate K3s servers use
	// for their datastore (common name "k3s-datastore", shared by all servers).
	ClientCert, ClientKey string
	// NodePassword is the K3s node password of this node (stable across rebuilds).
	NodePassword string
}

// DatastoreClientName is the common name of the etcd client certificate K3s
// servers use.
const DatastoreClientName = "k3s-datastore"

// Secrets is where the renderer gets credentials. *pki.PKI implements it;
// tests use a fixed fake so golden files stay stable.
type Secrets interface {
	CACertPEM() []byte
	K3sToken() string
	K3sAgentToken() string
	EtcdServer(n pki.Node) (pki.KeyPair, error)
	EtcdPeer(n pki.Node) (pki.KeyPair, error)
	EtcdClient(name string) (pki.KeyPair, error)
	NodePassword(name string) (string, error)
}

// Cluster states for EtcdData.InitialClusterState.
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// dataInputs is what buildData needs besides the config.
type dataInputs struct {
	secrets      Secrets
	assets       map[string]Asset
	clusterState string
	profile      string
}

func host(cfg *config.Config, m *config.Machine) Host {
	return Host{Name: m.Hostname, FQDN: cfg.FQDN(m), IP: m.IPAddr.String(), Role: m.Role}
}

// pkiNode is the certificate subject of a server; pki wants an FQDN only when
// there is a domain.
func pkiNode(cfg *config.Config, m *config.Machine) pki.Node {
	n := pki.Node{Name: m.Hostname, IP: m.IPAddr}
	if fqdn := cfg.FQDN(m); strings.Contains(fqdn, ".") {
		n.FQDN = fqdn
	}
	return n
}

// buildData assembles the template data of machine m.
func buildData(cfg *config.Config, m *config.Machine, in dataInputs) (*Data, error) {
	// The machine's own subnet: its prefix length, gateway and DNS servers.
	sub, ok := cfg.SubnetOf(m.IPAddr)
	if !ok {
		return nil, fmt.Errorf("%s's address %s is in no subnet of dhcp.subnet or dhcp.subnets: nodes get a static address and need its prefix length", m.Hostname, m.IPAddr)
	}
	if !cfg.Server.AddressIP.IsValid() {
		return nil, fmt.Errorf("flint's own address (server.address) is not known: node URLs would point nowhere")
	}
	reg := cfg.Cluster.RegistrationIP
	if !reg.IsValid() {
		return nil, fmt.Errorf("cluster.registration_address is not set and there is no server to default to")
	}
	d := &Data{
		Cluster: ClusterData{
			Name:                cfg.Cluster.Name,
			Domain:              cfg.Cluster.Domain,
			ButaneVersion:       cfg.Cluster.ButaneVersion,
			RegistrationAddress: reg.String(),
			SSHAuthorizedKeys:   append([]string{}, cfg.Cluster.SSHAuthorizedKeys...),
			EtcdToken:           "flint-" + cfg.Cluster.Name,
		},
		Machine: MachineData{
			Hostname:  m.Hostname,
			FQDN:      cfg.FQDN(m),
			MAC:       m.HW.String(),
			ByPort:    m.Relay != nil,
			IP:        m.IPAddr.String(),
			PrefixLen: sub.Prefix.Bits(),
			Gateway:   addrString(sub.RouterIP),
			Role:      m.Role,
			Profile:   in.profile,
		},
		URLs: URLs{
			Flint:     cfg.HTTPBaseURL(),
			FlintTLS:  cfg.HTTPSBaseURL(),
			Assets:    cfg.HTTPBaseURL() + "/assets/",
			Installed: cfg.HTTPSBaseURL() + "/ignition?mac=" + m.HW.HexHyp() + "&stage=installed&token=" + InstalledTokenPlaceholder,
			Events:    cfg.HTTPSBaseURL() + "/api/v1/events",
		},
		TLS:  TLSData{CACert: string(in.secrets.CACertPEM())},
		Boot: BootData{ReportToken: ReportTokenPlaceholder, InstalledToken: InstalledTokenPlaceholder},
		Install: InstallData{
			Mode:           cfg.InstallModeOf(m),
			Disk:           cfg.InstallDiskOf(m),
			FlatcarVersion: cfg.Assets.Flatcar.Version,
			BaseURL:        cfg.HTTPBaseURL() + "/assets/flatcar",
		},
		Assets: in.assets,
	}
	for _, a := range sub.DNSIPs {
		d.Machine.DNS = append(d.Machine.DNS, a.String())
	}
	var members, endpoints []string
	for _, s := range cfg.Servers() {
		d.Servers = append(d.Servers, host(cfg, &s))
		d.Hosts = append(d.Hosts, host(cfg, &s))
		members = append(members, fmt.Sprintf("%s=https://%s:2380", s.Hostname, s.IPAddr))
		endpoints = append(endpoints, fmt.Sprintf("https://%s:2379", s.IPAddr))
	}
	d.Etcd = EtcdData{
		InitialCluster:      strings.Join(members, ","),
		InitialClusterState: in.clusterState,
		Endpoints:           strings.Join(endpoints, ","),
	}
	d.K3s = K3sData{
		AgentToken:        in.secrets.K3sAgentToken(),
		DatastoreEndpoint: d.Etcd.Endpoints,
		URL:               "https://" + netip.AddrPortFrom(reg, 6443).String(),
	}
	if m.Role == config.RoleServer {
		d.K3s.Token = in.secrets.K3sToken()
	} else {
		d.Hosts = append(d.Hosts, host(cfg, m))
	}

	pw, err := in.secrets.NodePassword(m.Hostname)
	if err != nil {
		return nil, err
	}
	d.Secrets.NodePassword = pw
	if m.Role != config.RoleServer {
		return d, nil
	}
	node := pkiNode(cfg, m)
	server, err := in.secrets.EtcdServer(node)
	if err != nil {
		return nil, err
	}
	peer, err := in.secrets.EtcdPeer(node)
	if err != nil {
		return nil, err
	}
	client, err := in.secrets.EtcdClient(DatastoreClientName)
	if err != nil {
		return nil, err
	}
	d.Secrets.CACert = string(in.secrets.CACertPEM())
	d.Secrets.ServerCert, d.Secrets.ServerKey = string(server.CertPEM), string(server.KeyPEM)
	d.Secrets.PeerCert, d.Secrets.PeerKey = string(peer.CertPEM), string(peer.KeyPEM)
	d.Secrets.ClientCert, d.Secrets.ClientKey = string(client.CertPEM), string(client.KeyPEM)
	return d, nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
