package httpd

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// FuzzRequest sends any method, path, query and Authorization header to each
// listener. Whatever comes in: no panic (a recovered one answers 500), a
// status from the set flint uses, and never a secret in the answer: no
// private key, no admin data without the token.
func FuzzRequest(f *testing.F) {
	// Requests write to the store (fsync): on tmpfs each input stays cheap,
	// so the fuzzer's workers always answer its deadlines.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		f.Setenv("TMPDIR", "/dev/shm")
	}
	fx := newFixture(f)
	tok := strings.Repeat("ab", 32)
	for _, s := range []struct{ method, path, query, auth string }{
		{"GET", "/machines/" + knownMAC + "/boot.ipxe", "arch=x86_64", ""},
		{"GET", "/ignition", "mac=" + knownMAC + "&token=" + tok, ""},
		{"GET", "/ignition", "mac=" + knownMAC + "&token=" + tok + "&stage=installed", ""},
		{"GET", "/ignition", "mac=52:54:00:12:34:56&token=../../etc&token=" + tok, ""},
		{"GET", "/assets/../pki/ca.key", "", ""},
		{"GET", "/assets/%2e%2e/pki/ca.key", "", ""},
		{"GET", "/ipxe/..%2fipxe.efi", "", ""},
		{"POST", "/api/v1/events", "", "Bearer " + tok},
		{"GET", "/api/v1/machines", "", "Bearer " + testAdminToken[:63] + "1"},
		{"POST", "/api/v1/machines/nuc1/reprovision", "confirm=yes", ""},
		{"GET", "/machines/52-54-00-12-34-5g/boot.ipxe", "", ""},
		{"HEAD", "/ignition", "mac=" + knownMAC, ""},
	} {
		f.Add(s.method, s.path, s.query, s.auth)
	}
	statuses := map[int]bool{200: true, 204: true, 206: true, 304: true, 400: true, 401: true, 403: true, 404: true, 405: true, 415: true, 416: true, 503: true}
	f.Fuzz(func(t *testing.T, method, path, query, auth string) {
		switch method {
		case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS":
		default:
			method = "GET"
		}
		u := &url.URL{Path: path, RawQuery: query}
		target := u.RequestURI()
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t") {
			return // not a request line a client can send
		}
		for _, h := range []http.Handler{fx.s.Handler(), fx.s.HandlerTLS(), fx.s.HandlerSocket()} {
			req, err := http.NewRequest(method, "http://flint"+target, strings.NewReader(query))
			if err != nil {
				return
			}
			req.RemoteAddr = "198.18.0.99:40000" // not nuc1's address
			req.Header.Set("Authorization", auth)
			req.Header.Set("Content-Type", "application/json")
			rec := serveRecorder(h, req)
			if !statuses[rec.Code] {
				t.Fatalf("%s %s (auth %q): status %d: %s", method, target, auth, rec.Code, rec.Body)
			}
			body := rec.Body.String()
			if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "top secret") {
				t.Fatalf("%s %s: a secret in the answer: %s", method, target, body)
			}
			if h != fx.s.HandlerSocket() && auth != "Bearer "+testAdminToken && strings.Contains(body, "52:54:00:12:34:56") && rec.Code == 200 && strings.HasPrefix(path, "/api/") {
				t.Fatalf("%s %s (auth %q): admin data without the token: %s", method, target, auth, body)
			}
		}
	})
}
