package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any bytes as a config file either parse into a config whose
// machines are all found by key, or give a *Error whose problems each name a
// field; never a panic, never another error type.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("server: {address: 198.18.0.1}\nmachines:\n  - {mac: \"52:54:00:00:00:01\", hostname: a, ip: 198.18.0.2, role: server}\n"))
	f.Add([]byte("dhcp: ["))
	f.Add([]byte("limits: {tftp_transfers: -5, http_connections: 99999999999999999999}\n"))
	f.Add([]byte("security: {token_ttl: 1ns}\nboot: {kernel_args: [\"{{.Hostname\"]}\n"))
	f.Add([]byte("machines: [{mac: \"52-54-00-00-00-01\", hostname: \"../x\", ip: \"::1\", role: server, kernel_args: [\"a;b\"]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("not a *config.Error: %T %v", err, err)
			}
			for _, p := range cerr.Problems {
				if p.Field == "" || p.Message == "" {
					t.Fatalf("a problem without field or message: %+v", p)
				}
			}
			return
		}
		for i := range cfg.Machines {
			m := &cfg.Machines[i]
			got, ok := cfg.MachineByMAC(m.HW)
			if !ok || got.Hostname != m.Hostname {
				t.Fatalf("machine %d (%s) not found by its MAC", i, m.MAC)
			}
			if strings.ContainsAny(m.Hostname, "/ \n") {
				t.Fatalf("hostname %q accepted", m.Hostname)
			}
		}
		if cfg.Limits.TFTPTransfers < 1 || cfg.Limits.HTTPConnections < 1 || cfg.Security.TokenTTL.Duration <= 0 {
			t.Fatalf("a limit out of range was accepted: %+v %+v", cfg.Limits, cfg.Security)
		}
	})
}

// FuzzParseMAC: whatever it accepts prints back in both forms and parses
// again to the same MAC.
func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"52-54-00-ab-cd-ef", "52:54:00:AB:CD:EF", "", "52-54-00-ab-cd", "..%2f", "52:54-00:ab:cd:ef", "5254.00ab.cdef"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if err != nil {
			return
		}
		for _, form := range []string{m.String(), m.HexHyp()} {
			back, err := ParseMAC(form)
			if err != nil || back != m {
				t.Fatalf("%q -> %s does not parse back: %v", s, form, err)
			}
		}
		if !strings.EqualFold(strings.ReplaceAll(s, "-", ":"), m.String()) {
			t.Fatalf("%q parsed as %s", s, m)
		}
	})
}
