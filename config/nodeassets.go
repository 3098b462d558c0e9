package config

// NodeAsset is a file under the assets directory that nodes download, named
// by the config (cluster.assets).
type NodeAsset struct {
	Name  string // logical name: "k3s", "etcd", "etcdctl"
	Field string // the config field naming it, e.g. "cluster.assets.etcd"
	Path  string // under the assets directory
}

// NodeAssetsOf is the one place that knows which of the cluster's assets a
// machine downloads: K3s on every machine, etcd and etcdctl only on servers
// (the etcd members). An agent's config never needs the etcd binaries, so
// it renders while they are missing; a profile of an agent that uses them
// anyway fails to render naming the missing key.
func (c *Config) NodeAssetsOf(m *Machine) []NodeAsset {
	a := c.Cluster.Assets
	out := []NodeAsset{{"k3s", "cluster.assets.k3s", a.K3s}}
	if m.Role == RoleServer {
		out = append(out, NodeAsset{"etcd", "cluster.assets.etcd", a.Etcd}, NodeAsset{"etcdctl", "cluster.assets.etcdctl", a.Etcdctl})
	}
	return out
}

// NodeAssets is what the config's machines download between them, each
// logical name once, in the order NodeAssetsOf gives them.
func (c *Config) NodeAssets() []NodeAsset {
	var out []NodeAsset
	seen := map[string]bool{}
	for i := range c.Machines {
		for _, a := range c.NodeAssetsOf(&c.Machines[i]) {
			if !seen[a.Name] {
				seen[a.Name] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// DiskInstalls reports whether a machine of the config installs Flatcar to
// disk: then machines fetch the Flatcar disk image besides the PXE kernel
// and initrd.
func (c *Config) DiskInstalls() bool {
	for i := range c.Machines {
		if c.InstallModeOf(&c.Machines[i]) == InstallDisk {
			return true
		}
	}
	return false
}

// AssetSources is the assets section as `flint assets sync` must fetch it:
// the configured releases, and the Flatcar disk image also when a machine
// installs to disk (assets.flatcar.install_image mirrors it without one).
func (c *Config) AssetSources() Assets {
	a := c.Assets
	a.Flatcar.InstallImage = a.Flatcar.InstallImage || c.DiskInstalls()
	return a
}
