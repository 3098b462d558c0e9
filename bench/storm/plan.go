package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
)

// The address plan, shared by `storm gen` (flint's machines and the client
// namespace's addresses) and `storm run` (what each simulated NUC expects).
// Everything lives in 198.18.0.0/16: flint is 198.18.0.1, the client
// namespace's own address 198.18.0.2, machine i is 198.18.(1+i/250).(1+i%250).
var (
	flintAddr  = netip.MustParseAddr("198.18.0.1")
	clientAddr = netip.MustParseAddr("198.18.0.2")
)

const (
	subnet  = "198.18.0.0/16"
	servers = 3 // the first three machines are etcd members + K3s servers
	maxN    = 250 * 250
)

// node is one simulated NUC of the config.
type node struct {
	i        int
	mac      net.HardwareAddr
	ip       netip.Addr
	hostname string
	role     string
}

func plan(n int) []node {
	nodes := make([]node, n)
	for i := range nodes {
		h := mix32(uint32(i))
		role := "agent"
		if i < servers {
			role = "server"
		}
		nodes[i] = node{
			i:        i,
			mac:      net.HardwareAddr{0x02, 0xf1, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)},
			ip:       netip.AddrFrom4([4]byte{198, 18, byte(1 + i/250), byte(1 + i%250)}),
			hostname: fmt.Sprintf("nuc%04d", i+1),
			role:     role,
		}
	}
	return nodes
}

// writeMachines writes flint's machines: list (YAML flow mappings).
func writeMachines(w io.Writer, nodes []node) {
	fmt.Fprintln(w, "machines:")
	for _, nd := range nodes {
		fmt.Fprintf(w, "  - {mac: %q, hostname: %s, ip: %s, role: %s}\n", nd.mac.String(), nd.hostname, nd.ip, nd.role)
	}
}

// writeAddrBatch writes `ip -batch` lines that put every machine's address on
// the client interface (/32 each: the /16 route comes with the client's own
// address) and, for the server namespace, permanent neighbour entries.
func writeAddrBatch(w io.Writer, nodes []node, dev string) {
	for _, nd := range nodes {
		fmt.Fprintf(w, "address add %s/32 dev %s\n", nd.ip, dev)
	}
}

func writeNeighBatch(w io.Writer, nodes []node, dev, lladdr string) {
	for _, nd := range nodes {
		fmt.Fprintf(w, "neighbour replace %s lladdr %s dev %s nud permanent\n", nd.ip, lladdr, dev)
	}
}

// mix32 is a bijection on uint32 (MurmurHash3's finalizer): distinct machine
// numbers give distinct MACs that are spread like a real batch of NUCs'
// (never one run of sequential keys in flint's store).
func mix32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}

func hexhyp(mac net.HardwareAddr) string { return strings.ReplaceAll(mac.String(), ":", "-") }
