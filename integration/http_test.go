package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// httpResponse is what curl got.
type httpResponse struct {
	Code   int
	Header http.Header
	Body   []byte
	Result Result
}

var httpSeq int

// fetch runs curl in the host's namespace, keeping status, headers and body apart.
func (h *Host) fetch(t *testing.T, rawURL string, extra ...string) httpResponse {
	t.Helper()
	httpSeq++
	hdr := filepath.Join(h.lab.Dir, fmt.Sprintf("http-%d.hdr", httpSeq))
	body := filepath.Join(h.lab.Dir, fmt.Sprintf("http-%d.body", httpSeq))
	args := append([]string{"-sS", "-m", "15", "-D", hdr, "-o", body, "-w", "%{http_code}"}, extra...)
	r := h.lab.Run(h.NS, 20*time.Second, "curl", append(args, rawURL)...)
	if r.Err != nil {
		t.Fatalf("curl %s failed\n%s", rawURL, r)
	}
	resp := httpResponse{Header: http.Header{}, Result: r}
	fmt.Sscan(strings.TrimSpace(r.Stdout), &resp.Code)
	resp.Body, _ = os.ReadFile(body)
	raw, _ := os.ReadFile(hdr)
	for _, ln := range strings.Split(string(raw), "\r\n") {
		if k, v, ok := strings.Cut(ln, ":"); ok {
			resp.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	h.lab.logf("response %d, headers %v, %d body bytes: %s", resp.Code, resp.Header, len(resp.Body), clip(string(resp.Body)))
	return resp
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// TestHTTP: the per-machine iPXE script names the kernel, initrd and Ignition
// URL of its MAC and those URLs serve the assets; Range, HEAD and ETag work on
// assets; an unknown MAC gets a 404 iPXE script.
func TestHTTP(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "curl")
	l := NewLab(t)
	data := filepath.Join(l.Dir, "data")
	// Fake Flatcar images in the default assets directory (DATA/assets).
	kernel := randomBytes(3<<20 + 17)
	initrd := randomBytes(1<<20 + 5)
	l.writeFile(t, "data/assets/flatcar/flatcar_production_pxe.vmlinuz", string(kernel), 0o644)
	l.writeFile(t, "data/assets/flatcar/flatcar_production_pxe_image.cpio.gz", string(initrd), 0o644)
	cfg := l.WriteConfig(t, siteConfig{Mode: "off", Machines: []machine{node1, node2}})
	l.StartFlint(t, cfg, data)
	c := l.AddHost(t, "c1", "52:54:00:ee:00:02")
	c.SetAddress(t, "198.18.0.21/24")

	t.Run("boot.ipxe", func(t *testing.T) {
		r := c.fetch(t, flintHTTP+"/boot.ipxe")
		body := string(r.Body)
		if r.Code != 200 || !strings.HasPrefix(body, "#!ipxe") {
			t.Fatalf("GET /boot.ipxe: %d %q, want 200 and an iPXE script", r.Code, body)
		}
		if !strings.Contains(body, "/machines/${mac:hexhyp}/boot.ipxe") {
			t.Errorf("/boot.ipxe does not chain to /machines/${mac:hexhyp}/boot.ipxe:\n%s", body)
		}
		wantContentLength(t, r)
	})

	scriptURL := flintHTTP + "/machines/" + hexhyp(node1.MAC) + "/boot.ipxe?arch=x86_64"
	t.Run("machine-script", func(t *testing.T) {
		r := c.fetch(t, scriptURL)
		body := string(r.Body)
		if r.Code != 200 || !strings.HasPrefix(body, "#!ipxe") {
			t.Fatalf("GET %s: %d, want 200 and an iPXE script:\n%s", scriptURL, r.Code, body)
		}
		wantContentLength(t, r)
		kernelLine := regexp.MustCompile(`(?m)^\s*kernel\s+(\S+)(.*)$`).FindStringSubmatch(body)
		initrdLine := regexp.MustCompile(`(?m)^\s*initrd\s+(\S+)`).FindStringSubmatch(body)
		if kernelLine == nil || initrdLine == nil || !regexp.MustCompile(`(?m)^\s*boot\b`).MatchString(body) {
			t.Fatalf("script lacks a kernel, initrd or boot line:\n%s", body)
		}
		args := kernelLine[2]
		for _, want := range []string{
			"initrd=flatcar_production_pxe_image.cpio.gz",    // Flatcar hangs without it
			"console=ttyS0,115200n8", "flatcar.first_boot=1", // boot.kernel_args
		} {
			if !strings.Contains(args, want) {
				t.Errorf("kernel line lacks %q: %s", want, kernelLine[0])
			}
		}
		ign := regexp.MustCompile(`ignition\.config\.url=(\S+)`).FindStringSubmatch(args)
		if ign == nil {
			t.Fatalf("kernel line has no ignition.config.url: %s", kernelLine[0])
		}
		// The MAC literally, or iPXE's ${mac:hexhyp}, which iPXE expands to the
		// MAC of the NIC that fetched this script: the one in its URL.
		macRE := `(?i)ignition\?mac=(` + regexp.QuoteMeta(hexhyp(node1.MAC)) + `|` + regexp.QuoteMeta(node1.MAC) + `|` +
			regexp.QuoteMeta(url.QueryEscape(node1.MAC)) + `|` + regexp.QuoteMeta("${mac:hexhyp}") + `)(&|$)`
		if !regexp.MustCompile(macRE).MatchString(ign[1]) {
			t.Errorf("ignition.config.url=%s does not name %s", ign[1], node1.MAC)
		}
		if !strings.HasPrefix(ign[1], flintHTTP+"/") {
			t.Errorf("ignition.config.url=%s is not on flint (%s)", ign[1], flintHTTP)
		}
		// The kernel and initrd URLs resolve to the files in the assets directory.
		base, _ := url.Parse(scriptURL)
		for _, a := range []struct {
			what, ref string
			want      []byte
		}{{"kernel", kernelLine[1], kernel}, {"initrd", initrdLine[1], initrd}} {
			u, err := base.Parse(a.ref)
			if err != nil {
				t.Errorf("%s URL %q: %v", a.what, a.ref, err)
				continue
			}
			if !strings.HasSuffix(u.Path, "/assets/flatcar/"+map[string]string{"kernel": "flatcar_production_pxe.vmlinuz", "initrd": "flatcar_production_pxe_image.cpio.gz"}[a.what]) {
				t.Errorf("%s URL %s does not point at the configured asset", a.what, u)
			}
			got := c.fetch(t, u.String())
			if got.Code != 200 || !bytes.Equal(got.Body, a.want) {
				t.Errorf("GET %s (%s): %d, %d bytes; want 200 and the %d bytes placed in the assets dir", u, a.what, got.Code, len(got.Body), len(a.want))
			}
		}
	})

	t.Run("unknown-mac-404", func(t *testing.T) {
		r := c.fetch(t, flintHTTP+"/machines/52-54-00-de-ad-00/boot.ipxe?arch=x86_64")
		if r.Code != 404 {
			t.Errorf("unknown MAC: status %d, want 404", r.Code)
		}
		if !strings.HasPrefix(string(r.Body), "#!ipxe") {
			t.Errorf("unknown MAC: body %q, want an iPXE script (#!ipxe) that iPXE can show", r.Body)
		}
	})

	assetURL := flintHTTP + "/assets/flatcar/flatcar_production_pxe.vmlinuz"
	t.Run("asset-range", func(t *testing.T) {
		r := c.fetch(t, assetURL, "-r", "1000-1999")
		if r.Code != 206 {
			t.Fatalf("Range request: status %d, want 206", r.Code)
		}
		if !bytes.Equal(r.Body, kernel[1000:2000]) {
			t.Errorf("Range 1000-1999: got %d bytes, not bytes 1000-1999 of the file", len(r.Body))
		}
		if got, want := r.Header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", len(kernel)); got != want {
			t.Errorf("Content-Range %q, want %q", got, want)
		}
		// A suffix range: the last 10 bytes.
		r = c.fetch(t, assetURL, "-r", "-10")
		if r.Code != 206 || !bytes.Equal(r.Body, kernel[len(kernel)-10:]) {
			t.Errorf("Range -10: %d, %x; want 206 and %x", r.Code, r.Body, kernel[len(kernel)-10:])
		}
	})

	t.Run("asset-head-etag", func(t *testing.T) {
		r := c.fetch(t, assetURL, "-I")
		if r.Code != 200 {
			t.Fatalf("HEAD: status %d, want 200", r.Code)
		}
		if got := r.Header.Get("Content-Length"); got != fmt.Sprint(len(kernel)) {
			t.Errorf("HEAD Content-Length %q, want %d", got, len(kernel))
		}
		etag := r.Header.Get("Etag")
		if etag == "" {
			t.Fatalf("no ETag on %s; headers %v", assetURL, r.Header)
		}
		r = c.fetch(t, assetURL, "-H", "If-None-Match: "+etag)
		if r.Code != 304 || len(r.Body) != 0 {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and no body", etag, r.Code, len(r.Body))
		}
	})

	t.Run("asset-missing-and-escape", func(t *testing.T) {
		if r := c.fetch(t, flintHTTP+"/assets/flatcar/nothing-here"); r.Code != 404 {
			t.Errorf("missing asset: status %d, want 404", r.Code)
		}
		secret := "flint-http-secret-" + randHex(8)
		l.writeFile(t, "data/secret.txt", secret, 0o644)
		for _, p := range []string{"/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/..%2fsecret.txt", "/assets/flatcar/../../secret.txt"} {
			r := c.fetch(t, flintHTTP+p, "--path-as-is")
			if r.Code == 200 || bytes.Contains(r.Body, []byte(secret)) {
				t.Errorf("GET %s: status %d, body %q: a file outside the assets dir was served", p, r.Code, clip(string(r.Body)))
			}
		}
	})
}

func wantContentLength(t *testing.T, r httpResponse) {
	t.Helper()
	if got := r.Header.Get("Content-Length"); got != fmt.Sprint(len(r.Body)) {
		t.Errorf("Content-Length %q, want %d (iPXE stalls without it)", got, len(r.Body))
	}
}
