package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Vendor classes and option 93 values real firmware sends.
const (
	vendorBIOS = "PXEClient:Arch:00000:UNDI:002001"
	vendorUEFI = "PXEClient:Arch:00007:UNDI:003016"
)

var runSeq atomic.Int64

// Lease is what a DHCP client's script was handed on BOUND.
type Lease struct {
	IP, Router, ServerID, NextServer, BootFile, Subnet string
	DNS, Domain, LeaseTime                             string
	Env                                                map[string]string
}

func parseEnv(s string) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// Udhcpc runs busybox udhcpc once on the host's eth0 and returns what its
// script got with "bound" (nil when it got no lease). extra are more udhcpc
// flags, e.g. -V vendor-class, -x 0x5d:0000.
func (h *Host) Udhcpc(t testing.TB, timeout time.Duration, extra ...string) (*Lease, Result) {
	t.Helper()
	n := runSeq.Add(1)
	out := filepath.Join(h.lab.Dir, fmt.Sprintf("udhcpc-%s-%d.env", h.Name, n))
	script := h.lab.writeFile(t, fmt.Sprintf("udhcpc-%s-%d.sh", h.Name, n),
		"#!/bin/sh\n# udhcpc calls this with deconfig, bound, renew, leasefail, nak\n[ \"$1\" = bound ] || exit 0\nenv > "+out+".tmp && mv "+out+".tmp "+out+"\n", 0o755)
	args := append([]string{"-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", script}, extra...)
	r := h.lab.Run(h.NS, timeout, "udhcpc", args...)
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, r
	}
	env := parseEnv(string(b))
	return &Lease{IP: env["ip"], Router: env["router"], ServerID: env["serverid"], NextServer: env["siaddr"], BootFile: env["boot_file"],
		Subnet: env["subnet"], DNS: strings.TrimSpace(env["dns"]), Domain: env["domain"], LeaseTime: env["lease"], Env: env}, r
}

// udhcpcPXE are the udhcpc flags that make it look like a PXE ROM of arch.
func udhcpcPXE(arch int) []string {
	return []string{"-V", fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch), "-x", fmt.Sprintf("0x5d:%04x", arch)}
}

// Dhclient runs ISC dhclient in the foreground once on eth0 with a config that
// makes it a PXE client of arch (arch < 0: a plain client) and returns what
// dhclient-script got on BOUND. It runs with -d (dhclient would otherwise fork
// into the background) and is stopped by PID as soon as BOUND was seen.
func (h *Host) Dhclient(t testing.TB, timeout time.Duration, arch int) (*Lease, Result) {
	t.Helper()
	n := runSeq.Add(1)
	base := filepath.Join(h.lab.Dir, fmt.Sprintf("dhclient-%s-%d", h.Name, n))
	conf := "timeout 20;\nretry 1;\nrequest subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n"
	if arch >= 0 {
		conf = "option pxe-client-arch code 93 = unsigned integer 16;\n" + conf +
			fmt.Sprintf("send vendor-class-identifier \"PXEClient:Arch:%05d:UNDI:002001\";\nsend pxe-client-arch %d;\n", arch, arch)
	}
	h.lab.writeFile(t, filepath.Base(base)+".conf", conf, 0o644)
	// dhclient gives its script a fresh environment; the output path is baked in.
	h.lab.writeFile(t, filepath.Base(base)+".sh", "#!/bin/sh\nenv > "+base+".$reason.tmp && mv "+base+".$reason.tmp "+base+".$reason\n", 0o755)
	p := h.lab.Start(t, h.NS, "dhclient-"+h.Name, "dhclient", "-d", "-1", "-v", "-cf", base+".conf", "-lf", base+".leases", "-pf", base+".pid", "-sf", base+".sh", "eth0")
	start := time.Now()
	var lease *Lease
	_ = eventually(timeout, 50*time.Millisecond, func() error {
		if b, err := os.ReadFile(base + ".BOUND"); err == nil {
			env := parseEnv(string(b))
			lease = &Lease{IP: env["new_ip_address"], Router: env["new_routers"], ServerID: env["new_dhcp_server_identifier"],
				NextServer: env["new_next_server"], BootFile: env["new_filename"], Subnet: env["new_subnet_mask"],
				DNS: env["new_domain_name_servers"], Domain: env["new_domain_name"], LeaseTime: env["new_dhcp_lease_time"], Env: env}
			return nil
		}
		if p.Exited() {
			return nil
		}
		return errNotYet
	})
	p.stop()
	r := Result{Cmd: describe(h.NS, "dhclient", p.Cmd.Args[5:]), Stdout: p.Stdout.String(), Stderr: p.Stderr.String(), Dur: time.Since(start), Code: -1}
	if p.Cmd.ProcessState != nil {
		r.Code = p.Cmd.ProcessState.ExitCode()
	}
	h.lab.logf("%s", r.String())
	return lease, r
}

// Offer is one reply pxeprobe heard (see pxeprobe/main.go).
type Offer struct {
	From        string            `json:"from"`
	Type        string            `json:"type"`
	CHAddr      string            `json:"chaddr"`
	YIAddr      string            `json:"yiaddr"`
	SIAddr      string            `json:"siaddr"`
	File        string            `json:"file"`
	ServerID    string            `json:"server_id"`
	VendorClass string            `json:"vendor_class"`
	Options     map[string]string `json:"options"`
	Option43    map[string]string `json:"option43"`
}

// Probe runs pxeprobe on the host's eth0 and returns every reply it printed.
func (h *Host) Probe(t testing.TB, timeout time.Duration, args ...string) ([]Offer, Result) {
	t.Helper()
	r := h.lab.Run(h.NS, timeout, probeBin, append([]string{"-iface", "eth0"}, args...)...)
	var offers []Offer
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var o Offer
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Errorf("pxeprobe printed a line that is not JSON: %q: %v", line, err)
			continue
		}
		offers = append(offers, o)
	}
	return offers, r
}

// Curl runs curl in namespace ns; code is the HTTP status it printed last.
func (l *Lab) Curl(ns string, args ...string) (code string, r Result) {
	r = l.Run(ns, 20*time.Second, "curl", append([]string{"-sS", "-m", "15", "-w", "\n%{http_code}"}, args...)...)
	out := strings.TrimRight(r.Stdout, "\n")
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		r.Stdout = out[:i]
		return out[i+1:], r
	}
	return out, r
}
