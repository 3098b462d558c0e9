package assets

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flint-boot/flint/config"
)

func siteConfig(t *testing.T, fc, k3s, etcd string, airgap bool) *config.Config {
	t.Helper()
	mode := config.InstallDisk
	if fc == "" {
		mode = config.InstallLive // validate requires a Flatcar version for disk installs
	}
	y := fmt.Sprintf(`
dhcp: {mode: "off"}
machines:
  - {mac: "02:00:00:00:00:01", hostname: n1, ip: 10.0.0.10, role: server}
  - {mac: "02:00:00:00:00:02", hostname: n2, ip: 10.0.0.11, role: agent, kernel: "http://elsewhere/vmlinuz"}
assets:
  flatcar: {version: %q}
  k3s: {version: %q, airgap_images: %v}
  etcd: {version: %q}
cluster: {install_mode: %s}
`, fc, k3s, airgap, etcd, mode)
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// live switches a parsed config's machines to live PXE boots (no disk image).
func live(cfg *config.Config) *config.Config {
	cfg.Cluster.InstallMode = config.InstallLive
	return cfg
}

// noVersion is a site whose machines install to disk though the config names
// no Flatcar version (validate refuses it; the store still says what lacks).
func noVersion(t *testing.T) *config.Config {
	cfg := live(siteConfig(t, "", k3sV1, etcdV1, false))
	cfg.Cluster.InstallMode = config.InstallDisk
	return cfg
}

func TestMissing(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	cfg := siteConfig(t, fcV1, k3sV1, etcdV1, false)

	st := mustOpen(t, dir) // no manifest yet: an empty store
	all := []string{FlatcarKernel, FlatcarInitrd, FlatcarImage, K3s, Etcd, Etcdctl}
	if got := st.Missing(cfg); !reflect.DeepEqual(got, all) {
		t.Errorf("empty store, disk installs: Missing = %v, want %v", got, all)
	}
	if got := st.Missing(live(siteConfig(t, fcV1, k3sV1, etcdV1, false))); !reflect.DeepEqual(got, []string{FlatcarKernel, FlatcarInitrd, K3s, Etcd, Etcdctl}) {
		t.Errorf("live PXE only: Missing = %v, want everything but the image", got)
	}

	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, dir)
	if got := st.Missing(cfg); len(got) != 0 {
		t.Errorf("after sync: Missing = %v (%v), want none", got, st.Check(cfg))
	}
	if got := st.Missing(siteConfig(t, fcV1, k3sV1, etcdV1, true)); len(got) != 0 {
		t.Errorf("after sync with airgap images: Missing = %v", got)
	}

	// The config moves to a new K3s: the store holds the old one.
	gaps := st.Check(live(siteConfig(t, fcV1, k3sV2, etcdV1, false)))
	if len(gaps) != 1 || gaps[0].Name != K3s || !strings.Contains(gaps[0].Reason, k3sV1) || !strings.Contains(gaps[0].Reason, "flint assets sync") {
		t.Errorf("after a K3s version change: %v, want one k3s gap naming %s and the fix", gaps, k3sV1)
	}

	// A disk install without a Flatcar version cannot be served.
	if got := st.Missing(noVersion(t)); !reflect.DeepEqual(got, []string{FlatcarImage}) {
		t.Errorf("no Flatcar version: Missing = %v, want [flatcar-image]", got)
	}

	// Files placed by hand count, synced or not.
	hand := t.TempDir()
	for _, f := range []string{"flatcar/flatcar_production_pxe.vmlinuz", "flatcar/flatcar_production_pxe_image.cpio.gz", "k3s/k3s", "etcd/etcd"} {
		os.MkdirAll(filepath.Join(hand, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(hand, f), []byte("x"), 0o644)
	}
	if got := mustOpen(t, hand).Missing(live(cfg)); !reflect.DeepEqual(got, []string{Etcdctl}) {
		t.Errorf("hand-placed store: Missing = %v, want [etcdctl]", got)
	}
}

func TestOpenRejectsDamagedManifest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{not json"), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "flint assets sync") {
		t.Fatalf("Open of a damaged manifest: %v, want an error saying how to rebuild it", err)
	}
}

func TestDirFor(t *testing.T) {
	cfg := &config.Config{}
	if got := DirFor(cfg, "/var/lib/flint"); got != "/var/lib/flint/assets" {
		t.Errorf("DirFor default = %s", got)
	}
	cfg.Boot.AssetsDir = "/srv/assets"
	if got := DirFor(cfg, "/var/lib/flint"); got != "/srv/assets" {
		t.Errorf("DirFor with boot.assets_dir = %s", got)
	}
}

func TestParseDigests(t *testing.T) {
	kernel := digestsFile(kernelFile, []byte("kernel"))
	other := digestsFile("flatcar_production_image.bin", []byte("image"))
	want := kernel[strings.Index(kernel, "# SHA512 HASH\n")+14:][:128]

	got, err := parseDigests([]byte(other+kernel), kernelFile)
	if err != nil || got != want {
		t.Fatalf("parseDigests = %q, %v; want %q", got, err, want)
	}
	// A clearsigned .DIGESTS.asc parses the same.
	asc := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + kernel + "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
	if got, err := parseDigests([]byte(asc), kernelFile); err != nil || got != want {
		t.Errorf("clearsigned: %q, %v", got, err)
	}
	// The MD5 and SHA1 lines are never taken for SHA512.
	onlyMD5 := strings.SplitAfter(kernel, "# SHA1 HASH")[0]
	if _, err := parseDigests([]byte(onlyMD5), kernelFile); err == nil {
		t.Error("a DIGESTS without SHA512 was accepted")
	}
	if _, err := parseDigests([]byte(kernel), initrdFile); err == nil || !strings.Contains(err.Error(), initrdFile) {
		t.Errorf("a file the DIGESTS does not list: %v", err)
	}
	twice := kernel + "# SHA512 HASH\n" + strings.Repeat("ab", 64) + "  " + kernelFile + "\n"
	if _, err := parseDigests([]byte(twice), kernelFile); err == nil {
		t.Error("two different SHA512 lines were accepted")
	}
}

func TestParseSHA256Sums(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	sums := a + "  k3s-arm64\n" + b + " *k3s\n" + a + "  ./SHA256SUMS.other\n"
	if got, err := parseSHA256Sums([]byte(sums), "k3s"); err != nil || got != b {
		t.Errorf("parseSHA256Sums(k3s) = %q, %v; want %q", got, err, b)
	}
	if _, err := parseSHA256Sums([]byte(sums), "k3s-airgap-images-amd64.tar.zst"); err == nil {
		t.Error("a missing file was found")
	}
	if _, err := parseSHA256Sums([]byte("abc  k3s\n"), "k3s"); err == nil {
		t.Error("a short hash was accepted")
	}
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 100-199/1000", 100, 199, 1000, true},
		{"bytes 100-199/*", 100, 199, -1, true},
		{"bytes */1000", -1, -1, 1000, true},
		{"bytes=100-199/1000", 0, 0, 0, false},
		{"bytes 100/1000", 0, 0, 0, false},
	} {
		s, e, tot, ok := parseContentRange(c.in)
		if s != c.start || e != c.end || tot != c.total || ok != c.ok {
			t.Errorf("parseContentRange(%q) = %d %d %d %v", c.in, s, e, tot, ok)
		}
	}
}

func TestFileJoinEscapes(t *testing.T) {
	if got := fileJoin("https://github.com/k3s-io/k3s/releases/download/", "v1.31.4+k3s1", "k3s"); got != "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s" {
		t.Errorf("fileJoin = %s", got)
	}
	p, ok, err := localPath(fileJoin("file:///srv/mirror/k3s", "v1.31.4+k3s1", "k3s"))
	if !ok || err != nil || p != "/srv/mirror/k3s/v1.31.4+k3s1/k3s" {
		t.Errorf("localPath = %s %v %v", p, ok, err)
	}
	if _, _, err := localPath("file://host/srv"); err == nil {
		t.Error("a file URL with a host was accepted")
	}
}

// `flint assets sync` fetches what the machines' install modes need
// (config.AssetSources): the Flatcar disk image when a machine installs to
// disk, though assets.flatcar.install_image is not set; not when all run live.
func TestSyncFollowsInstallModes(t *testing.T) {
	p := publish(t)
	src := p.src()
	a := assetsSection(src.base, src.key, src.fc, src.k3s, src.etcd)
	a.Flatcar.InstallImage = false
	image := filepath.Join("flatcar", fcV1, "flatcar_production_image.bin.bz2")
	for _, mode := range []string{config.InstallDisk, config.InstallLive} {
		t.Run(mode, func(t *testing.T) {
			cfg := &config.Config{Assets: a, Cluster: config.Cluster{InstallMode: mode},
				Machines: []config.Machine{{Hostname: "n1", Role: config.RoleServer}}}
			dir := t.TempDir()
			if _, err := Sync(t.Context(), dir, cfg.AssetSources(), testOptions()); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(filepath.Join(dir, image))
			if got, want := err == nil, mode == config.InstallDisk; got != want {
				t.Errorf("install_mode %s: disk image synced = %v, want %v", mode, got, want)
			}
		})
	}
}
