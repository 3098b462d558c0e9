package ignition

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	legacyparse "github.com/flatcar/ignition/config/v2_4"
)

// Pointer is the config served over plain HTTP at the URL on a node's kernel
// command line. It holds no secret: only flint's CA (public) and the HTTPS
// URL of the node's real config, which Ignition fetches next, checking
// flint's certificate against that CA, and which replaces this one. Spec 3.x
// and the legacy spec 2.x (2.2 and later) have the same fields for this.
func Pointer(butaneVersion string, spec Spec, replaceURL string, caPEM []byte) ([]byte, error) {
	if !strings.HasPrefix(replaceURL, "https://") {
		return nil, fmt.Errorf("ignition pointer: %q is not an https:// URL: secrets cross the network only over TLS", replaceURL)
	}
	if len(caPEM) == 0 {
		return nil, fmt.Errorf("ignition pointer: no CA certificate to check flint's HTTPS server with")
	}
	version, err := SpecVersion(butaneVersion, spec)
	if err != nil {
		return nil, err
	}
	var p pointerConfig
	p.Ignition.Version = version
	p.Ignition.Config.Replace.Source = replaceURL
	p.Ignition.Security.TLS.CertificateAuthorities = []source{{Source: "data:;base64," + base64.StdEncoding.EncodeToString(caPEM)}}
	out, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	// Checked with the parser of the exact spec the client reads, like every
	// config flint serves: once per spec version, since only the URL (an
	// https URL of a MAC and a token, JSON-escaped) and the CA change.
	key := version + "\x00" + string(caPEM)
	if _, ok := pointerChecked.Load(key); ok {
		return out, nil
	}
	if spec == SpecLegacy {
		err = validateLegacyPointer(out, replaceURL)
	} else {
		err = validateV3(out, version)
	}
	if err != nil {
		return nil, fmt.Errorf("ignition pointer: %w", err)
	}
	pointerChecked.Store(key, true)
	return out, nil
}

// pointerChecked remembers the spec versions (and CAs) whose pointer passed
// the parser.
var pointerChecked sync.Map

type source struct {
	Source string `json:"source"`
}

type pointerConfig struct {
	Ignition struct {
		Version string `json:"version"`
		Config  struct {
			Replace source `json:"replace"`
		} `json:"config"`
		Security struct {
			TLS struct {
				CertificateAuthorities []source `json:"certificateAuthorities"`
			} `json:"tls"`
		} `json:"security"`
	} `json:"ignition"`
}

// validateLegacyPointer parses the pointer as legacy Ignition does. Its
// unknown-key check warns about security.tls in every 2.2+ config (its
// schema embeds the TLS struct), a warning the client itself ignores: so only
// errors count here, and the parsed result must hold the CA and the URL.
func validateLegacyPointer(raw []byte, replaceURL string) error {
	cfg, rpt, err := legacyparse.Parse(raw)
	if err != nil || rpt.IsFatal() {
		return fmt.Errorf("legacy Ignition (flatcar/ignition v0.36.2) rejects the pointer: %v %s", err, strings.TrimSpace(rpt.String()))
	}
	if r := cfg.Ignition.Config.Replace; r == nil || r.Source != replaceURL || len(cfg.Ignition.Security.TLS.CertificateAuthorities) != 1 {
		return fmt.Errorf("legacy Ignition reads the pointer without its replace URL or CA: %s", raw)
	}
	return nil
}
