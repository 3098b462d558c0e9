package ignition

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPointer(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	url := "https://198.18.0.1:8443/ignition?mac=52-54-00-00-00-01&token=" + strings.Repeat("a", 64)
	for _, c := range []struct {
		butane string
		spec   Spec
		want   string
	}{{"1.1.0", SpecV3, "3.4.0"}, {"1.0.0", SpecV3, "3.3.0"}, {"1.1.0", SpecLegacy, "2.3.0"}} {
		out, err := Pointer(c.butane, c.spec, url, ca)
		if err != nil {
			t.Fatalf("%s %v: %v", c.butane, c.spec, err)
		}
		var p pointerConfig
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		if p.Ignition.Version != c.want || p.Ignition.Config.Replace.Source != url || len(p.Ignition.Security.TLS.CertificateAuthorities) != 1 {
			t.Errorf("pointer %s: %s", c.want, out)
		}
		if bytes.Contains(out, []byte("PRIVATE KEY")) {
			t.Error("a pointer carries a key")
		}
	}
	if _, err := Pointer("1.1.0", SpecV3, strings.Replace(url, "https", "http", 1), ca); err == nil {
		t.Error("a plain http:// replace URL was accepted")
	}
	if _, err := Pointer("1.1.0", SpecV3, url, nil); err == nil {
		t.Error("a pointer without a CA was accepted")
	}
}
