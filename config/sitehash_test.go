package config

import (
	"strings"
	"testing"
)

// TestSiteHash: instances of one site hash alike whatever is their own
// (address, ports, file locations, layout of the file), and differently as
// soon as a machine would be answered differently.
func TestSiteHash(t *testing.T) {
	const base = `server: {address: 198.18.0.1, http_port: 8080}
dhcp: {mode: proxy}
ipxe: {directory: /usr/lib/ipxe}
cluster: {install_mode: live}
machines:
  - {mac: "52:54:00:00:00:01", hostname: nuc1, ip: 198.18.0.11, role: server}
  - {mac: "52:54:00:00:00:02", hostname: nuc2, ip: 198.18.0.12, role: agent}
`
	hash := func(t *testing.T, text string, extra ...[]byte) string {
		t.Helper()
		cfg, err := Parse("site.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.SiteHash(extra...)
	}
	want := hash(t, base)
	for name, text := range map[string]string{
		"another address and port":   strings.Replace(base, "address: 198.18.0.1, http_port: 8080", "address: 198.18.0.2, http_port: 8081", 1),
		"iPXE files elsewhere":       strings.Replace(base, "/usr/lib/ipxe", "/opt/ipxe", 1),
		"a comment and a blank line": "# site a\n\n" + base,
		"keys in another order":      strings.Replace(base, "{mac: \"52:54:00:00:00:02\", hostname: nuc2, ip: 198.18.0.12, role: agent}", "{role: agent, ip: 198.18.0.12, hostname: nuc2, mac: \"52:54:00:00:00:02\"}", 1),
	} {
		if got := hash(t, text); got != want {
			t.Errorf("%s: hash %s, want the site's %s", name, got[:12], want[:12])
		}
	}
	for name, text := range map[string]string{
		"a machine's address":  strings.Replace(base, "ip: 198.18.0.12", "ip: 198.18.0.13", 1),
		"a machine's role":     strings.Replace(base, "role: agent", "role: server", 1),
		"the install mode":     strings.Replace(base, "install_mode: live", "install_mode: disk", 1) + "assets: {flatcar: {version: 4152.2.0}}\n",
		"the DHCP mode":        strings.Replace(base, "mode: proxy", "mode: \"off\"", 1),
		"a machine more":       base + "  - {mac: \"52:54:00:00:00:03\", hostname: nuc3, ip: 198.18.0.13, role: agent}\n",
		"the boot kernel args": base + "boot: {kernel_args: [quiet]}\n",
	} {
		if got := hash(t, text); got == want {
			t.Errorf("%s: same hash as the site's: instances would answer machines differently unnoticed", name)
		}
	}
	if hash(t, base, []byte("profile a")) == hash(t, base, []byte("profile b")) {
		t.Error("different overlay profiles hash alike")
	}
}
