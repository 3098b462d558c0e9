package vlab

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Impostor is a network namespace on the lab bridge that takes a lab
// machine's MAC and reserved address once that machine is off. In full DHCP
// mode flint serves a machine's script and config only to the address it
// leased to that MAC, so a request from the host side of the lab (flint's
// own address) is refused before its token is even looked at; a request from
// the impostor passes that rule, and flint's answer depends on the token
// alone. The suite replays a machine's config URLs from it after the boot.
type Impostor struct {
	*Network // the impostor's own namespace (Output, Command, Destroy)
	lab      *Network
	as       VM
}

// The veth pair: impostorBridgeLink on the lab bridge, impostorLink in the
// impostor's namespace.
const (
	impostorBridgeLink = "imp-br"
	impostorLink       = "imp0"
)

// NewImpostor makes the impostor's namespace (the lab's name + "-imp") and
// links it to the bridge. It holds no address until Become.
func (n *Network) NewImpostor() (*Impostor, error) {
	ns := n.NS + "-imp"
	if err := ipCmd("netns", "add", ns); err != nil {
		return nil, err
	}
	im := &Impostor{Network: &Network{NS: ns}, lab: n}
	for _, s := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", n.NS, "link", "add", impostorBridgeLink, "type", "veth", "peer", "name", impostorLink, "netns", ns},
		{"-n", n.NS, "link", "set", impostorBridgeLink, "master", Bridge, "up"},
	} {
		if err := ipCmd(s...); err != nil {
			_ = im.Destroy()
			return nil, err
		}
	}
	_ = im.Exec(5*time.Second, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
	return im, nil
}

// Become gives the impostor vm's MAC and reserved address. vm must be off:
// two hosts with one MAC on a bridge would steal each other's frames.
func (im *Impostor) Become(vm VM) error {
	ns := im.NS
	for _, s := range [][]string{
		{"-n", ns, "link", "set", impostorLink, "down"},
		{"-n", ns, "addr", "flush", "dev", impostorLink},
		{"-n", ns, "link", "set", impostorLink, "address", vm.MAC},
		{"-n", ns, "addr", "add", vm.IP + "/24", "dev", impostorLink},
		{"-n", ns, "link", "set", impostorLink, "up"},
	} {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	im.as = vm
	return nil
}

// Reply is flint's answer to one request of the impostor.
type Reply struct {
	URL    string
	Status int
	Body   string
}

func (r Reply) String() string {
	return fmt.Sprintf("GET %s: %d %.200q", r.URL, r.Status, strings.TrimSpace(r.Body))
}

// Get fetches url with curl from the impostor's address, checking an HTTPS
// server against caFile, and returns whatever status flint answers.
func (im *Impostor) Get(url, caFile string) (Reply, error) {
	args := []string{"-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}"}
	if caFile != "" {
		args = append(args, "--cacert", caFile)
	}
	out, err := im.Output(15*time.Second, "curl", append(args, url)...)
	if err != nil {
		return Reply{URL: url}, fmt.Errorf("as %s (%s): %w", im.as.Name, im.as.IP, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(strings.TrimSpace(s[i+1:]))
	if err != nil {
		return Reply{URL: url}, fmt.Errorf("as %s: curl printed no status: %q", im.as.Name, s)
	}
	return Reply{URL: url, Status: code, Body: s[:i]}, nil
}
