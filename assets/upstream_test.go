package assets

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/flint-boot/flint/config"
)

// A fake upstream: a directory laid out like the Flatcar release server and
// the K3s/etcd GitHub release downloads, served over loopback HTTP (with
// Range, If-Range and ETag like the real ones) and readable as file://.

const (
	fcV1   = "4152.2.0"
	fcV2   = "4230.1.0"
	k3sV1  = "v1.31.4+k3s1"
	k3sV2  = "v1.32.1+k3s1"
	etcdV1 = "v3.5.17"
)

type request struct {
	Path    string // decoded
	RawURI  string // as sent
	Range   string
	IfRange string
}

type upstream struct {
	t    *testing.T
	root string
	srv  *httptest.Server

	mu       sync.Mutex
	requests []request
	// cut: the first GET of this path (decoded) is aborted after n body bytes.
	cut map[string]int64
	// ignoreRange: answer every GET with the whole file, as some servers do.
	ignoreRange bool
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, root: t.TempDir(), cut: map[string]int64{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.requests = append(u.requests, request{Path: r.URL.Path, RawURI: r.RequestURI, Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range")})
	cutAt, cut := u.cut[r.URL.Path]
	delete(u.cut, r.URL.Path)
	ignore := u.ignoreRange
	u.mu.Unlock()

	f, err := os.Open(filepath.Join(u.root, filepath.FromSlash(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	if ignore {
		r.Header.Del("Range")
	}
	// A strong validator that changes when the file is replaced.
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	var out http.ResponseWriter = w
	if cut {
		out = &cuttingWriter{ResponseWriter: w, left: cutAt}
	}
	http.ServeContent(out, r, fi.Name(), fi.ModTime(), f)
}

// cuttingWriter sends left bytes of the body and then drops the connection.
// It has no ReadFrom, so ServeContent's copy goes through Write.
type cuttingWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cuttingWriter) Write(b []byte) (int, error) {
	if int64(len(b)) <= c.left {
		c.left -= int64(len(b))
		return c.ResponseWriter.Write(b)
	}
	c.ResponseWriter.Write(b[:c.left])
	c.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // the server closes the connection mid-body
}

// contentGETs counts requests for release files (not checksums or signatures).
func (u *upstream) contentGETs() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.requests {
		if !isMeta(r.Path) {
			n++
		}
	}
	return n
}

func (u *upstream) allRequests() []request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]request(nil), u.requests...)
}

func (u *upstream) resetLog() {
	u.mu.Lock()
	u.requests = nil
	u.mu.Unlock()
}

func isMeta(p string) bool {
	return strings.HasSuffix(p, ".sig") || strings.HasSuffix(p, ".DIGESTS") || strings.HasSuffix(p, ".txt") || strings.HasSuffix(p, "SHA256SUMS")
}

func (u *upstream) write(rel string, data []byte) {
	u.t.Helper()
	p := filepath.Join(u.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		u.t.Fatal(err)
	}
	// Distinct mtimes, so a replaced file gets a new validator.
	mt := time.Now().Add(time.Duration(rand.IntN(1000000)) * time.Microsecond)
	os.Chtimes(p, mt, mt)
}

// release is what the fake upstream publishes for one set of versions.
type releaseFiles struct {
	kernel, initrd, image []byte
	k3s, airgap           []byte
	etcd, etcdctl         []byte
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// publishFlatcar writes a Flatcar release signed by key.
func (u *upstream) publishFlatcar(version string, key *openpgp.Entity, seed uint64) releaseFiles {
	rf := releaseFiles{
		kernel: randomBytes(seed+1, 2<<20),
		initrd: randomBytes(seed+2, 3<<20),
		image:  randomBytes(seed+3, 1<<20),
	}
	for name, data := range map[string][]byte{kernelFile: rf.kernel, initrdFile: rf.initrd, imageFile: rf.image} {
		u.publishFlatcarFile(version, name, data, key)
	}
	return rf
}

func (u *upstream) publishFlatcarFile(version, name string, data []byte, key *openpgp.Entity) {
	base := "flatcar/" + version + "/" + name
	u.write(base, data)
	u.write(base+".sig", detachSign(u.t, key, data))
	u.write(base+".DIGESTS", []byte(digestsFile(name, data)))
}

func (u *upstream) publishK3s(version string, seed uint64) releaseFiles {
	rf := releaseFiles{k3s: randomBytes(seed+4, 2<<20), airgap: randomBytes(seed+5, 512<<10)}
	u.write("k3s/"+version+"/k3s", rf.k3s)
	u.write("k3s/"+version+"/k3s-airgap-images-amd64.tar.zst", rf.airgap)
	u.write("k3s/"+version+"/sha256sum-amd64.txt", []byte(
		sha256Line(randomBytes(seed+6, 100), "k3s-arm64")+
			sha256Line(rf.k3s, "k3s")+
			sha256Line(rf.airgap, "k3s-airgap-images-amd64.tar.zst")))
	return rf
}

func (u *upstream) publishEtcd(version string, seed uint64) releaseFiles {
	rf := releaseFiles{etcd: randomBytes(seed+7, 1<<20), etcdctl: randomBytes(seed+8, 1<<20)}
	name := "etcd-" + version + "-linux-amd64"
	tgz := tarGz(u.t, map[string][]byte{
		name + "/etcd":               rf.etcd,
		name + "/etcdctl":            rf.etcdctl,
		name + "/etcdutl":            randomBytes(seed+9, 1000),
		name + "/README.md":          []byte("etcd\n"),
		name + "/Documentation/x.md": []byte("docs\n"),
	})
	u.write("etcd/"+version+"/"+name+".tar.gz", tgz)
	u.write("etcd/"+version+"/SHA256SUMS", []byte(
		sha256Line(randomBytes(seed+10, 10), "etcd-"+version+"-linux-arm64.tar.gz")+sha256Line(tgz, name+".tar.gz")))
	return rf
}

func sha256Line(data []byte, name string) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]) + "  " + name + "\n"
}

// digestsFile is Flatcar's FILE.DIGESTS format.
func digestsFile(name string, data []byte) string {
	m := md5.Sum(data)
	s1 := sha1.Sum(data)
	s5 := sha512.Sum512(data)
	return "# MD5 HASH\n" + hex.EncodeToString(m[:]) + "  " + name + "\n" +
		"# SHA1 HASH\n" + hex.EncodeToString(s1[:]) + "  " + name + "\n" +
		"# SHA512 HASH\n" + hex.EncodeToString(s5[:]) + "  " + name + "\n"
}

func tarGz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	for name, data := range files {
		dir := filepath.Dir(name)
		if !dirs[dir] {
			dirs[dir] = true
			tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// newKey makes an Ed25519 signing key (fast to generate).
func newKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	return newKeyAt(t, name, time.Now(), 0)
}

func newKeyAt(t testing.TB, name string, created time.Time, lifetime uint32) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return created }, KeyLifetimeSecs: lifetime}
	e, err := openpgp.NewEntity(name, "test", name+"@flint.invalid", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func detachSign(t testing.TB, key *openpgp.Entity, data []byte) []byte {
	t.Helper()
	return detachSignAt(t, key, data, time.Now())
}

func detachSignAt(t testing.TB, key *openpgp.Entity, data []byte, at time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, key, bytes.NewReader(data), &packet.Config{Time: func() time.Time { return at }}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// armoredPublicKey writes the key as the ASCII-armored file signing_key names.
func armoredPublicKey(t *testing.T, key *openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := filepath.Join(t.TempDir(), "signing-key.asc")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// source builds the assets section pointing at base (http://... or file://...).
func assetsSection(base, keyFile, fc, k3s, etcd string) config.Assets {
	return config.Assets{
		Flatcar: config.FlatcarSource{Channel: "stable", Version: fc, Arch: "amd64-usr", BaseURL: base + "/flatcar", SigningKey: keyFile, InstallImage: true},
		K3s:     config.K3sSource{Version: k3s, BaseURL: base + "/k3s", AirgapImages: true},
		Etcd:    config.EtcdSource{Version: etcd, BaseURL: base + "/etcd"},
	}
}

func testOptions() Options {
	return Options{Attempts: 1, RetryBackoff: 10 * time.Millisecond, StallTimeout: 10 * time.Second}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEqualBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (sha256 %s), want %d bytes (sha256 %s)", what, len(got), short256(got), len(want), short256(want))
	}
}

func short256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}

// noParts fails if a partial download is left in the store.
func noParts(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(dir, stateDir, "parts"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("partial download left behind: %s", p)
		}
		return nil
	})
}
