package assets

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// published is a fake upstream with one good release of each product.
type published struct {
	up      *upstream
	keyFile string
	fc      releaseFiles
	k3s     releaseFiles
	etcd    releaseFiles
}

func publish(t *testing.T) *published {
	key := newKey(t, "flatcar-test")
	up := newUpstream(t)
	p := &published{up: up, keyFile: armoredPublicKey(t, key)}
	p.fc = up.publishFlatcar(fcV1, key, 100)
	p.k3s = up.publishK3s(k3sV1, 200)
	p.etcd = up.publishEtcd(etcdV1, 300)
	return p
}

func (p *published) src() sourceArgs {
	return sourceArgs{base: p.up.srv.URL, key: p.keyFile, fc: fcV1, k3s: k3sV1, etcd: etcdV1}
}

type sourceArgs struct{ base, key, fc, k3s, etcd string }

func syncWith(t *testing.T, dir string, a sourceArgs, opt Options) (*Result, error) {
	t.Helper()
	return Sync(context.Background(), dir, assetsSection(a.base, a.key, a.fc, a.k3s, a.etcd), opt)
}

// checkStore asserts the store serves exactly the published bytes at the
// stable and versioned paths, with the right modes and manifest.
func checkStore(t *testing.T, dir string, p *published, fc, k3s, etcd string) {
	t.Helper()
	files := []struct {
		path string
		want []byte
		mode os.FileMode
	}{
		{"flatcar/flatcar_production_pxe.vmlinuz", p.fc.kernel, 0o644},
		{"flatcar/flatcar_production_pxe_image.cpio.gz", p.fc.initrd, 0o644},
		{"flatcar/" + fc + "/flatcar_production_pxe.vmlinuz", p.fc.kernel, 0o644},
		{"flatcar/" + fc + "/flatcar_production_image.bin.bz2", p.fc.image, 0o644},
		{"flatcar/current/flatcar_production_image.bin.bz2", p.fc.image, 0o644},
		{"k3s/k3s", p.k3s.k3s, 0o755},
		{"k3s/" + k3s + "/k3s", p.k3s.k3s, 0o755},
		{"k3s/k3s-airgap-images-amd64.tar.zst", p.k3s.airgap, 0o644},
		{"etcd/etcd", p.etcd.etcd, 0o755},
		{"etcd/etcdctl", p.etcd.etcdctl, 0o755},
		{"etcd/" + etcd + "/etcdctl", p.etcd.etcdctl, 0o755},
	}
	for _, f := range files {
		full := filepath.Join(dir, filepath.FromSlash(f.path))
		mustEqualBytes(t, f.path, readFile(t, full), f.want)
		fi, err := os.Stat(full)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	// flatcar-install -b BASE -V VERSION fetches these two.
	for _, sig := range []string{"flatcar/" + fc + "/flatcar_production_image.bin.bz2.sig", "flatcar/" + fc + "/flatcar_production_pxe.vmlinuz.sig"} {
		if _, err := os.Stat(filepath.Join(dir, sig)); err != nil {
			t.Errorf("signature missing: %v", err)
		}
	}
	// Stable names are relative links through current/, so the directory can move.
	for link, want := range map[string]string{
		"flatcar/flatcar_production_pxe.vmlinuz": "current/flatcar_production_pxe.vmlinuz",
		"flatcar/current":                        fc,
		"k3s/current":                            k3s,
		"etcd/etcdctl":                           "current/etcdctl",
	} {
		got, err := os.Readlink(filepath.Join(dir, link))
		if err != nil || got != want {
			t.Errorf("link %s -> %q (%v), want -> %q", link, got, err, want)
		}
	}

	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		version string
		data    []byte
	}{
		FlatcarKernel: {fc, p.fc.kernel}, FlatcarInitrd: {fc, p.fc.initrd}, FlatcarImage: {fc, p.fc.image},
		K3s: {k3s, p.k3s.k3s}, K3sAirgapImages: {k3s, p.k3s.airgap},
		Etcd: {etcd, p.etcd.etcd}, Etcdctl: {etcd, p.etcd.etcdctl},
	}
	for name, w := range want {
		e, ok := st.Lookup(name)
		if !ok {
			t.Errorf("manifest has no current %s", name)
			continue
		}
		s256 := sha256.Sum256(w.data)
		s512 := sha512.Sum512(w.data)
		if e.Version != w.version || e.Size != int64(len(w.data)) || e.SHA256 != hex.EncodeToString(s256[:]) || e.SHA512 != hex.EncodeToString(s512[:]) {
			t.Errorf("manifest %s: version %s size %d sha256 %s, want %s %d %x", name, e.Version, e.Size, e.SHA256, w.version, len(w.data), s256)
		}
		if e.Source == "" || e.VerifiedBy == "" || e.FetchedAt.IsZero() {
			t.Errorf("manifest %s lacks source, verified_by or fetched_at: %+v", name, e)
		}
		mustEqualBytes(t, "manifest path of "+name, readFile(t, st.File(e)), w.data)
	}
	noParts(t, dir)
}

func TestSyncClean(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	res, err := syncWith(t, dir, p.src(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
	for _, rr := range res.Releases {
		if !rr.Switched || len(rr.Fetched) == 0 {
			t.Errorf("%s: switched %v, fetched %d; want a fresh switch", rr.Product, rr.Switched, len(rr.Fetched))
		}
	}
	if res.UpToDate() {
		t.Error("a first sync reports up to date")
	}
	e, _ := mustOpen(t, dir).Lookup(FlatcarKernel)
	if !strings.Contains(e.VerifiedBy, "OpenPGP") || !strings.Contains(e.VerifiedBy, "DIGESTS") {
		t.Errorf("flatcar kernel verified_by %q, want the signature and DIGESTS", e.VerifiedBy)
	}
	// The '+' in K3s versions goes out escaped.
	sawEscaped := false
	for _, r := range p.up.allRequests() {
		if strings.Contains(r.RawURI, "/k3s/v1.31.4%2Bk3s1/k3s") {
			sawEscaped = true
		}
		if strings.Contains(r.RawURI, "+") {
			t.Errorf("request with a raw '+': %s", r.RawURI)
		}
	}
	if !sawEscaped {
		t.Error("no request for /k3s/v1.31.4%2Bk3s1/k3s")
	}
	// manifest.json is valid JSON with every entry.
	var m Manifest
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, ManifestFile)), &m); err != nil || len(m.Entries) != 7 {
		t.Fatalf("manifest: %v, %d entries, want 7", err, len(m.Entries))
	}
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func TestSyncSecondRunDownloadsNothing(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(dir, ManifestFile))
	p.up.resetLog()

	res, err := syncWith(t, dir, p.src(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !res.UpToDate() || res.Requests != 0 || res.Bytes != 0 {
		t.Fatalf("second sync: up to date %v, %d requests, %d bytes; want true, 0, 0", res.UpToDate(), res.Requests, res.Bytes)
	}
	if n := len(p.up.allRequests()); n != 0 {
		t.Fatalf("second sync sent %d requests: %+v", n, p.up.allRequests())
	}
	// The entries stay as they were; only the sync record counts the run.
	var b, a Manifest
	json.Unmarshal(before, &b)
	json.Unmarshal(readFile(t, filepath.Join(dir, ManifestFile)), &a)
	if !reflect.DeepEqual(a.Entries, b.Entries) || !a.Updated.Equal(b.Updated) {
		t.Error("an up-to-date sync changed the manifest's entries")
	}
	if a.Syncs.Runs != 2 || !a.Syncs.LastOK || a.Syncs.Bytes != b.Syncs.Bytes || b.Syncs.Bytes == 0 || len(a.Syncs.Failures) != 0 {
		t.Errorf("sync record after two good runs: %+v (after the first: %+v)", a.Syncs, b.Syncs)
	}

	// A touched file is re-hashed, found intact and kept: still no request.
	kernel := filepath.Join(dir, "flatcar", fcV1, kernelFile)
	later := time.Now().Add(time.Hour)
	os.Chtimes(kernel, later, later)
	res, err = syncWith(t, dir, p.src(), testOptions())
	if err != nil || res.Requests != 0 {
		t.Fatalf("after touch: %v, %d requests; want nil, 0", err, res.Requests)
	}

	// A damaged file is fetched again, and only that one.
	os.WriteFile(filepath.Join(dir, "k3s", k3sV1, "k3s"), []byte("damaged"), 0o755)
	p.up.resetLog()
	res, err = syncWith(t, dir, p.src(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.up.contentGETs(); got != 1 {
		t.Errorf("after damaging k3s: %d content requests, want 1", got)
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncResumesInterruptedDownload(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	initrdPath := "/flatcar/" + fcV1 + "/" + initrdFile
	p.up.cut[initrdPath] = 1<<20 + 12345

	_, err := syncWith(t, dir, p.src(), testOptions())
	if err == nil {
		t.Fatal("sync with a connection cut mid-file succeeded")
	}
	if !strings.Contains(err.Error(), "resume") {
		t.Errorf("error %q does not say the download resumes", err)
	}
	part := filepath.Join(dir, stateDir, "parts", "flatcar", fcV1, initrdFile+".part")
	fi, err := os.Stat(part)
	if err != nil || fi.Size() == 0 || fi.Size() >= int64(len(p.fc.initrd)) {
		t.Fatalf("partial download: %v, want a non-empty, incomplete .part", err)
	}
	have := fi.Size()
	// Nothing half-done is served: the stable initrd does not exist yet.
	if _, err := os.Stat(filepath.Join(dir, "flatcar", initrdFile)); err == nil {
		t.Error("the initrd link exists after a failed download")
	}
	if _, err := os.Stat(filepath.Join(dir, "flatcar", fcV1, initrdFile)); err == nil {
		t.Error("a partial initrd is in the store")
	}

	p.up.resetLog()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	var ranged []request
	for _, r := range p.up.allRequests() {
		if r.Path == initrdPath {
			ranged = append(ranged, r)
		}
	}
	if len(ranged) != 1 || ranged[0].Range != fmt.Sprintf("bytes=%d-", have) || ranged[0].IfRange == "" {
		t.Fatalf("second run asked for the initrd with %+v, want one request with Range: bytes=%d- and If-Range", ranged, have)
	}
	// The kernel was verified in the first run and is not fetched again.
	for _, r := range p.up.allRequests() {
		if r.Path == "/flatcar/"+fcV1+"/"+kernelFile {
			t.Errorf("kernel fetched again: %+v", r)
		}
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncRetriesWithinOneRun(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	k3sPath := "/k3s/" + k3sV1 + "/k3s"
	p.up.cut[k3sPath] = 700000
	opt := testOptions()
	opt.Attempts = 2
	if _, err := syncWith(t, dir, p.src(), opt); err != nil {
		t.Fatal(err)
	}
	var ranges []string
	for _, r := range p.up.allRequests() {
		if r.Path == k3sPath {
			ranges = append(ranges, r.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("k3s requests had ranges %q, want a plain GET then a ranged one", ranges)
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncRestartsWhenUpstreamFileChanged(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	k3sPath := "/k3s/" + k3sV1 + "/k3s"
	p.up.cut[k3sPath] = 500000
	if _, err := syncWith(t, dir, p.src(), testOptions()); err == nil {
		t.Fatal("cut download succeeded")
	}
	// The release is re-published with other bytes (a re-spin): the
	// validator changes, the server answers If-Range with the whole file.
	p.k3s = p.up.publishK3s(k3sV1, 999)
	p.up.resetLog()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	reqs := p.up.allRequests()
	found := false
	for _, r := range reqs {
		if r.Path == k3sPath {
			found = true
			if r.Range == "" || r.IfRange == "" {
				t.Errorf("resume request without Range/If-Range: %+v", r)
			}
		}
	}
	if !found {
		t.Fatal("k3s not requested again")
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncRestartsWhenServerIgnoresRange(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	etcdTar := "/etcd/" + etcdV1 + "/etcd-" + etcdV1 + "-linux-amd64.tar.gz"
	p.up.cut[etcdTar] = 300000
	if _, err := syncWith(t, dir, p.src(), testOptions()); err == nil {
		t.Fatal("cut download succeeded")
	}
	p.up.ignoreRange = true
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncRejectsCorruptFile(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	// K3s v2 is published, then its binary is damaged on the mirror.
	p.up.publishK3s(k3sV2, 400)
	bad := randomBytes(401, 2<<20)
	p.up.write("k3s/"+k3sV2+"/k3s", bad)
	a := p.src()
	a.k3s = k3sV2
	_, err := syncWith(t, dir, a, testOptions())
	var he *HashError
	if !errors.As(err, &he) {
		t.Fatalf("sync of a corrupt k3s: %v, want a HashError", err)
	}
	badSum := sha256.Sum256(bad)
	if he.File != "k3s" || he.Algo != "sha256" || he.Got != hex.EncodeToString(badSum[:]) || he.Expected == he.Got || !strings.Contains(he.Source, "sha256sum-amd64.txt") {
		t.Errorf("HashError %+v: want file k3s, sha256, got the corrupt file's hash", he)
	}
	for _, s := range []string{"k3s", he.Expected, he.Got} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	// Nothing of v2 kept; v1 still served and current.
	if _, err := os.Stat(filepath.Join(dir, "k3s", k3sV2, "k3s")); err == nil {
		t.Error("the corrupt k3s is in the store")
	}
	noParts(t, dir)
	mustEqualBytes(t, "k3s/k3s after a rejected update", readFile(t, filepath.Join(dir, "k3s", "k3s")), p.k3s.k3s)
	st := mustOpen(t, dir)
	if cur, _ := st.Lookup(K3s); cur.Version != k3sV1 {
		t.Errorf("current k3s is %s, want %s", cur.Version, k3sV1)
	}
	if _, ok := st.LookupVersion(K3s, k3sV2); ok {
		t.Error("manifest lists the rejected k3s")
	}
	// The other releases were not disturbed.
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncRejectsDigestsMismatch(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	// A good signature but a DIGESTS file for other bytes.
	p.up.write("flatcar/"+fcV1+"/"+initrdFile+".DIGESTS", []byte(digestsFile(initrdFile, []byte("other"))))
	_, err := syncWith(t, dir, p.src(), testOptions())
	var he *HashError
	if !errors.As(err, &he) || he.Algo != "sha512" || he.File != initrdFile {
		t.Fatalf("got %v, want a sha512 HashError for the initrd", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "flatcar", fcV1, initrdFile)); err == nil {
		t.Error("the initrd is in the store")
	}
	if _, err := os.Lstat(filepath.Join(dir, "flatcar", "current")); err == nil {
		t.Error("flatcar/current points at a release that failed verification")
	}
	noParts(t, dir)
}

func TestSyncRejectsWrongSignature(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	// Flatcar v2 arrives signed by someone else's key.
	other := newKey(t, "mallory")
	p.up.publishFlatcar(fcV2, other, 500)
	a := p.src()
	a.fc = fcV2
	_, err := syncWith(t, dir, a, testOptions())
	var se *SignatureError
	if !errors.As(err, &se) {
		t.Fatalf("sync of a release signed by another key: %v, want a SignatureError", err)
	}
	otherID := fmt.Sprintf("%016X", other.PrimaryKey.KeyId)
	if se.KeyID != otherID || !strings.Contains(err.Error(), "bad signature by key "+otherID) {
		t.Errorf("error %q: want 'bad signature by key %s'", err, otherID)
	}
	if _, err := os.Stat(filepath.Join(dir, "flatcar", fcV2)); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "flatcar", fcV2))
		if len(entries) > 0 {
			t.Errorf("files of the rejected release are in the store: %v", entries)
		}
	}
	noParts(t, dir)
	// The previous release is untouched and still current.
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
	// The manifest's sync record (flint's asset sync metrics) counts the
	// failed run against Flatcar and keeps the last success.
	st := mustOpen(t, dir)
	if r := st.Syncs(); r.Runs != 2 || r.LastOK || r.Failures["flatcar"] != 1 || len(r.Failures) != 1 || !r.LastSuccess.Before(r.LastRun) {
		t.Errorf("sync record after a good and a refused run: %+v", r)
	}
}

func TestSyncRejectsTamperedFileWithRightKey(t *testing.T) {
	key := newKey(t, "flatcar-test")
	p := publish(t)
	p.keyFile = armoredPublicKey(t, key)
	rf := p.up.publishFlatcar(fcV1, key, 600)
	// The kernel changes after it was signed (and DIGESTS follows it).
	tampered := append([]byte(nil), rf.kernel...)
	tampered[12345] ^= 1
	p.up.write("flatcar/"+fcV1+"/"+kernelFile, tampered)
	p.up.write("flatcar/"+fcV1+"/"+kernelFile+".DIGESTS", []byte(digestsFile(kernelFile, tampered)))
	dir := t.TempDir()
	_, err := syncWith(t, dir, p.src(), testOptions())
	var se *SignatureError
	if !errors.As(err, &se) || se.KeyID != fmt.Sprintf("%016X", key.PrimaryKey.KeyId) {
		t.Fatalf("got %v, want a bad signature by the configured key", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "flatcar", fcV1, kernelFile)); err == nil {
		t.Error("the tampered kernel is in the store")
	}
}

func TestSyncAcceptsSignatureOfSinceExpiredKey(t *testing.T) {
	// Flatcar rotates signing subkeys yearly; a release signed while a key
	// was valid must still verify after the key expired.
	created := time.Now().Add(-2 * 365 * 24 * time.Hour)
	key := newKeyAt(t, "old-key", created, 365*24*3600)
	up := newUpstream(t)
	signedAt := created.Add(30 * 24 * time.Hour)
	data := map[string][]byte{kernelFile: randomBytes(1, 100000), initrdFile: randomBytes(2, 100000), imageFile: randomBytes(3, 1000)}
	for name, b := range data {
		base := "flatcar/" + fcV1 + "/" + name
		up.write(base, b)
		up.write(base+".sig", detachSignAt(t, key, b, signedAt))
		up.write(base+".DIGESTS", []byte(digestsFile(name, b)))
	}
	up.publishK3s(k3sV1, 1)
	up.publishEtcd(etcdV1, 2)
	dir := t.TempDir()
	_, err := syncWith(t, dir, sourceArgs{up.srv.URL, armoredPublicKey(t, key), fcV1, k3sV1, etcdV1}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "kernel", readFile(t, filepath.Join(dir, "flatcar", kernelFile)), data[kernelFile])
}

func TestSyncFileURL(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	a := p.src()
	a.base = "file://" + filepath.ToSlash(p.up.root)
	res, err := syncWith(t, dir, a, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.up.allRequests()); n != 0 {
		t.Errorf("a file:// sync sent %d HTTP requests", n)
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
	k, _ := mustOpen(t, dir).Lookup(K3s)
	if !strings.HasPrefix(k.Source, "file://") {
		t.Errorf("k3s source %q, want the file:// URL", k.Source)
	}
	if res.Bytes == 0 {
		t.Error("file:// sync counted no bytes")
	}
	// Second run: up to date, nothing opened.
	res, err = syncWith(t, dir, a, testOptions())
	if err != nil || !res.UpToDate() || res.Requests != 0 {
		t.Fatalf("second file:// sync: %v, up to date %v, %d opens", err, res.UpToDate(), res.Requests)
	}
}

func TestSyncSwitchesVersionsAndBack(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	v1 := p.k3s
	v2 := p.up.publishK3s(k3sV2, 700)
	a := p.src()
	a.k3s = k3sV2
	res, err := syncWith(t, dir, a, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "k3s/k3s on v2", readFile(t, filepath.Join(dir, "k3s", "k3s")), v2.k3s)
	if !res.Releases[1].Switched || res.Releases[0].Switched {
		t.Errorf("switched flags %v %v, want only k3s", res.Releases[0].Switched, res.Releases[1].Switched)
	}
	// Back to v1: it is still in the store, so only the link moves.
	p.up.resetLog()
	res, err = syncWith(t, dir, p.src(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || !res.Releases[1].Switched {
		t.Errorf("switch back: %d requests, switched %v; want 0 and true", res.Requests, res.Releases[1].Switched)
	}
	mustEqualBytes(t, "k3s/k3s back on v1", readFile(t, filepath.Join(dir, "k3s", "k3s")), v1.k3s)
	if e, _ := mustOpen(t, dir).LookupVersion(K3s, k3sV2); e.Current {
		t.Error("v2 still marked current")
	}

	// Prune deletes v2, which is no longer configured, and nothing current.
	opt := testOptions()
	opt.Prune = true
	res, err = syncWith(t, dir, p.src(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"k3s/" + k3sV2}; fmt.Sprint(res.Pruned) != fmt.Sprint(want) {
		t.Errorf("pruned %v, want %v", res.Pruned, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "k3s", k3sV2)); err == nil {
		t.Error("pruned release still on disk")
	}
	if _, ok := mustOpen(t, dir).LookupVersion(K3sAirgapImages, k3sV2); ok {
		t.Error("pruned release still in the manifest")
	}
	checkStore(t, dir, p, fcV1, k3sV1, etcdV1)
}

func TestSyncForgetsFilesDeletedByHand(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	p.up.publishEtcd("v3.5.18", 800)
	a := p.src()
	a.etcd = "v3.5.18"
	if _, err := syncWith(t, dir, a, testOptions()); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "etcd", etcdV1))
	if _, err := syncWith(t, dir, a, testOptions()); err != nil {
		t.Fatal(err)
	}
	st := mustOpen(t, dir)
	if _, ok := st.LookupVersion(Etcd, etcdV1); ok {
		t.Error("the manifest still lists a release deleted by hand")
	}
	if e, ok := st.Lookup(Etcd); !ok || e.Version != "v3.5.18" {
		t.Errorf("current etcd %+v, want v3.5.18", e)
	}
}

func TestSyncConfigProblems(t *testing.T) {
	_, err := Sync(context.Background(), t.TempDir(), assetsSection("http://127.0.0.1:1", "", "", "", ""), testOptions())
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ConfigError", err)
	}
	for _, field := range []string{"assets.flatcar.version", "assets.flatcar.signing_key", "assets.k3s.version", "assets.etcd.version"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not say to set %s:\n%v", field, err)
		}
	}
	_, err = Sync(context.Background(), t.TempDir(), assetsSection("http://127.0.0.1:1", "/nonexistent/key.asc", fcV1, k3sV1, "../x"), testOptions())
	if err == nil || !strings.Contains(err.Error(), "assets.etcd.version") {
		t.Errorf("a version with '..' passed: %v", err)
	}
	_, err = Sync(context.Background(), t.TempDir(), assetsSection("http://127.0.0.1:1", "/nonexistent/key.asc", fcV1, k3sV1, etcdV1), testOptions())
	if err == nil || !strings.Contains(err.Error(), "signing_key") {
		t.Errorf("a missing key file: %v", err)
	}
}

func TestSyncRefusesToReplaceHandPlacedFile(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "flatcar"), 0o755)
	os.WriteFile(filepath.Join(dir, "flatcar", kernelFile), []byte("my kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "flatcar", initrdFile), []byte("my initrd"), 0o644)
	os.MkdirAll(filepath.Join(dir, "k3s", "k3s"), 0o755)
	_, err := syncWith(t, dir, p.src(), testOptions())
	if err == nil || strings.Count(err.Error(), "by hand") != 3 {
		t.Fatalf("got %v, want a refusal naming each of the 3 files in the way", err)
	}
	for _, f := range []string{filepath.Join("flatcar", kernelFile), filepath.Join("flatcar", initrdFile), filepath.Join("k3s", "k3s") + " is a directory"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("the refusal does not name %s:\n%v", f, err)
		}
	}
	if n := len(p.up.allRequests()); n != 0 {
		t.Errorf("%d requests before refusing", n)
	}
	if string(readFile(t, filepath.Join(dir, "flatcar", kernelFile))) != "my kernel" {
		t.Error("the hand-placed kernel was changed")
	}
	if r := mustOpen(t, dir).Syncs(); r.Runs != 1 || r.LastOK || r.Failures["flatcar"] != 1 || r.Failures["k3s"] != 1 || r.Failures["etcd"] != 0 {
		t.Errorf("sync record after a refusal: %+v, want one run failed for flatcar and k3s", r)
	}
}

func TestSyncNotFoundSaysWhatToCheck(t *testing.T) {
	p := publish(t)
	a := p.src()
	a.etcd = "v9.9.9"
	_, err := syncWith(t, t.TempDir(), a, testOptions())
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "assets.etcd.version") {
		t.Fatalf("got %v, want a 404 naming assets.etcd.version", err)
	}
}

func TestLogProgressReportsBytes(t *testing.T) {
	p := publish(t)
	var buf strings.Builder
	opt := testOptions()
	opt.Progress = LogProgress(newTestLogger(&buf), 0)
	if _, err := syncWith(t, t.TempDir(), p.src(), opt); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "msg=downloaded file=flatcar/"+fcV1+"/"+initrdFile+" bytes=3145728") {
		t.Errorf("progress log lacks the initrd's completion line:\n%s", buf.String())
	}
}

func TestSyncDroppedAirgapIsNotCurrent(t *testing.T) {
	p := publish(t)
	dir := t.TempDir()
	if _, err := syncWith(t, dir, p.src(), testOptions()); err != nil {
		t.Fatal(err)
	}
	p.up.publishK3s(k3sV2, 900)
	src := assetsSection(p.up.srv.URL, p.keyFile, fcV1, k3sV2, etcdV1)
	src.K3s.AirgapImages = false
	if _, err := Sync(context.Background(), dir, src, testOptions()); err != nil {
		t.Fatal(err)
	}
	st := mustOpen(t, dir)
	if e, ok := st.Lookup(K3sAirgapImages); ok {
		t.Errorf("airgap images of %s still current after K3s moved to %s without them", e.Version, k3sV2)
	}
	if e, _ := st.Lookup(K3s); e.Version != k3sV2 {
		t.Errorf("current k3s %s, want %s", e.Version, k3sV2)
	}
}
