package config

import (
	"errors"
	"strings"
	"testing"
)

// parseProblems parses text and returns its problems located in site.yaml.
func parseProblems(t *testing.T, text string) []string {
	t.Helper()
	_, err := Parse("site.yaml", []byte(text))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want *config.Error, got %v", err)
	}
	var out []string
	for _, p := range cerr.Problems {
		out = append(out, p.Located("site.yaml"))
	}
	return out
}

func wantProblems(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d = %q\nwant it to contain %q", i, got[i], want[i])
		}
	}
}

// A user's typos and wrong kinds of values come back in the config's own
// terms, each at its line, all at once, and the other checks still run.
func TestParseShapeProblems(t *testing.T) {
	t.Run("every wrong key and value at once, with the other checks", func(t *testing.T) {
		text := strings.NewReplacer(
			"lease_time: 2h", "lease_tme: 2h",
			"interface: veth0", "interface: veth0\n  http_port: eighty",
			"role: server}", "role: server, ip: 198.18.0.99}",
			"role: agent\n", "role: worker\n",
		).Replace(goodConfig)
		got := parseProblems(t, text)
		wantProblems(t, got,
			`site.yaml:3: server.http_port: "eighty" is not a number`,
			`site.yaml:11: dhcp.lease_tme: unknown key (did you mean lease_time?); dhcp takes: mode, subnet, pool, router, dns, domain, lease_time, offer_hold, decline_hold, discover_unknown`,
			`site.yaml:13: machines[0].ip: is given twice (first at line 13): keep one`,
			`site.yaml:14: machines[1].ip: is given twice`,
			`site.yaml:15: machines[2].ip: is given twice`,
			`site.yaml:19: machines[3].role: unknown role "worker"`,
		)
	})
	t.Run("type errors name what is allowed", func(t *testing.T) {
		got := parseProblems(t, "server: {address: 198.18.0.1, http_port: 99999999999999999999}\n"+
			"dhcp: {mode: proxy, lease_time: forever, discover_unknown: maybe, dns: 198.18.0.1}\n"+
			"cluster: {ssh_authorized_keys: [{a: b}], assets: x, install_mode: live}\n"+
			"machines:\n  - {mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9, role: server}\n")
		wantProblems(t, got,
			`site.yaml:1: server.http_port: 99999999999999999999 is too large for a number here`,
			`site.yaml:2: dhcp.lease_time: "forever" is not a duration like 90s, 30m or 2h`,
			`site.yaml:2: dhcp.discover_unknown: "maybe" is not true or false`,
			`site.yaml:2: dhcp.dns: must be a list (- item per line, or [a, b]), not "198.18.0.1"`,
			`site.yaml:3: cluster.ssh_authorized_keys[0]: must be a single value, not a mapping`,
			`site.yaml:3: cluster.assets: must be a mapping of keys (k3s, etcd, etcdctl), not "x"`,
		)
	})
	t.Run("unknown top-level key and a document that is no mapping", func(t *testing.T) {
		wantProblems(t, parseProblems(t, "sever: {address: 198.18.0.1}\n"),
			`site.yaml:1: sever: unknown key (did you mean server?); the config takes: server, dhcp, ipxe, boot, cluster, assets, security, limits, store, machines`,
			`machines: no machine has role server`)
		wantProblems(t, parseProblems(t, "just words\n"), `site.yaml:1: (file): must be a mapping of keys (server, dhcp,`)
	})
	t.Run("an unclosed bracket points at its own line", func(t *testing.T) {
		wantProblems(t, parseProblems(t, "server: {address: 198.18.0.1}\n\ndhcp: [a, b\nmachines: []\n"),
			`site.yaml:3: (yaml): a [ list opened here is not closed: add the ]`)
		wantProblems(t, parseProblems(t, "server: {address: 198.18.0.1}\ndhcp: {mode: full\nmachines: []\n"),
			`site.yaml:2: (yaml): a { mapping opened here is not closed: add the }`)
		wantProblems(t, parseProblems(t, "machines: [a\n"), `site.yaml:1: (yaml): a [ list opened here`)
	})
	t.Run("anchors and merges are checked like the keys they stand for", func(t *testing.T) {
		got := parseProblems(t, "x-base: &base {role: server, colour: red}\n"+
			"server: {address: 198.18.0.1}\n"+
			"machines:\n  - {<<: *base, mac: '52:54:00:00:00:01', hostname: a, ip: 198.18.0.9}\n"+
			"cluster: {install_mode: live}\n")
		wantProblems(t, got, `site.yaml:1: x-base: unknown key`, `site.yaml:1: machines[0].colour: unknown key`)
	})
}
