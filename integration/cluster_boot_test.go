package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A node's network boot in the cluster tests: DHCP, iPXE's scripts, the
// kernel command line.

// dhcp runs busybox udhcpc once on eth0; its script applies the address to
// the interface (and removes it on deconfig), as a node's DHCP client does.
// extra are more udhcpc flags (vendor class, options).
func (n *clNode) dhcp(label string, extra ...string) error {
	n.dhcpRuns++
	out := filepath.Join(n.dir, fmt.Sprintf("udhcpc-%d-%s.env", n.dhcpRuns, label))
	script := out + ".sh"
	body := `#!/bin/sh
# udhcpc calls this with deconfig, bound, renew, leasefail, nak
case "$1" in
deconfig)
	` + n.env.ipBin + ` -4 addr flush dev "$interface"
	;;
bound|renew)
	` + n.env.ipBin + ` -4 addr flush dev "$interface"
	` + n.env.ipBin + ` addr add "$ip/${mask:-24}" dev "$interface" || exit 1
	env > "` + out + `.tmp" && mv "` + out + `.tmp" "` + out + `"
	;;
esac
`
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return err
	}
	args := append([]string{"-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", script}, extra...)
	r := n.run(nil, 30*time.Second, "udhcpc", args...)
	n.setTook("dhcp-"+label, r.Dur)
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("%s: udhcpc (%s) got no lease: %v\n%s", n.Name, label, err, r)
	}
	n.lease = parseEnv(string(b))
	got := n.lease["ip"]
	bits := 24
	if n.env.ha != nil {
		bits = netip.MustParsePrefix(haSubnet).Bits()
	}
	switch {
	case n.IP == "" && n.env.ha == nil && !inPool(got): // not in the config: a pool address
		return fmt.Errorf("%s: udhcpc (%s) got %s, want an address of the pool %s-%s", n.Name, label, got, poolStart, poolEnd)
	case n.IP == "" && n.env.ha != nil && !haInPool(got):
		return fmt.Errorf("%s: udhcpc (%s) got %s, want an address of the pool %s-%s", n.Name, label, got, haPoolStart, haPoolEnd)
	case n.IP != "" && got != n.IP:
		return fmt.Errorf("%s: udhcpc (%s) got %s, want its reservation %s", n.Name, label, got, n.IP)
	}
	server, who := flintIP, "flint"
	if n.env.proxy() {
		server, who = routerIP, "the LAN's DHCP server (dnsmasq)"
	}
	if n.dhcpFrom != nil {
		server, who = n.dhcpFrom.IP, "flint "+n.dhcpFrom.Name
	}
	if got := n.lease["serverid"]; got != server {
		return fmt.Errorf("%s: lease from server %s, want %s at %s", n.Name, got, who, server)
	}
	// The address is really on the interface: the guard will see it.
	addr := n.run(nil, 10*time.Second, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if !strings.Contains(addr.Stdout, fmt.Sprintf(" %s/%d ", got, bits)) {
		return fmt.Errorf("%s: eth0 does not carry %s/%d after udhcpc's bound:\n%s", n.Name, got, bits, addr)
	}
	n.logf("%s: %s leased %s from %s (boot file %q)", label, n.Name, got, n.lease["serverid"], n.lease["boot_file"])
	return nil
}

// udhcpcIPXE makes udhcpc look like iPXE on a UEFI NUC: vendor class and
// arch 7, user class "iPXE" (option 77), so flint answers with the HTTP script.
var udhcpcIPXE = []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845"}

// netboot is what iPXE does: DHCP, GET /boot.ipxe, chain to the machine's
// own script. It returns that script.
//
// In proxy mode the address comes from the LAN's DHCP server and the boot
// file from flint's proxy offer, which iPXE merges and udhcpc cannot: the
// node asks as a plain client (flint sees its broadcast REQUEST name the
// address) and goes on with the boot file flint offers iPXE.
//
// In TestHACluster the node fetches the scripts from scriptFrom, which may
// not be the instance whose DHCP answer named the boot file: the URL's host
// is rewritten. It stands for a node whose requests reach different
// instances (one died in between, or they sit behind one shared name).
func (n *clNode) netboot() (string, error) {
	if n.env.proxy() {
		if err := n.dhcp("ipxe"); err != nil {
			return "", err
		}
	} else {
		if err := n.dhcp("ipxe", udhcpcIPXE...); err != nil {
			return "", err
		}
		// The boot file names the flint that answered (flintIP but in TestHACluster).
		want := fmt.Sprintf("http://%s:%d/boot.ipxe", n.lease["serverid"], httpPort)
		if got := n.lease["boot_file"]; got != want {
			return "", fmt.Errorf("%s: iPXE's DHCP got boot file %q, want %q", n.Name, got, want)
		}
	}
	bootFile := n.scriptHTTP() + "/boot.ipxe"
	code, r := n.env.lab.Curl(n.host.NS, bootFile)
	n.record(r)
	if code != "200" {
		return "", fmt.Errorf("%s: GET %s: %s", n.Name, bootFile, code)
	}
	var chain string
	for _, ln := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(ln); len(f) >= 2 && f[0] == "chain" {
			chain = f[1]
			break
		}
	}
	if chain == "" {
		return "", fmt.Errorf("%s: /boot.ipxe has no chain line:\n%s", n.Name, r.Stdout)
	}
	chain = strings.NewReplacer("${mac:hexhyp}", n.hex(), "${buildarch}", clBuildArch).Replace(chain)
	if want := n.scriptHTTP() + "/machines/" + n.hex() + "/boot.ipxe"; !strings.HasPrefix(chain, want) {
		return "", fmt.Errorf("%s: /boot.ipxe chains to %s, want %s", n.Name, chain, want)
	}
	code, r = n.env.lab.Curl(n.host.NS, chain)
	n.record(r)
	if code != "200" {
		return "", fmt.Errorf("%s: GET %s: %s\n%s", n.Name, chain, code, r.Stdout)
	}
	return r.Stdout, nil
}

// kernelCmdline is the kernel command line of an iPXE script, with
// ${mac:hexhyp} expanded as iPXE would.
func (n *clNode) kernelCmdline(script string) (string, error) {
	for _, ln := range strings.Split(script, "\n") {
		if !strings.HasPrefix(ln, "kernel ") {
			continue
		}
		ln, _, _ = strings.Cut(ln, " && ")
		f := strings.Fields(ln)
		if len(f) < 3 {
			return "", fmt.Errorf("%s: kernel line without arguments: %q", n.Name, ln)
		}
		cmdline := strings.ReplaceAll(strings.Join(f[2:], " "), "${mac:hexhyp}", n.hex())
		var url string
		for _, a := range strings.Fields(cmdline) {
			if v, ok := strings.CutPrefix(a, "ignition.config.url="); ok {
				url = v
			}
		}
		// The flint that rendered the script names itself.
		rendered := n.scriptHTTP() + "/ignition?mac=" + n.hex()
		tok, ok := strings.CutPrefix(url, rendered+"&token=")
		if !ok || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
			return "", fmt.Errorf("%s: kernel line %q has ignition.config.url=%q, want %s&token=<64 hex digits>", n.Name, ln, url, rendered)
		}
		n.token = tok
		if n.configURL() != rendered {
			// TestHACluster: the config request goes to another instance
			// than the script's (with the token that one minted). Each
			// instance writes its own server.address into the URLs, so the
			// host is rewritten: a node whose requests reach different
			// instances, e.g. after one died or behind a shared name.
			cmdline = strings.ReplaceAll(cmdline, "ignition.config.url="+rendered+"&", "ignition.config.url="+n.configURL()+"&")
		}
		return cmdline, nil
	}
	return "", fmt.Errorf("%s: no kernel line in its iPXE script:\n%s", n.Name, script)
}

// bootResult is what one network boot of a disk-mode node did.
type bootResult struct {
	ServerID     string // the DHCP server (option 54) whose answer iPXE took
	Script       string // the machine's iPXE script
	InstallerLog string // Ignition applying the installer config (live system)
	FirstBootLog string // Ignition applying the embedded config on the first boot from disk
	Cmdline      string // the kernel command line of the script
	EtcdEnv      map[string]string
}

// A network boot of a disk-mode machine in its install window, up to and
// including the first boot of the installed system, in two parts:
//
// pxe (what firmware, iPXE and Flatcar's initramfs do before Ignition):
//  1. iPXE: DHCP (user class iPXE), /boot.ipxe, the machine's script, whose
//     kernel line names ignition.config.url;
//  2. the live system's initramfs asks for an address again (a plain client).
//
// install (from there):
//  3. the real Ignition client (-platform metal, that command line) applies
//     the installer config into the live system's root;
//  4. the installer unit: the laid-down /opt/bin/flint-install runs in the
//     node's namespace, with the live root's /opt mounted at /opt, a fake
//     flatcar-install that records its arguments and the config it was told
//     to embed, and a fake systemctl (reboot);
//  5. the first boot from disk: Ignition (-platform file) applies the embedded
//     config into the node's root, then flint-report config-applied runs as
//     flint-report-applied.service would.
func (n *clNode) pxe() (*bootResult, error) {
	res := &bootResult{}
	n.boots++
	script, err := n.netboot()
	if err != nil {
		return res, err
	}
	res.ServerID, res.Script = n.lease["serverid"], script
	if strings.Contains(script, "sanboot") {
		return res, fmt.Errorf("%s: flint told it to boot its disk, but it should install:\n%s", n.Name, script)
	}
	if res.Cmdline, err = n.kernelCmdline(script); err != nil {
		return res, err
	}
	if err := n.dhcp("initramfs"); err != nil {
		return res, err
	}
	return res, nil
}
