package httpd

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/flint-boot/flint/ipxe"
)

var tokenRE = regexp.MustCompile(`[?&]token=([0-9a-f]{64})`)

// script fetches nuc1's iPXE script (from nuc1's address) and returns its
// boot token.
func (f *fixture) script(t *testing.T) string {
	t.Helper()
	rec := f.do(t, "GET", "/machines/"+knownMAC+"/boot.ipxe?arch=x86_64")
	if rec.Code != http.StatusOK {
		t.Fatalf("script: %d %s", rec.Code, rec.Body)
	}
	m := tokenRE.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no boot token in the script:\n%s", rec.Body)
	}
	nuc1, _ := f.cfg.MachineByName("nuc1")
	if rec.Body.String() != ipxe.MachineScript(f.cfg, nuc1, m[1]) {
		t.Errorf("body is not nuc1's script:\n%s", rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("a script with a token may be cached")
	}
	return m[1]
}

// TestConfigDelivery: script -> pointer (plain HTTP, no secret) -> the
// config over HTTPS, once -> node reports over HTTPS with the report token.
func TestConfigDelivery(t *testing.T) {
	f := newFixture(t)
	tok := f.script(t)
	q := "/ignition?mac=" + knownMAC + "&token=" + tok

	t.Run("pointer on plain HTTP", func(t *testing.T) {
		for range 2 { // the pointer does not spend the token
			rec := f.do(t, "GET", q, "Accept", "application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1")
			if rec.Code != http.StatusOK {
				t.Fatalf("pointer: %d %s", rec.Code, rec.Body)
			}
			var p struct {
				Ignition struct {
					Config struct {
						Replace struct{ Source string }
					}
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if want := "https://198.18.0.1:8443/ignition?mac=" + knownMAC + "&token=" + tok; p.Ignition.Config.Replace.Source != want {
				t.Errorf("replace source %q, want %q", p.Ignition.Config.Replace.Source, want)
			}
			if strings.Contains(rec.Body.String(), "PRIVATE KEY") || strings.Contains(rec.Body.String(), "report") {
				t.Error("the pointer carries a secret")
			}
		}
		if rec := f.do(t, "GET", "/ignition?mac="+knownMAC+"&token="+strings.Repeat("a", 64)); rec.Code != http.StatusForbidden {
			t.Errorf("pointer with a made-up token: %d", rec.Code)
		}
		if rec := f.do(t, "GET", q+"&stage=installed"); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "HTTPS only") {
			t.Errorf("installed stage on plain HTTP: %d %s", rec.Code, rec.Body)
		}
	})
	var report string
	t.Run("config over HTTPS, once", func(t *testing.T) {
		rec := f.doTLS(t, "GET", q, "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"machine":"nuc1"`) || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("config: %d %s", rec.Code, rec.Body)
		}
		var c struct{ Report string }
		json.Unmarshal(rec.Body.Bytes(), &c)
		report = c.Report
		if len(report) != 64 {
			t.Fatalf("no report token reached the renderer: %s", rec.Body)
		}
		if rec := f.doTLS(t, "GET", q, ""); rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "PRIVATE") {
			t.Fatalf("second use of the token: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("the token never reaches the log", func(t *testing.T) {
		if strings.Contains(f.logs.String(), tok) || strings.Contains(f.logs.String(), report) {
			t.Error("a token is in flint's log")
		}
		if !strings.Contains(f.logs.String(), "token=REDACTED") {
			t.Error("the access log does not show the redacted token")
		}
	})
	t.Run("reports", func(t *testing.T) {
		body := `{"mac":"52:54:00:12:34:56","event":"config-applied","detail":"ok"}`
		json := "application/json"
		cases := []struct {
			name   string
			rec    func() int
			status int
		}{
			{"plain HTTP", func() int {
				return serveOn(f.s.Handler(), "POST", "/api/v1/events", body, "Content-Type", json, "Authorization", "Bearer "+report).Code
			}, http.StatusNotFound},
			{"no token", func() int { return f.doTLS(t, "POST", "/api/v1/events", body, "Content-Type", json).Code }, http.StatusForbidden},
			{"boot token", func() int {
				return f.doTLS(t, "POST", "/api/v1/events", body, "Content-Type", json, "Authorization", "Bearer "+tok).Code
			}, http.StatusForbidden},
			{"form body", func() int {
				return f.doTLS(t, "POST", "/api/v1/events", "mac=x", "Content-Type", "application/x-www-form-urlencoded", "Authorization", "Bearer "+report).Code
			}, http.StatusUnsupportedMediaType},
			{"unknown MAC", func() int {
				return f.doTLS(t, "POST", "/api/v1/events", strings.Replace(body, "56", "57", 1), "Content-Type", json, "Authorization", "Bearer "+report).Code
			}, http.StatusNotFound},
			{"the delivery's token", func() int {
				return f.doTLS(t, "POST", "/api/v1/events", body, "Content-Type", json, "Authorization", "Bearer "+report).Code
			}, http.StatusNoContent},
		}
		for _, c := range cases {
			if got := c.rec(); got != c.status {
				t.Errorf("%s: %d, want %d", c.name, got, c.status)
			}
		}
		ev := f.doSocket(t, "GET", "/api/v1/machines/"+knownMAC+"/events", "").Body.String()
		if !strings.Contains(ev, `"node config-applied"`) || strings.Count(ev, "node config-applied") != 1 {
			t.Errorf("timeline:\n%s", ev)
		}
	})
}

func TestMachineScriptUnknown(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, "GET", "/machines/"+unknownMAC+"/boot.ipxe?arch=x86_64")
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", rec.Code)
	}
	body := rec.Body.String()
	if !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, unknownMAC) || !strings.HasSuffix(body, "exit 1\n") || tokenRE.MatchString(body) {
		t.Errorf("404 body is not the explaining script:\n%s", body)
	}
	// Unknown MACs from one source are recorded within its rate (5 a minute here).
	for i := range 20 {
		f.do(t, "GET", "/machines/52-54-00-99-99-"+strings.Repeat(string("0123456789abcdef"[i%16]), 2)+"/boot.ipxe")
	}
	if n := len(f.machines(t)); n != 1+5 {
		t.Errorf("%d records after 21 unknown MACs from one address, want 1 known + 5", n)
	}
}

func TestMachineScriptColonMAC(t *testing.T) {
	f := newFixture(t)
	if rec := f.do(t, "GET", "/machines/52:54:00:12:34:56/boot.ipxe"); rec.Code != http.StatusOK {
		t.Errorf("colon MAC: %d %s", rec.Code, rec.Body)
	}
}

// TestURLsAreEscaped: query values are read decoded; a token with URL
// syntax in it is refused, never echoed into the pointer.
func TestURLsAreEscaped(t *testing.T) {
	f := newFixture(t)
	f.script(t)
	evil := url.QueryEscape(`x&mac=52-54-00-99-99-99"}`)
	rec := f.do(t, "GET", "/ignition?mac="+knownMAC+"&token="+evil)
	if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "99-99-99") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}
