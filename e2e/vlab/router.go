package vlab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RouterIP is the LAN's own DHCP server in a proxy-mode lab (Options.ProxyDHCP):
// dnsmasq in a namespace of its own on the bridge hands out the addresses,
// each machine its reserved one, and flint only adds boot information.
const RouterIP = "198.18.0.254"

// The veth pair: routerBridgeLink on the lab bridge, routerLink in the router's namespace.
const (
	routerBridgeLink = "rt-br"
	routerLink       = "rt0"
)

// StartRouter makes the router's namespace (the lab's name + "-rt"), links
// it to the bridge at RouterIP and starts dnsmasq there as the LAN's DHCP
// server, with each of vms' reserved address (--dhcp-host=MAC,IP) and no
// boot information of its own. On error it removes what it made.
func (n *Network) StartRouter(dir string, vms []VM, detached bool) (*Network, *Proc, error) {
	ns := n.NS + "-rt"
	if err := ipCmd("netns", "add", ns); err != nil {
		return nil, nil, err
	}
	rt := &Network{NS: ns}
	for _, s := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", n.NS, "link", "add", routerBridgeLink, "type", "veth", "peer", "name", routerLink, "netns", ns},
		{"-n", n.NS, "link", "set", routerBridgeLink, "master", Bridge, "up"},
		{"-n", ns, "addr", "add", RouterIP + "/24", "dev", routerLink},
		{"-n", ns, "link", "set", routerLink, "up"},
	} {
		if err := ipCmd(s...); err != nil {
			_ = rt.Destroy()
			return nil, nil, err
		}
	}
	args := []string{"--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=" + routerLink,
		"--dhcp-range=198.18.0.200,198.18.0.250,255.255.255.0,1h",
		"--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"), "--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--user=root", "--no-ping", "--log-dhcp", "--log-facility=-"}
	for _, v := range vms {
		args = append(args, "--dhcp-host="+v.MAC+","+v.IP)
	}
	log := filepath.Join(dir, "dnsmasq.log")
	p, err := Start("dnsmasq", rt.Command("dnsmasq", args...), log, detached)
	if err != nil {
		_ = rt.Destroy()
		return nil, nil, fmt.Errorf("dnsmasq (Debian package dnsmasq-base): %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), "DHCP, IP range") {
			return rt, p, nil
		}
		if p.Exited() || time.Now().After(deadline) {
			_ = p.Stop(2 * time.Second)
			_ = rt.Destroy()
			return nil, nil, fmt.Errorf("dnsmasq did not start (%s): %s", p.State(), b)
		}
	}
}
