package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// The layout of the README's "Two or three flint servers", in namespaces:
// the lab's bridge is the site's segment; a 3-member TLS etcd (Debian's
// etcd-server) runs on 198.18.0.21-23, each member in a namespace of its own
// on the bridge; flint A serves from the lab's server namespace (br0,
// 198.18.0.1), flint B from another (eth0, 198.18.0.2). Both run full DHCP
// mode with the same site config (only server.interface and server.address
// differ, which the site's fingerprint leaves out) and their own data
// directories; everything they share lives in etcd under haPrefix.
//
// The segment is a /20 so that the pool holds well over the storm's 2,000
// clients: 198.18.4.1-198.18.15.250.
const (
	haSubnet    = "198.18.0.0/20"
	haPoolStart = "198.18.4.1"
	haPoolEnd   = "198.18.15.250"
	haPrefix    = "/flint/ha-test/"
)

// haFlint is one flint instance of the pair.
type haFlint struct {
	Name       string // "A" or "B"
	NS, Iface  string
	IP         string
	ConfigPath string
	DataDir    string
	*Flint     // nil until started
}

// HTTP is the instance's plain HTTP base URL.
func (f *haFlint) HTTP() string { return fmt.Sprintf("http://%s:%d", f.IP, httpPort) }

// HTTPS is the instance's HTTPS base URL (server.https_port's default).
func (f *haFlint) HTTPS() string { return fmt.Sprintf("https://%s:8443", f.IP) }

// haEnv is the whole lab: the bridge, the etcd members, two flints.
type haEnv struct {
	t       *testing.T
	lab     *Lab
	etcd    *etcdtest.Cluster
	keyFile string // store.encryption_key_file, shared by both instances
	A, B    *haFlint
	site    string // the config's site part (dhcp:, boot:, machines: ...), the same for both
}

// newHAEnv builds the namespaces and starts the etcd members; site is the
// config both instances serve below their server: and store: sections.
func newHAEnv(t *testing.T, site string) *haEnv {
	t.Helper()
	needRoot(t)
	needBinaries(t)
	needTools(t, "ip", "curl", "udhcpc")
	etcdtest.Require(t)
	l := NewLab(t)
	// The segment is a /20 here (see the top of this file).
	l.mustIP(t, "-n", l.Srv, "addr", "del", flintIP+"/24", "dev", "br0")
	l.mustIP(t, "-n", l.Srv, "addr", "add", flintIP+"/20", "dev", "br0")
	e := &haEnv{t: t, lab: l, site: site}
	e.A = &haFlint{Name: "A", NS: l.Srv, Iface: "br0", IP: flintIP}
	hb := l.AddHost(t, "flintb", "02:00:c6:12:00:02")
	hb.SetAddress(t, "198.18.0.2/20")
	e.B = &haFlint{Name: "B", NS: hb.NS, Iface: "eth0", IP: "198.18.0.2"}

	var places []etcdtest.Place
	for i := range 3 {
		ip := fmt.Sprintf("198.18.0.%d", 21+i)
		h := l.AddHost(t, fmt.Sprintf("etcd%d", i+1), fmt.Sprintf("02:00:c6:12:00:%02x", 0x21+i))
		h.SetAddress(t, ip+"/20")
		places = append(places, etcdtest.Place{NS: h.NS, IP: netip.MustParseAddr(ip)})
	}
	e.etcd = etcdtest.StartIn(t, l.Srv, places)
	e.keyFile = e.etcd.EncryptionKeyFile()
	for _, f := range []*haFlint{e.A, e.B} {
		f.DataDir = filepath.Join(l.Dir, "data-"+f.Name)
		f.ConfigPath = l.writeFile(t, "flint-"+f.Name+".yaml", e.yaml(f), 0o644)
	}
	return e
}

// yaml is f's config: its own server section, the shared store and site.
func (e *haEnv) yaml(f *haFlint) string {
	return "# written by flint's integration tests (integration/ha_env_test.go): instance " + f.Name + "\n" +
		serverYAML(f.Iface, f.IP) + e.etcd.StoreSection("etcd", haPrefix, e.keyFile) + e.site
}

// haSite is a site config for the pair: full DHCP mode on the /20 with the
// big pool, live boots, the given machines.
func haSite(machines []machine) string {
	var b strings.Builder
	fmt.Fprintf(&b, `dhcp:
  mode: full
  subnet: %s
  router: %s
  dns: [%s]
  domain: lab.test
  lease_time: 1h
  offer_hold: 30s
  pool: {start: %s, end: %s}
ipxe:
  directory: /usr/lib/ipxe
boot:
  kernel: flatcar/flatcar_production_pxe.vmlinuz
  initrd: flatcar/flatcar_production_pxe_image.cpio.gz
cluster:
  install_mode: live
machines:
`, haSubnet, routerIP, dnsIP, haPoolStart, haPoolEnd)
	for _, m := range machines {
		fmt.Fprintf(&b, "  - {mac: %q, hostname: %s, ip: %s, role: %s}\n", m.MAC, m.Hostname, m.IP, m.Role)
	}
	return b.String()
}

// start starts flint f and waits until it is healthy.
func (e *haEnv) start(f *haFlint) {
	e.t.Helper()
	f.Flint = e.lab.StartFlintIn(e.t, f.NS, f.HTTP(), f.ConfigPath, f.DataDir)
}

// haInPool reports whether ip is an address of the pair's pool.
func haInPool(ip string) bool { return inRange(ip, haPoolStart, haPoolEnd) }

// metric reads one sample of flint f's /metrics (through its admin
// socket): name with its labels as printed, e.g.
// `flint_dhcp_claims_total{result="ok"}`. A sample flint does not expose
// is an error unless absentIsZero (counters with labels appear when first
// counted).
func (e *haEnv) metric(f *haFlint, sample string, absentIsZero bool) (float64, error) {
	code, r := f.API(e.lab, "/metrics")
	if code != "200" {
		return 0, fmt.Errorf("GET /metrics from %s: status %s\n%s", f.Name, code, r)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(r.Stdout)
	if m == nil {
		if absentIsZero {
			return 0, nil
		}
		return 0, fmt.Errorf("%s's /metrics has no sample %s", f.Name, sample)
	}
	return strconv.ParseFloat(m[1], 64)
}

// leases is every lease on record, by address, read through instance f's
// admin API (the store is shared, so either instance gives the same).
func (e *haEnv) leases(f *haFlint) (map[string]string, error) {
	ls, err := f.Leases(e.lab)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", f.Name, err)
	}
	return ls, nil
}

// log is what flint f has logged so far.
func (f *haFlint) log() string { return f.Stdout.String() + f.Stderr.String() }
