package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// monitoredSite is flint (DHCP full mode) on stand-in assets with the given
// machines, a monitoring host "mon" on its LAN, and node1's own namespace
// "nuc" to act as node1: what the metrics and dashboard tests share.
type monitoredSite struct {
	l        *Lab
	data, ca string
	mon, nuc *Host
}

func newMonitoredSite(t *testing.T, machines ...machine) *monitoredSite {
	t.Helper()
	l := NewLab(t)
	s := &monitoredSite{l: l, data: filepath.Join(l.Dir, "data")}
	s.ca = filepath.Join(s.data, "pki", "ca.crt")
	// Stand-ins for the files a server's config names (their hashes go in).
	for _, f := range []string{"flatcar/flatcar_production_pxe.vmlinuz", "flatcar/flatcar_production_pxe_image.cpio.gz", "k3s/k3s", "etcd/etcd", "etcd/etcdctl"} {
		l.writeFile(t, "data/assets/"+f, "stand-in "+f, 0o644)
	}
	l.StartFlint(t, l.WriteConfig(t, siteConfig{Mode: "full", Machines: machines}), s.data)
	s.mon = l.AddHost(t, "mon", "52:54:00:ee:00:09")
	s.mon.SetAddress(t, "198.18.0.29/24")
	s.nuc = l.AddHost(t, "nuc", node1.MAC) // no address: DHCP gives it one
	return s
}

// adminToken is flint's admin API token.
func (s *monitoredSite) adminToken(t *testing.T) string {
	return readToken(t, filepath.Join(s.data, "pki", "admin-token"))
}

// node1Boots does what node1 does when it network-boots, with the real
// clients from its own namespace: DHCP as a BIOS PXE ROM (udhcpc) for its
// reserved address and boot file, the first stage over TFTP (atftp), then
// what iPXE fetches: its script, the kernel and initrd the script names, the
// pointer config, and its config over HTTPS, which it returns.
func (s *monitoredSite) node1Boots(t *testing.T) []byte {
	t.Helper()
	lease, r := s.nuc.Udhcpc(t, 20*time.Second, udhcpcPXE(0)...)
	if lease == nil || lease.IP != node1.IP || lease.BootFile != "undionly.kpxe" {
		t.Fatalf("DHCP: lease %+v, want %s with boot file undionly.kpxe\n%s", lease, node1.IP, r)
	}
	s.nuc.SetAddress(t, lease.IP+"/24")
	first := filepath.Join(s.l.Dir, "node1-"+lease.BootFile)
	if r := s.l.Run(s.nuc.NS, 30*time.Second, "atftp", "--option", "blksize 1468", "-g", "-r", lease.BootFile, "-l", first, lease.NextServer); r.Err != nil {
		t.Fatalf("TFTP %s from %s: %s", lease.BootFile, lease.NextServer, r)
	}
	code, r := s.l.Curl(s.nuc.NS, flintHTTP+"/machines/"+hexhyp(node1.MAC)+"/boot.ipxe?arch=i386")
	tok := regexp.MustCompile(`token=([0-9a-f]{64})`).FindStringSubmatch(r.Stdout)
	if code != "200" || tok == nil {
		t.Fatalf("script: %s, no token\n%s", code, r)
	}
	for _, kind := range []string{"kernel", "initrd"} {
		u := regexp.MustCompile(`(?m)^` + kind + ` (?:--name \S+ )?(http://\S+)`).FindStringSubmatch(r.Stdout)
		if u == nil {
			t.Fatalf("the script names no %s URL:\n%s", kind, r.Stdout)
		}
		if code, r := s.l.Curl(s.nuc.NS, "-o", "/dev/null", u[1]); code != "200" {
			t.Fatalf("%s %s: %s\n%s", kind, u[1], code, r)
		}
	}
	q := "/ignition?mac=" + hexhyp(node1.MAC) + "&token=" + tok[1]
	if code, r := s.l.Curl(s.nuc.NS, "-o", "/dev/null", flintHTTP+q); code != "200" {
		t.Fatalf("pointer: %s\n%s", code, r)
	}
	ign := filepath.Join(s.l.Dir, "node1.ign")
	if code, r := s.l.Curl(s.nuc.NS, "--cacert", s.ca, "-o", ign, flintHTTPS+q); code != "200" {
		t.Fatalf("config: %s\n%s", code, r)
	}
	raw, err := os.ReadFile(ign)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// node1Reports sends event as node1's flint-report does, with the report
// token from its config.
func (s *monitoredSite) node1Reports(t *testing.T, config []byte, event string) {
	t.Helper()
	rt := regexp.MustCompile(`Bearer(?: |%20)([0-9a-f]{64})`).FindSubmatch(config)
	if rt == nil {
		t.Fatal("no report token in node1's config")
	}
	body := fmt.Sprintf(`{"mac":"%s","event":"%s","detail":"integration test"}`, node1.MAC, event)
	if code, r := s.l.Curl(s.nuc.NS, "--cacert", s.ca, "-o", "/dev/null", "-H", "Authorization: Bearer "+string(rt[1]),
		"-H", "Content-Type: application/json", "--data", body, flintHTTPS+"/api/v1/events"); !strings.HasPrefix(code, "2") {
		t.Fatalf("report %s: %s\n%s", event, code, r)
	}
}
