package httpd

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/events"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/store"
)

const testConfig = `
server:
  address: 198.18.0.1
  http_port: 8080
dhcp:
  mode: off
  subnet: 198.18.0.0/24
boot:
  kernel_args: ["console=ttyS0,115200n8"]
cluster: {install_mode: live}
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
	rec    *events.Recorder
	lc     *lifecycle.Manager
	s      *Server
	dir    string // parent of assets/ and ipxe/, holds a secret outside both
	assets string
	ipxe   string
	kernel []byte // assets/flatcar/vmlinuz
	efi    []byte // ipxe/ipxe.efi, a symlink to boot/ipxe.efi like Debian's
	logs   *syncBuffer
	met    *metrics.Metrics
	ready  *fakeReadiness
}

// fakeReadiness fails with err while it is set.
type fakeReadiness struct {
	mu  sync.Mutex
	err error
}

func (r *fakeReadiness) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *fakeReadiness) set(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
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

func newFixture(t testing.TB) *fixture {
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
	f.rec = events.New(st, events.Options{UnknownPerMinute: 5}, log)
	t.Cleanup(f.rec.Stop)
	if err := st.SyncConfig([]store.KnownMachine{{MAC: "52:54:00:12:34:56", Hostname: "nuc1", Role: "server", ReservedIP: netip.MustParseAddr("198.18.0.11")}}); err != nil {
		t.Fatal(err)
	}
	f.lc, err = lifecycle.New(cfg, f.rec, lifecycle.Options{ReportKey: []byte("0123456789abcdef0123456789abcdef"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.lc.Close)
	f.met = metrics.New("test")
	f.ready = &fakeReadiness{}
	f.s, err = New(Options{Config: cfg, State: f.rec, Timeline: f.rec, Lifecycle: f.lc, Renderer: fakeRenderer{}, Readiness: f.ready,
		AssetsDir: f.assets, CACert: []byte(testCA), AdminToken: testAdminToken, Metrics: f.met, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const (
	testCA         = "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n"
	testAdminToken = "adm1n70k3nadm1n70k3nadm1n70k3nadm1n70k3nadm1n70k3nadm1n70k3n0000"
)

// fakeRenderer shows what it was asked for, and a stand-in secret.
type fakeRenderer struct{}

func (fakeRenderer) Render(req ignition.Request) ([]byte, error) {
	return []byte(fmt.Sprintf(`{"ignition":{"version":"3.4.0"},"machine":%q,"profile":%q,"state":%q,"report":%q,"installed":%q,"key":"-----BEGIN EC PRIVATE KEY-----"}`,
		req.Machine.Hostname, req.Profile, req.ClusterState, req.Boot.ReportToken, req.Boot.InstalledToken)), nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// do serves one request on the plain HTTP listener, in memory; target is
// used verbatim (no cleaning).
func (f *fixture) do(t *testing.T, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return serveOn(f.s.Handler(), method, target, "", header...)
}

// doTLS is do on the HTTPS listener's handler.
func (f *fixture) doTLS(t *testing.T, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return serveOn(f.s.HandlerTLS(), method, target, body, header...)
}

// doSocket is do on the admin socket's handler.
func (f *fixture) doSocket(t *testing.T, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return serveOn(f.s.HandlerSocket(), method, target, body, header...)
}

func serveRecorder(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func serveOn(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.RemoteAddr = "198.18.0.11:40000"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
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
	f.rec.Flush() // what the timeline writer still holds
	rec := f.doSocket(t, "GET", "/api/v1/machines", "")
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

func TestReadyz(t *testing.T) {
	f := newFixture(t)
	for name, do := range map[string]func(method string) *httptest.ResponseRecorder{
		"http":   func(m string) *httptest.ResponseRecorder { return f.do(t, m, "/readyz") },
		"https":  func(m string) *httptest.ResponseRecorder { return f.doTLS(t, m, "/readyz", "") },
		"socket": func(m string) *httptest.ResponseRecorder { return f.doSocket(t, m, "/readyz", "") },
	} {
		f.ready.set(nil)
		if rec := do("GET"); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "ready" {
			t.Errorf("%s: GET /readyz while ready = %d %q, want 200 \"ready\"", name, rec.Code, rec.Body)
		}
		if rec := do("HEAD"); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
			t.Errorf("%s: HEAD /readyz while ready = %d, body %q", name, rec.Code, rec.Body)
		}

		f.ready.set(&NotReady{Check: "store", Err: errors.New("database not open: /var/lib/flint/secret-path")})
		rec := do("GET")
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
			t.Errorf("%s: GET /readyz with the store failing = %d %q, want 503 naming the store check", name, rec.Code, body)
		}
		if strings.Contains(body, "secret-path") {
			t.Errorf("%s: /readyz sent the check's error detail: %q (it belongs in the log)", name, body)
		}
		if rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 503 /readyz without Retry-After", name)
		}
	}
	if !strings.Contains(f.logs.String(), "secret-path") {
		t.Errorf("the failed check's error is not in the log:\n%s", f.logs)
	}
	// /healthz stays 200: a liveness probe must not restart flint over a
	// check a restart cannot fix.
	if rec := f.do(t, "GET", "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("GET /healthz while not ready = %d, want 200", rec.Code)
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
	if ms := f.machines(t); len(ms) != 1 {
		t.Errorf("bad MACs recorded sightings: %+v", ms)
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
	o := f.s.Options
	o.AssetsDir = gone
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
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

func TestPanicRecovered(t *testing.T) {
	f := newFixture(t)
	f.s.echos[onHTTP].GET("/boom", func(echo.Context) error { panic("boom") })
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
