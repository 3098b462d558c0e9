package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// SiteHash fingerprints what the config decides for the site's machines, so
// that flint instances sharing a store can tell whether they would answer a
// machine alike. It covers DHCP, the boot settings, the cluster (profile
// names, install modes, certificates' names), security, the Flatcar version
// and every machine, and leaves out what is each instance's own: its
// address, ports, interface and listeners (server), where files are on its
// host (ipxe.directory, boot.assets_dir, boot.shim and boot.grub,
// cluster.profiles_dir, the BMC password and CA files), its limits, how it
// reaches its store (but the prefix: the site) and where its mirror syncs
// from. extra is more content the instances must share, like the overlay
// profiles' text, which the config only names by directory. Line numbers and
// key order do not count: two files saying the same thing hash the same.
func (c *Config) SiteHash(extra ...[]byte) string {
	boot := c.Boot
	boot.AssetsDir, boot.Shim, boot.Grub = "", "", ""
	cluster := c.Cluster
	cluster.ProfilesDir = ""
	machines := make([]Machine, len(c.Machines))
	for i, m := range c.Machines {
		m.Line = 0
		if m.BMC != nil {
			b := *m.BMC
			b.PasswordFile, b.PasswordEnv, b.CAFile = "", "", ""
			m.BMC = &b
		}
		machines[i] = m
	}
	site := struct {
		DHCP           DHCP
		Boot           Boot
		Cluster        Cluster
		Security       Security
		FlatcarVersion string
		StorePrefix    string
		Machines       []Machine
		Extra          [][]byte
	}{c.DHCP, boot, cluster, c.Security, c.Assets.Flatcar.Version, c.Store.Prefix, machines, extra}
	b, err := json.Marshal(site)
	if err != nil {
		// Every field is plain data; this cannot fail but must not pass
		// unnoticed: no two configs share this hash.
		return "unhashable: " + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
