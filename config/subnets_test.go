package config

import (
	"net/netip"
	"strings"
	"testing"
)

const subnetsConfig = `server:
  interface: br0
  address: 198.18.0.1
dhcp:
  mode: full
  subnets:
    - subnet: 198.18.0.0/24
      router: 198.18.0.254
      dns: [198.18.0.53]
      pool: {start: 198.18.0.100, end: 198.18.0.150}
    - subnet: 198.18.1.0/24
      router: 198.18.1.1
      dns: [198.18.1.53]
      pool: {start: 198.18.1.100, end: 198.18.1.150}
    - subnet: 198.18.2.0/25
      router: 198.18.2.1
machines:
  - {mac: "52:54:00:00:00:60", hostname: nuc1, ip: 198.18.0.60, role: server}
  - {mac: "52:54:00:00:00:61", hostname: nuc2, ip: 198.18.1.61, role: agent}
  - mac: "52:54:00:00:00:62"
    hostname: bench7
    ip: 198.18.2.17
    role: agent
    relay: {circuit_id: slot7}
  - {mac: "52:54:00:00:00:63", hostname: bench8, ip: 198.18.2.18, role: agent, relay: {circuit_id: slot8, remote_id: sw1}}
cluster: {install_mode: live}
`

func TestParseSubnets(t *testing.T) {
	cfg, err := Parse("site.yaml", []byte(subnetsConfig))
	if err != nil {
		t.Fatal(err)
	}
	nets := cfg.DHCP.Networks
	if len(nets) != 3 || !nets[0].Local || nets[1].Local || nets[2].Local {
		t.Fatalf("networks = %+v", nets)
	}
	if nets[1].RouterIP != netip.MustParseAddr("198.18.1.1") || nets[1].DNSIPs[0] != netip.MustParseAddr("198.18.1.53") ||
		!nets[1].Pool.Contains(netip.MustParseAddr("198.18.1.120")) || nets[2].Pool != nil || nets[1].Field != "dhcp.subnets[1]" {
		t.Errorf("subnet 1 = %+v", nets[1])
	}
	if i, ok := cfg.LocalSubnet(); !ok || i != 0 {
		t.Errorf("LocalSubnet = %d %v", i, ok)
	}
	for _, tc := range []struct {
		ip   string
		want int
	}{{"198.18.0.7", 0}, {"198.18.1.255", 1}, {"198.18.2.127", 2}, {"198.18.2.128", -1}, {"198.19.0.1", -1}} {
		if got, _ := cfg.SubnetIndexOf(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("SubnetIndexOf(%s) = %d, want %d", tc.ip, got, tc.want)
		}
	}
	for _, tc := range []struct{ circuit, remote, want string }{
		{"slot7", "", "bench7"},
		{"slot7", "anything", "bench7"}, // only the circuit id is configured
		{"slot8", "sw1", "bench8"},
		{"slot8", "sw2", ""}, // both configured: both must match
		{"slot8", "", ""},
		{"", "", ""},
		{"slot9", "", ""},
	} {
		m, ok := cfg.MachineBySlot(tc.circuit, tc.remote)
		got := ""
		if ok {
			got = m.Hostname
		}
		if got != tc.want {
			t.Errorf("MachineBySlot(%q, %q) = %q, want %q", tc.circuit, tc.remote, got, tc.want)
		}
	}
}

// The single dhcp.subnet form is one subnet, the local one.
func TestSingleSubnetIsOneNetwork(t *testing.T) {
	cfg, err := Parse("good.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.DHCP.Networks
	if len(n) != 1 || !n[0].Local || n[0].Prefix != cfg.DHCP.SubnetPrefix || n[0].Pool != cfg.DHCP.Pool || n[0].RouterIP != cfg.DHCP.RouterIP || n[0].Field != "dhcp" {
		t.Fatalf("networks = %+v", n)
	}
	if s, ok := cfg.SubnetOf(cfg.Machines[0].IPAddr); !ok || s != &cfg.DHCP.Networks[0] {
		t.Errorf("SubnetOf(nuc1) = %v %v", s, ok)
	}
}

// Every problem of the new settings names the file, the line and the key.
func TestSubnetsRejects(t *testing.T) {
	cases := []struct {
		name, replace, with string
		want                []string
	}{
		{"overlapping subnets", `subnet: 198.18.2.0/25`, `subnet: 198.18.1.128/25`,
			[]string{`site.yaml:16: dhcp.subnets[2].router: 198.18.2.1 is outside subnet 198.18.1.128/25`,
				`site.yaml:15: dhcp.subnets[2].subnet: 198.18.1.128/25 overlaps dhcp.subnets[1] (198.18.1.0/24): a relay's address (giaddr) must lie in exactly one subnet`,
				`site.yaml:22: machines[2].ip: 198.18.2.17 is in none of dhcp.subnets`,
				`site.yaml:25: machines[3].ip: 198.18.2.18 is in none of dhcp.subnets`}},
		{"reservation outside every subnet", `ip: 198.18.1.61`, `ip: 198.18.3.61`,
			[]string{`site.yaml:19: machines[1].ip: 198.18.3.61 is in none of dhcp.subnets (198.18.0.0/24, 198.18.1.0/24, 198.18.2.0/25): flint could never hand it out`}},
		{"reservation in its subnet's pool", `ip: 198.18.1.61`, `ip: 198.18.1.120`,
			[]string{`site.yaml:19: machines[1].ip: 198.18.1.120 is inside the pool 198.18.1.100-198.18.1.150`}},
		{"reservation on a remote router", `ip: 198.18.1.61`, `ip: 198.18.1.1`,
			[]string{`site.yaml:19: machines[1].ip: 198.18.1.1 is the router's address`}},
		{"reservation on a broadcast address", `ip: 198.18.2.17`, `ip: 198.18.2.127`,
			[]string{`site.yaml:22: machines[2].ip: 198.18.2.127 is the network or broadcast address of subnet 198.18.2.0/25`}},
		{"no subnet holds flint", `address: 198.18.0.1`, `address: 198.18.4.1`,
			[]string{`site.yaml:3: server.address: 198.18.4.1 is in none of dhcp.subnets (198.18.0.0/24, 198.18.1.0/24, 198.18.2.0/25): requests without a relay (giaddr 0.0.0.0) come from flint's own segment`}},
		{"both forms", "  subnets:\n", "  subnet: 198.18.0.0/24\n  subnets:\n",
			[]string{`site.yaml:6: dhcp.subnet: is given next to dhcp.subnets: move it into the entry`}},
		{"subnets in proxy mode", `mode: full`, `mode: proxy`,
			[]string{`site.yaml:6: dhcp.subnets: only full mode hands out addresses in several subnets`,
				`site.yaml:24: machines[2].relay: selects a machine's address by its switch port, which only full mode hands out`,
				`site.yaml:25: machines[3].relay: selects`}},
		{"subnet missing", `    - subnet: 198.18.2.0/25`, `    - dns: [198.18.2.53]`,
			[]string{`site.yaml:15: dhcp.subnets[2].subnet: missing`, `machines[2].ip: 198.18.2.17 is in none`, `machines[3].ip: 198.18.2.18 is in none`}},
		{"remote pool outside its subnet", `end: 198.18.1.150`, `end: 198.18.2.150`,
			[]string{`site.yaml:14: dhcp.subnets[1].pool.end: 198.18.2.150 is outside subnet 198.18.1.0/24`}},
		{"remote router outside its subnet", `router: 198.18.1.1`, `router: 198.18.0.1`,
			[]string{`site.yaml:12: dhcp.subnets[1].router: 198.18.0.1 is outside subnet 198.18.1.0/24`}},
		{"remote pool holds its router", `pool: {start: 198.18.1.100`, `pool: {start: 198.18.1.1`,
			[]string{`site.yaml:14: dhcp.subnets[1].pool: the pool contains the router 198.18.1.1`,
				`site.yaml:19: machines[1].ip: 198.18.1.61 is inside the pool 198.18.1.1-198.18.1.150`}},
		{"empty relay", `relay: {circuit_id: slot7}`, `relay: {}`,
			[]string{`site.yaml:24: machines[2].relay: names neither circuit_id nor remote_id`}},
		{"two machines on one port", `relay: {circuit_id: slot8, remote_id: sw1}`, `relay: {circuit_id: slot7}`,
			[]string{`site.yaml:25: machines[3].relay: circuit-id "slot7" is also the port of machines[2]: one port, one machine`}},
		{"circuit id too long", `relay: {circuit_id: slot7}`, `relay: {circuit_id: ` + strings.Repeat("x", 256) + `}`,
			[]string{`site.yaml:24: machines[2].relay.circuit_id: is 256 bytes long; option 82 carries at most 255`}},
		{"unknown relay key", `relay: {circuit_id: slot7}`, `relay: {circuit: slot7}`,
			[]string{`site.yaml:24: machines[2].relay.circuit: unknown key; machines[2].relay takes: circuit_id, remote_id`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(subnetsConfig, tc.replace, tc.with, 1)
			if text == subnetsConfig {
				t.Fatalf("replacement %q not found", tc.replace)
			}
			wantProblems(t, parseProblems(t, text), tc.want...)
		})
	}
}

// A switch's binary circuit id is written with YAML escapes and compared
// byte for byte.
func TestBinaryCircuitID(t *testing.T) {
	text := strings.Replace(subnetsConfig, "relay: {circuit_id: slot7}", `relay: {circuit_id: "\x00\x04\x00\x0a"}`, 1)
	cfg, err := Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := cfg.MachineBySlot("\x00\x04\x00\x0a", "anything"); !ok || m.Hostname != "bench7" {
		t.Errorf("MachineBySlot(binary) = %v %v", m, ok)
	}
	if _, ok := cfg.MachineBySlot("\x00\x04\x00\x0b", ""); ok {
		t.Error("another port matched")
	}
}
