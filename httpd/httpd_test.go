package httpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ipxe"
	"github.com/flint-boot/flint/store"
)

const testConfig = `
server:
  address: 198.18.0.1
  http_port: 8080
dhcp:
  mode: proxy
  subnet: 198.18.0.0/24
boot:
  kernel_args: ["console=ttyS0,115200n8"]
machines:
  - {mac: "52:54:00:12:34:56", hostname: nuc1, ip: 198.18.0.11, role: server}
`

const (
	knownMAC   = "52-54-00-12-34-56"
	unknownMAC = "52-54-00-99-99-99"
)

type fixture struct {
	cfg    *config.Config
	st     store.Store
	s      *Server
	dir    string // parent of assets/ and ipxe/, holds a secret outside both
	assets string
	ipxe   string
	kernel []byte // assets/flatcar/vmlinuz
	efi    []byte // ipxe/ipxe.efi, a symlink to boot/ipxe.efi like Debian's
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	dir := t.TempDir()
	f := &fixture{cfg: cfg, st: st, dir: dir, assets: filepath.Join(dir, "assets"), ipxe: filepath.Join(dir, "ipxe"), logs: &syncBuffer{}}
	f.kernel = randomBytes(t, 100_000)
	writeFile(t, filepath.Join(f.assets, "flatcar", "vmlinuz"), f.kernel)
	writeFile(t, filepath.Join(dir, "secret"), []byte("top secret"))
	f.efi = randomBytes(t, 3000)
	writeFile(t, filepath.Join(dir, "boot", "ipxe.efi"), f.efi)
	if err := os.MkdirAll(f.ipxe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "boot", "ipxe.efi"), filepath.Join(f.ipxe, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	cfg.IPXE.Directory = f.ipxe

	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.s = New(cfg, st, f.assets, log)
	return f
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// do serves one request in memory; target is used verbatim (no cleaning).
func (f *fixture) do(t *testing.T, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.s.Handler().ServeHTTP(rec, req)
	return rec
}

// get fetches over a real loopback connection, to see what goes on the wire.
func get(t *testing.T, srv *httptest.Server, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (f *fixture) machines(t *testing.T) []store.Machine {
	t.Helper()
	rec := f.do(t, "GET", "/api/v1/machines")
	if rec.Code != http.StatusOK {
		t.Fatalf("/api/v1/machines: %d %s", rec.Code, rec.Body)
	}
	var ms []store.Machine
	if err := json.Unmarshal(rec.Body.Bytes(), &ms); err != nil {
		t.Fatalf("/api/v1/machines is not a JSON array of machines: %v: %s", err, rec.Body)
	}
	return ms
}

func TestHealthz(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/healthz")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("GET /healthz = %d %q", rec.Code, rec.Body)
	}
	rec = f.do(t, "HEAD", "/healthz")
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "3" {
		t.Errorf("HEAD /healthz = %d, body %q, Content-Length %q", rec.Code, rec.Body, rec.Header().Get("Content-Length"))
	}
}

func TestBootScript(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/boot.ipxe")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !strings.HasPrefix(string(body), "#!ipxe\n") {
		t.Errorf("not an iPXE script: %q", body)
	}
	if want := "chain http://198.18.0.1:8080/machines/${mac:hexhyp}/boot.ipxe?arch=${buildarch} "; !strings.Contains(string(body), want) {
		t.Errorf("script lacks %q:\n%s", want, body)
	}
	// iPXE stalls at 99% without Content-Length: it must be on the wire, not chunked.
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d (body %d), Transfer-Encoding %v", resp.ContentLength, len(body), resp.TransferEncoding)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestMachineScriptKnown(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/machines/"+knownMAC+"/boot.ipxe?arch=x86_64")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	m, _ := f.cfg.MachineByName("nuc1")
	if string(body) != ipxe.MachineScript(f.cfg, m) {
		t.Errorf("body is not nuc1's script:\n%s", body)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d (body %d), Transfer-Encoding %v", resp.ContentLength, len(body), resp.TransferEncoding)
	}

	ms := f.machines(t)
	if len(ms) != 1 {
		t.Fatalf("want one machine record, got %+v", ms)
	}
	got := ms[0]
	if got.MAC != "52:54:00:12:34:56" || got.LastEvent != EventScript || got.IP != netip.MustParseAddr("127.0.0.1") || got.Events != 1 || got.LastSeen.IsZero() {
		t.Errorf("sighting recorded as %+v", got)
	}
}

// The colon form works too (someone typing the URL by hand).
func TestMachineScriptColonMAC(t *testing.T) {
	f := newFixture(t)
	if rec := f.do(t, "GET", "/machines/52:54:00:12:34:56/boot.ipxe"); rec.Code != http.StatusOK {
		t.Errorf("colon MAC: %d %s", rec.Code, rec.Body)
	}
}

func TestMachineScriptUnknown(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/machines/"+unknownMAC+"/boot.ipxe?arch=x86_64")
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
	body := rec.Body.String()
	if !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, unknownMAC) || !strings.HasSuffix(body, "exit 1\n") {
		t.Errorf("404 body is not the explaining script:\n%s", body)
	}
	if rec.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q for %d bytes", rec.Header().Get("Content-Length"), len(body))
	}
	ms := f.machines(t)
	if len(ms) != 1 || ms[0].MAC != "52:54:00:99:99:99" || ms[0].LastEvent != EventScriptUnknown {
		t.Errorf("unknown sighting recorded as %+v", ms)
	}
}

func TestMachineScriptBadMAC(t *testing.T) {
	f := newFixture(t)
	for _, mac := range []string{"not-a-mac", "5254.0012.3456", "52-54-00-12-34", "52-54-00-12-34-56-78", "52%2D54-00-12-34-56"} {
		rec := f.do(t, "GET", "/machines/"+mac+"/boot.ipxe")
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", mac, rec.Code)
		}
		if !strings.Contains(rec.Body.String(), "malformed MAC") || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Errorf("%s: body %q (%s)", mac, rec.Body, rec.Header().Get("Content-Type"))
		}
	}
	if ms := f.machines(t); len(ms) != 0 {
		t.Errorf("bad MACs recorded sightings: %+v", ms)
	}
}

// failingStore fails every write; reads are empty.
type failingStore struct{ store.Store }

func (failingStore) RecordSighting(store.Sighting) error { return errors.New("disk full") }

func TestSightingFailureDoesNotFailBoot(t *testing.T) {
	f := newFixture(t)
	logs := &syncBuffer{}
	s := New(f.cfg, failingStore{f.st}, f.assets, slog.New(slog.NewTextHandler(logs, nil)))
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/machines/"+knownMAC+"/boot.ipxe", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("status %d when recording fails, want 200", rec.Code)
	}
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
}

func TestAssetFull(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/assets/flatcar/vmlinuz")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.kernel) {
		t.Fatalf("status %d, %d bytes (want %d identical)", resp.StatusCode, len(body), len(f.kernel))
	}
	if resp.ContentLength != int64(len(f.kernel)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v", resp.ContentLength, resp.TransferEncoding)
	}
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 4 {
		t.Errorf("ETag %q is not a strong tag", etag)
	}
	if resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Last-Modified %q, Accept-Ranges %q", resp.Header.Get("Last-Modified"), resp.Header.Get("Accept-Ranges"))
	}
}

func TestAssetRange(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/assets/flatcar/vmlinuz", "Range", "bytes=10-19")
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d, want 206", resp.StatusCode)
	}
	if !bytes.Equal(body, f.kernel[10:20]) {
		t.Errorf("got %x, want %x", body, f.kernel[10:20])
	}
	if cr, want := resp.Header.Get("Content-Range"), "bytes 10-19/"+strconv.Itoa(len(f.kernel)); cr != want {
		t.Errorf("Content-Range %q, want %q", cr, want)
	}
	if resp.ContentLength != 10 {
		t.Errorf("Content-Length %d, want 10", resp.ContentLength)
	}
}

func TestAssetHead(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "HEAD", "/assets/flatcar/vmlinuz")
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("status %d, %d body bytes", resp.StatusCode, len(body))
	}
	if resp.ContentLength != int64(len(f.kernel)) || resp.Header.Get("ETag") == "" {
		t.Errorf("Content-Length %d (want %d), ETag %q", resp.ContentLength, len(f.kernel), resp.Header.Get("ETag"))
	}
}

func TestAssetConditional(t *testing.T) {
	f := newFixture(t)
	etag := f.do(t, "GET", "/assets/flatcar/vmlinuz").Header().Get("ETag")

	rec := f.do(t, "GET", "/assets/flatcar/vmlinuz", "If-None-Match", etag)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d with %d bytes, want 304", rec.Code, rec.Body.Len())
	}
	rec = f.do(t, "GET", "/assets/flatcar/vmlinuz", "Range", "bytes=0-3", "If-Range", etag)
	if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), f.kernel[:4]) {
		t.Errorf("If-Range with the current tag: %d, want 206 with 4 bytes", rec.Code)
	}
	rec = f.do(t, "GET", "/assets/flatcar/vmlinuz", "Range", "bytes=0-3", "If-Range", `"stale"`)
	if rec.Code != http.StatusOK || rec.Body.Len() != len(f.kernel) {
		t.Errorf("If-Range with a stale tag: %d with %d bytes, want the whole file", rec.Code, rec.Body.Len())
	}

	// Replacing the file (write + rename, a new inode) must change the tag.
	fresh := randomBytes(t, len(f.kernel))
	tmp := filepath.Join(f.assets, "flatcar", ".vmlinuz.new")
	writeFile(t, tmp, fresh)
	if err := os.Rename(tmp, filepath.Join(f.assets, "flatcar", "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	rec = f.do(t, "GET", "/assets/flatcar/vmlinuz", "If-None-Match", etag)
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), fresh) {
		t.Errorf("after replacing the file: %d, want 200 with the new bytes", rec.Code)
	}
}

func TestAssetEscapesRefused(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.assets, "a", "x"), []byte("x"))
	for _, target := range []string{
		"/assets/../secret",
		"/assets/%2e%2e/secret",
		"/assets/%2E%2E%2Fsecret",
		"/assets/a/../../secret",
		"/assets/a/%2e%2e/%2e%2e/secret",
		"/assets//etc/passwd",
		"/assets/%2Fetc%2Fpasswd",
		"/assets/..%5Csecret",
		"/assets/a/x%00",
	} {
		rec := f.do(t, "GET", target)
		if rec.Code != http.StatusForbidden && rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 403 or 404", target, rec.Code)
		}
		if strings.Contains(rec.Body.String(), "top secret") || strings.Contains(rec.Body.String(), "root:") {
			t.Errorf("%s: leaked a file outside assets", target)
		}
		if rec.Body.Len() == 0 {
			t.Errorf("%s: refusal without an explanation", target)
		}
	}
}

// The asset store keeps unverified partial downloads under .sync/: never served.
func TestAssetHiddenRefused(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.assets, ".sync", "parts", "k3s.part"), []byte("unverified"))
	writeFile(t, filepath.Join(f.assets, "k3s", ".hidden"), []byte("unverified"))
	for _, target := range []string{"/assets/.sync/parts/k3s.part", "/assets/k3s/.hidden", "/assets/%2esync/parts/k3s.part"} {
		rec := f.do(t, "GET", target)
		if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "unverified") {
			t.Errorf("%s: %d %q, want 403", target, rec.Code, rec.Body)
		}
	}
}

func TestAssetDirectoryRefused(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{"/assets/", "/assets/flatcar", "/assets/flatcar/"} {
		rec := f.do(t, "GET", target)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "directory") {
			t.Errorf("%s: %d %q, want 403 explaining it is a directory", target, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "vmlinuz") {
			t.Errorf("%s: listed the directory", target)
		}
	}
}

func TestAssetMissing(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/assets/flatcar/missing.cpio.gz")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "assets directory") {
		t.Errorf("missing asset: %d %q", rec.Code, rec.Body)
	}
	// A missing assets directory is not created and just 404s.
	gone := filepath.Join(f.dir, "no-such-assets")
	s := New(f.cfg, f.st, gone, nil)
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/assets/flatcar/vmlinuz", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("missing assets dir: %d", rec.Code)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the assets directory was created: %v", err)
	}
}

func TestIPXEFile(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.s.Handler())
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/ipxe/ipxe.efi")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.efi) || resp.ContentLength != int64(len(f.efi)) {
		t.Fatalf("GET /ipxe/ipxe.efi through its symlink: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = get(t, srv, "HEAD", "/ipxe/ipxe.efi")
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len(f.efi)) {
		t.Errorf("HEAD /ipxe/ipxe.efi: %d, %d bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	for _, target := range []string{"/ipxe/..%2fsecret", "/ipxe/%2e%2e", "/ipxe/..", "/ipxe/..%5csecret", "/ipxe/../secret"} {
		rec := f.do(t, "GET", target)
		if rec.Code != http.StatusForbidden && rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 403 or 404", target, rec.Code)
		}
		if strings.Contains(rec.Body.String(), "top secret") {
			t.Errorf("%s: leaked a file outside the iPXE directory", target)
		}
	}
	if rec := f.do(t, "GET", "/ipxe/snponly.efi"); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "ipxe.directory") {
		t.Errorf("missing iPXE binary: %d %q", rec.Code, rec.Body)
	}
}

// sendfileWriter is a ResponseWriter with ReadFrom, like net/http's own.
type sendfileWriter struct {
	*httptest.ResponseRecorder
	readFrom []io.Reader
}

func (w *sendfileWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom = append(w.readFrom, r)
	return io.Copy(w.ResponseRecorder, r)
}

// Files must reach the ResponseWriter's ReadFrom with the *os.File inside,
// which is what lets net/http use sendfile.
func TestAssetUsesReadFrom(t *testing.T) {
	f := newFixture(t)
	w := &sendfileWriter{ResponseRecorder: httptest.NewRecorder()}
	f.s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/assets/flatcar/vmlinuz", nil))
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), f.kernel) {
		t.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
	}
	if len(w.readFrom) == 0 {
		t.Fatal("ReadFrom was never called: the body was copied through Write")
	}
	r := w.readFrom[0]
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	if _, ok := r.(*os.File); !ok {
		t.Errorf("ReadFrom got %T, want the *os.File (possibly in an io.LimitedReader)", w.readFrom[0])
	}
}

// The access log must show what ServeContent sent, not echo's defaults.
func TestAccessLogBookkeeping(t *testing.T) {
	f := newFixture(t)
	f.do(t, "GET", "/assets/flatcar/vmlinuz", "Range", "bytes=10-19")
	f.do(t, "GET", "/assets/flatcar/nope")
	type entry struct {
		Msg    string
		Path   string
		Status int
		Bytes  int64
	}
	var got []entry
	for _, line := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Msg == "http" {
			got = append(got, e)
		}
	}
	if len(got) != 2 {
		t.Fatalf("want 2 access log entries, got %+v\n%s", got, f.logs)
	}
	if got[0].Path != "/assets/flatcar/vmlinuz" || got[0].Status != 206 || got[0].Bytes != 10 {
		t.Errorf("range request logged as %+v", got[0])
	}
	if got[1].Status != 404 || got[1].Bytes == 0 {
		t.Errorf("missing file logged as %+v", got[1])
	}
}

func TestAPILeases(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/api/v1/leases")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("empty leases: %d %q, want []", rec.Code, rec.Body)
	}
	if strings.TrimSpace(f.do(t, "GET", "/api/v1/machines").Body.String()) != "[]" {
		t.Errorf("empty machines must be [] too")
	}
	now := time.Now().UTC().Truncate(time.Second)
	lease := store.Lease{IP: netip.MustParseAddr("198.18.0.100"), MAC: "52:54:00:12:34:56", State: store.LeaseBound, Start: now, Expires: now.Add(time.Hour)}
	if err := f.st.PutLease(lease); err != nil {
		t.Fatal(err)
	}
	rec = f.do(t, "GET", "/api/v1/leases")
	var ls []store.Lease
	if err := json.Unmarshal(rec.Body.Bytes(), &ls); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(ls) != 1 || ls[0].IP != lease.IP || ls[0].MAC != lease.MAC || !ls[0].Expires.Equal(lease.Expires) {
		t.Errorf("leases = %+v, want %+v", ls, lease)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/nope")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "/boot.ipxe") {
		t.Errorf("unknown route: %d %q", rec.Code, rec.Body)
	}
	rec = f.do(t, "POST", "/boot.ipxe")
	if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), "GET") {
		t.Errorf("POST: %d %q", rec.Code, rec.Body)
	}
}

func TestPanicRecovered(t *testing.T) {
	f := newFixture(t)
	f.s.echo.GET("/boom", func(echo.Context) error { panic("boom") })
	rec := f.do(t, "GET", "/boom")
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("panic: status %d, want 500", rec.Code)
	}
	if !strings.Contains(f.logs.String(), "handler panicked") {
		t.Errorf("panic not logged")
	}
	if rec := f.do(t, "GET", "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("server unusable after a panic: %d", rec.Code)
	}
}

func TestServe(t *testing.T) {
	f := newFixture(t)
	// A taken port fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- f.s.Serve(context.Background(), ln.Addr().String()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve on a taken port returned nil")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve on a taken port did not return")
	}

	// A free port serves until the context ends, then returns nil.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- f.s.Serve(ctx, addr) }()
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/healthz"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("server never answered: %v", err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
