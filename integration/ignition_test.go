package integration

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue #3: every node gets a working Ignition config from flint. These tests
// run `flint serve` on loopback and let the real Ignition clients (the
// current coreos/ignition v2 and the legacy flatcar/ignition v0.36, built by
// scripts/build-ignition.sh into $FLINT_IGNITION_BIN) fetch
// /ignition?mac=... the way a PXE-booted node does: the URL comes from the
// kernel command line in flint's own iPXE script. The clients run the fetch
// and files stages into temporary roots, and the tests check what landed
// there. They need root (Ignition chowns files to etcd's uid 232).

const (
	v3ContentType     = "application/vnd.coreos.ignition+json;version=3.4.0"
	legacyContentType = "application/vnd.coreos.ignition+json;version=2.3.0"
)

// In returns a copy of the env whose helpers report to t (a subtest).
func (e *ignEnv) In(t *testing.T) *ignEnv {
	c := *e
	c.t = t
	return &c
}

// TestIgnitionRealClients: one flint, 3 servers + 1 agent. Each node's config
// is fetched and applied by the real client; the roots hold exactly what
// etcd and K3s need, the certificates verify, no node gets another's keys,
// and the legacy client gets a spec 2.x config it applies.
func TestIgnitionRealClients(t *testing.T) {
	e := newIgnEnv(t)
	e.Start()

	t.Run("http", func(t *testing.T) {
		e := e.In(t)
		for _, m := range e.Machines {
			hex := hexhyp(m.MAC)
			code, ctype, v3 := e.Fetch(hex, acceptV3)
			if code != 200 || ctype != v3ContentType || ignitionVersion(t, v3) != "3.4.0" {
				t.Errorf("%s: v3 client got %d %q, ignition.version %q; want 200 %q 3.4.0", m.Name, code, ctype, ignitionVersion(t, v3), v3ContentType)
			}
			// Each boot gets its own report token; everything else is the same.
			again := e.MustFetch(hex, acceptV3)
			if bytes.Equal(again, v3) {
				t.Errorf("%s: two boots got the same report token", m.Name)
			}
			if !bytes.Equal(canonical(again), canonical(v3)) {
				t.Errorf("%s: two fetches of the same config differ beyond their report tokens", m.Name)
			}
			if colon := e.MustFetch(m.MAC, acceptV3); !bytes.Equal(canonical(colon), canonical(v3)) {
				t.Errorf("%s: ?mac=%s and ?mac=%s give different configs", m.Name, m.MAC, hex)
			}
			if none := e.MustFetch(hex, ""); !bytes.Equal(canonical(none), canonical(v3)) {
				t.Errorf("%s: a request without Accept did not get the spec 3 config", m.Name)
			}
			code, ctype, legacy := e.Fetch(hex, acceptLegacy)
			if code != 200 || ctype != legacyContentType || ignitionVersion(t, legacy) != "2.3.0" {
				t.Errorf("%s: legacy client got %d %q, ignition.version %q; want 200 %q 2.3.0", m.Name, code, ctype, ignitionVersion(t, legacy), legacyContentType)
			}
			if again := e.MustFetch(hex, acceptLegacy); !bytes.Equal(canonical(again), canonical(legacy)) {
				t.Errorf("%s: two fetches of the same legacy config differ", m.Name)
			}
		}
		// `flint render` prints what the server serves (plus a final newline),
		// with placeholders where each delivery's tokens go.
		m := e.Machine("nuc1")
		for _, spec := range []struct{ flag, accept string }{{"3", acceptV3}, {"2", acceptLegacy}} {
			r := runFlint(t, "render", "--config", e.ConfigPath, "--data", e.Data, "--mac", m.MAC, "--spec", spec.flag)
			if served := e.MustFetch(hexhyp(m.MAC), spec.accept); r.Code != 0 || strings.TrimSuffix(r.Stdout, "\n") != string(canonical(served)) {
				t.Errorf("flint render --spec %s (exit %d) differs from what flint serves", spec.flag, r.Code)
			}
		}
		if code, _, body := e.Fetch("52-54-00-f1-00-99", acceptV3); code != 404 {
			t.Errorf("unknown MAC: %d %q, want 404", code, body)
		}
	})

	roots := map[string]nodeRoot{}
	for _, m := range e.Machines {
		t.Run("ignition/"+m.Name, func(t *testing.T) {
			e := e.In(t)
			start := time.Now()
			run := e.Apply(m)
			t.Logf("%s: fetch+files stages in %v", m.Name, time.Since(start).Round(time.Millisecond))
			r := nodeRoot{t: t, Dir: run.Root, Name: m.Name}
			roots[m.Name] = r
			if m.server() {
				e.CheckServer(r, m)
				e.CheckCerts(r, m)
			} else {
				e.CheckAgent(r, m)
			}
		})
	}

	t.Run("isolation", func(t *testing.T) {
		e := e.In(t)
		nuc1, ok1 := roots["nuc1"]
		_, ok2 := roots["nuc2"]
		nuc4, ok4 := roots["nuc4"]
		if !ok1 || !ok2 || !ok4 {
			t.Fatal("the nodes' roots were not all written")
		}
		nuc1.t, nuc4.t = t, t // report here, not to the finished subtests
		// nuc2's secrets as flint holds them.
		secrets := map[string][]byte{
			"nuc2's server key":    e.pkiFile("etcd/nuc2-server.key"),
			"nuc2's peer key":      e.pkiFile("etcd/nuc2-peer.key"),
			"nuc2's node password": bytes.TrimSpace(e.pkiFile("node-passwords/nuc2")),
		}
		for rel, content := range nuc1.Walk() {
			for what, secret := range secrets {
				if len(secret) > 0 && bytes.Contains(content, secret) {
					t.Errorf("nuc1's %s contains %s", rel, what)
				}
				// Also a key's base64 body without PEM armour, line by line.
				for _, ln := range bytes.Split(secret, []byte("\n")) {
					if !bytes.HasPrefix(secret, []byte("-----")) {
						break // not PEM: checked whole above
					}
					if len(ln) >= 40 && !bytes.HasPrefix(ln, []byte("-----")) && bytes.Contains(content, ln) {
						t.Errorf("nuc1's %s contains a line of %s", rel, what)
						break
					}
				}
			}
		}
		// The node's own keys are its own (flint's files for nuc1, not nuc2's).
		for _, f := range []string{"server", "peer"} {
			got, _ := os.ReadFile(nuc1.path("/etc/ssl/etcd/" + f + ".key"))
			if !bytes.Equal(got, e.pkiFile("etcd/nuc1-"+f+".key")) {
				t.Errorf("nuc1's %s.key is not flint's etcd/nuc1-%s.key", f, f)
			}
		}
		// No node gets the CA's key or flint's own etcd admin credentials.
		for _, m := range e.Machines {
			r, ok := roots[m.Name]
			if !ok {
				continue
			}
			r.t = t
			for rel, content := range r.Walk() {
				for what, secret := range map[string][]byte{"the CA key": e.pkiFile("ca.key"), "flint's admin key": e.pkiFile("clients/flint-admin.key")} {
					if bytes.Contains(content, bytes.TrimSpace(secret)) {
						t.Errorf("%s's %s contains %s", m.Name, rel, what)
					}
				}
			}
		}
		// The agent holds no private key at all (its node password is not a key).
		for rel, content := range nuc4.Walk() {
			if bytes.Contains(content, []byte("PRIVATE KEY")) {
				t.Errorf("agent nuc4's %s holds a private key", rel)
			}
		}
	})

	// The legacy client sends its own Accept header (spec 2.2.0 or 1): it
	// only applies what it can parse, so success means it got spec 2.x.
	for _, name := range []string{"nuc2", "nuc4"} {
		m := e.Machine(name)
		t.Run("ignition-legacy/"+name, func(t *testing.T) {
			e := e.In(t)
			start := time.Now()
			run := e.ApplyLegacy(m)
			t.Logf("%s: legacy fetch+files stages in %v", m.Name, time.Since(start).Round(time.Millisecond))
			r := nodeRoot{t: t, Dir: run.Root, Name: m.Name + " (legacy)", Legacy: true}
			if m.server() {
				e.CheckServer(r, m)
				e.CheckCerts(r, m)
				// Same credentials as the spec 3 client got.
				if v3, ok := roots[name]; ok {
					for _, f := range etcdFiles {
						a, _ := os.ReadFile(v3.path(f.rel))
						b, _ := os.ReadFile(r.path(f.rel))
						if !bytes.Equal(a, b) {
							t.Errorf("%s: %s differs between the spec 3 and the legacy config", name, f.rel)
						}
					}
				}
			} else {
				e.CheckAgent(r, m)
			}
		})
	}

	// Ignition retries a 5xx: a node that asks while an asset is missing
	// waits for it instead of failing.
	t.Run("asset-missing-503", func(t *testing.T) {
		e := e.In(t)
		m := e.Machine("nuc3")
		etcd := filepath.Join(e.Assets, "etcd/etcd")
		if err := os.Rename(etcd, etcd+".away"); err != nil {
			t.Fatal(err)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				if err := os.Rename(etcd+".away", etcd); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Cleanup(restore)
		code, _, body := e.Fetch(hexhyp(m.MAC), acceptV3)
		if code != 503 {
			t.Fatalf("config of %s while etcd/etcd is missing: %d %q, want 503", m.Name, code, body)
		}
		if !strings.Contains(string(body), "etcd") {
			t.Errorf("the 503 does not say which asset is missing: %q", body)
		}
		s := e.setupV3(m)
		done := make(chan clientResult, 1)
		go func() { done <- s.stage("fetch") }()
		select {
		case r := <-done:
			t.Fatalf("ignition fetch ended while the asset was missing:\n%s", r.Output())
		case <-time.After(2 * time.Second):
		}
		restore()
		var r clientResult
		select {
		case r = <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("ignition fetch did not finish within 60 s of the asset coming back")
		}
		if r.Err != nil {
			t.Fatalf("ignition fetch failed after the asset came back:\n%s", r.Output())
		}
		// Ignition logs each attempt and, for a 503, "GET result: Service Unavailable".
		if n := strings.Count(r.Stdout+r.Stderr, "GET result: Service Unavailable"); n == 0 {
			t.Errorf("ignition's log shows no 503 it retried:\n%s", r.Output())
		} else {
			t.Logf("ignition retried %d times through 503 and then applied the config", n)
		}
		if f := s.stage("files"); f.Err != nil {
			t.Fatalf("files stage:\n%s", f.Output())
		}
		root := nodeRoot{t: t, Dir: s.root, Name: m.Name}
		wantAsset(t, root, "/opt/bin/etcd", etcd)
	})
}

// configsOf fetches every machine's config in both specs.
func (e *ignEnv) configsOf() map[string][]byte {
	out := map[string][]byte{}
	for _, m := range e.Machines {
		out[m.Name+"/v3"] = canonical(e.MustFetch(hexhyp(m.MAC), acceptV3))
		out[m.Name+"/legacy"] = canonical(e.MustFetch(hexhyp(m.MAC), acceptLegacy))
	}
	return out
}

// pkiSnapshot reads every file below DATA/pki.
func (e *ignEnv) pkiSnapshot() map[string][]byte {
	e.t.Helper()
	r := nodeRoot{t: e.t, Dir: filepath.Join(e.Data, "pki"), Name: "flint's PKI"}
	return r.Walk()
}

// laidDown is a node root's files except Ignition's own run report, which
// carries a timestamp.
func laidDown(r nodeRoot) map[string][]byte {
	files := r.Walk()
	delete(files, "/etc/.ignition-result.json")
	// Each delivery has its own report token: compare the rest of the header.
	if h, ok := files["/etc/flint/report.header"]; ok {
		files["/etc/flint/report.header"] = regexp.MustCompile(`[0-9a-f]{64}`).ReplaceAll(h, []byte("TOKEN"))
	}
	return files
}

func diffFiles(t *testing.T, what string, a, b map[string][]byte) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if bb, ok := b[k]; !ok {
			t.Errorf("%s: %s vanished", what, k)
		} else if !bytes.Equal(a[k], bb) {
			t.Errorf("%s: %s changed", what, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: %s appeared", what, k)
		}
	}
}

// TestIgnitionRestart: configs are deterministic; a restarted flint (same
// data directory) serves the same CA, certificates, token and node passwords;
// changing one server's IP re-issues that server's certificates only.
func TestIgnitionRestart(t *testing.T) {
	e := newIgnEnv(t)
	e.Start()

	before := e.configsOf()
	for k, v := range e.configsOf() {
		if !bytes.Equal(v, before[k]) {
			t.Errorf("%s: two fetches differ", k)
		}
	}
	roots := map[string]map[string][]byte{}
	for _, m := range e.Machines {
		roots[m.Name] = laidDown(nodeRoot{t: t, Dir: e.Apply(m).Root, Name: m.Name})
	}
	pki := e.pkiSnapshot()
	for _, f := range []string{"/ca.crt", "/ca.key", "/k3s-token", "/etcd/nuc1-server.crt", "/etcd/nuc2-peer.key", "/node-passwords/nuc4"} {
		if _, ok := pki[f]; !ok {
			t.Fatalf("DATA/pki%s missing after serving every node; PKI holds %q", f, slices.Sorted(maps.Keys(pki)))
		}
	}

	e.Stop()
	e.Start()
	t.Run("restart-same-data", func(t *testing.T) {
		e := e.In(t)
		after := e.configsOf()
		for _, k := range slices.Sorted(maps.Keys(before)) {
			if !bytes.Equal(after[k], before[k]) {
				t.Errorf("%s: config changed across a restart", k)
			}
		}
		diffFiles(t, "DATA/pki across a restart", pki, e.pkiSnapshot())
		m := e.Machine("nuc1")
		diffFiles(t, "nuc1's root across a restart", roots["nuc1"], laidDown(nodeRoot{t: t, Dir: e.Apply(m).Root, Name: "nuc1"}))
	})

	// nuc2 moves to another address.
	const newIP = "198.18.0.72"
	e.Machines[1].IP = newIP
	nuc2 := e.Machines[1]
	e.Stop()
	e.Start()
	t.Run("ip-change", func(t *testing.T) {
		e := e.In(t)
		// Render everything once, so every certificate that would be re-issued is.
		e.configsOf()
		now := e.pkiSnapshot()
		for _, k := range slices.Sorted(maps.Keys(pki)) {
			moved := strings.HasPrefix(k, "/etcd/nuc2-")
			switch {
			case moved && strings.HasSuffix(k, ".crt") && bytes.Equal(now[k], pki[k]):
				t.Errorf("DATA/pki%s was not re-issued after nuc2's IP changed", k)
			case !moved && !bytes.Equal(now[k], pki[k]):
				t.Errorf("DATA/pki%s changed, but only nuc2's IP did", k)
			}
		}

		r := nodeRoot{t: t, Dir: e.Apply(nuc2).Root, Name: "nuc2"}
		e.CheckServer(r, nuc2) // INITIAL_CLUSTER, advertise URLs, hosts, network: the new IP
		e.CheckCerts(r, nuc2)  // exactly the new IP in the SANs
		server := certOf(t, r, "/etc/ssl/etcd/server.crt")
		for _, ip := range server.IPAddresses {
			if ip.String() == "198.18.0.62" {
				t.Errorf("nuc2's new server certificate still names the old IP")
			}
		}
		got := laidDown(r)
		for _, f := range []string{"/etc/ssl/etcd/ca.crt", "/etc/rancher/node/password", "/etc/ssl/etcd/client.crt", "/etc/ssl/etcd/client.key"} {
			if !bytes.Equal(got[f], roots["nuc2"][f]) {
				t.Errorf("nuc2's %s changed with its IP", f)
			}
		}
		if !bytes.Contains(got["/etc/rancher/k3s/k3s.env"], []byte("K3S_TOKEN="+strings.TrimSpace(string(pki["/k3s-token"]))+"\n")) {
			t.Errorf("nuc2's K3s token is not the one flint had before the change")
		}

		for _, name := range []string{"nuc1", "nuc3"} {
			m := e.Machine(name)
			r := nodeRoot{t: t, Dir: e.Apply(m).Root, Name: name}
			e.CheckServer(r, m) // its INITIAL_CLUSTER and /etc/hosts now carry nuc2's new IP
			got := laidDown(r)
			for _, f := range etcdFiles {
				if !bytes.Equal(got[f.rel], roots[name][f.rel]) {
					t.Errorf("%s's %s changed, but only nuc2's IP did", name, f.rel)
				}
			}
		}
	})
}

// A profile that overrides the embedded server profile: each broken variant
// changes one line of it.
const goodServerProfile = `variant: flatcar
version: {{.Cluster.ButaneVersion}}
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: {{.Machine.Hostname}}
    - path: /etc/flint-test
      mode: 0644
      contents:
        inline: hello from {{.Machine.Hostname}}
systemd:
  units:
    - name: flint-test.service
      enabled: true
      contents: |
        [Unit]
        Description=flint profile test

        [Service]
        Type=oneshot
        ExecStart=/usr/bin/true

        [Install]
        WantedBy=multi-user.target
`

// TestIgnitionBrokenProfile: a profile that does not render makes `flint
// validate` exit 1 naming the profile file and line, and `flint serve` refuse
// to start. The unbroken profile passes both, and Ignition applies it.
func TestIgnitionBrokenProfile(t *testing.T) {
	cases := []struct {
		name, from, to string
		// the reported line: the changed one, or (for a unit) its contents
		unitBlock bool
	}{
		{name: "good"},
		{name: "bad-yaml", from: "    - path: /etc/flint-test\n", to: "    - path: /etc/flint-test: {\n"},
		{name: "relative-path", from: "    - path: /etc/flint-test\n", to: "    - path: etc/flint-test\n"},
		{name: "invalid-unit", from: "        [Service]\n", to: "        [Service\n", unitBlock: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newIgnEnv(t)
			e.ProfilesDir = filepath.Join(e.Dir, "profiles")
			text := goodServerProfile
			if c.from != "" {
				if !strings.Contains(text, c.from) {
					t.Fatalf("test bug: %q not in the profile", c.from)
				}
				text = strings.Replace(text, c.from, c.to, 1)
			}
			profile := writeTestFile(t, filepath.Join(e.ProfilesDir, "server.yaml"), []byte(text), 0o644)
			e.WriteConfig()

			r := runFlint(t, "validate", "--config", e.ConfigPath, "--data", e.Data)
			if c.from == "" {
				if r.Code != 0 {
					t.Fatalf("validate of the good profile: exit %d, want 0\n%s", r.Code, r)
				}
				e.Start()
				m := e.Machine("nuc1")
				root := nodeRoot{t: t, Dir: e.Apply(m).Root, Name: m.Name}
				root.Equal("/etc/flint-test", root.File("/etc/flint-test", 0o644, 0, 0), "hello from nuc1")
				root.Unit("flint-test.service", "ExecStart=/usr/bin/true")
				root.Absent("/etc/etcd/etcd.env") // the override replaced the embedded profile

				// Broken while flint runs: servers get 503 (Ignition retries) and
				// flint's log names the line; the agent's profile is unaffected.
				before := canonical(e.MustFetch(hexhyp(m.MAC), acceptV3))
				agent := canonical(e.MustFetch(hexhyp(e.Machine("nuc4").MAC), acceptV3))
				broken := strings.Replace(text, "    - path: /etc/flint-test\n", "    - path: etc/flint-test\n", 1)
				writeTestFile(t, profile, []byte(broken), 0o644)
				if code, _, body := e.Fetch(hexhyp(m.MAC), acceptV3); code != 503 {
					t.Errorf("nuc1 while its profile is broken: %d %.200q, want 503", code, body)
				}
				where := fmt.Sprintf("%s:%d: nuc1", profile, lineOf(t, broken, "path: etc/flint-test"))
				// The line is logged before the 503 goes out, but reaches the
				// test through a pipe: give it a moment.
				if err := eventually(3*time.Second, 20*time.Millisecond, func() error {
					if !strings.Contains(e.flint.Stderr.String(), where) {
						return fmt.Errorf("flint's log does not name %s", where)
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
				if got := canonical(e.MustFetch(hexhyp(e.Machine("nuc4").MAC), acceptV3)); !bytes.Equal(got, agent) {
					t.Errorf("the agent's config changed when only the server profile broke")
				}
				writeTestFile(t, profile, []byte(text), 0o644)
				if got := canonical(e.MustFetch(hexhyp(m.MAC), acceptV3)); !bytes.Equal(got, before) {
					t.Errorf("nuc1's config after the profile was fixed differs from before")
				}
				return
			}

			lines := []int{lineOf(t, text, strings.TrimSuffix(c.to, "\n"))}
			if c.unitBlock {
				first := lineOf(t, text, "contents: |")
				last := lineOf(t, text, "WantedBy=multi-user.target")
				lines = nil
				for l := first; l <= last; l++ {
					lines = append(lines, l)
				}
			}
			var alts []string
			for _, l := range lines {
				alts = append(alts, regexp.QuoteMeta(fmt.Sprintf("%s:%d: ", profile, l)))
			}
			located := regexp.MustCompile(`(?m)^(` + strings.Join(alts, "|") + `)nuc[123]\b`)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the profile (expected report at line %v):\n%s", lines, numbered(text))
				}
			})

			if r.Code != 1 {
				t.Errorf("validate: exit %d, want 1\n%s", r.Code, r)
			}
			if loc := located.FindString(r.Stdout + r.Stderr); loc == "" {
				t.Errorf("validate does not report %s:%v: nuc1|2|3: ...\n%s", profile, lines, r)
			} else {
				t.Logf("validate reports %s...", loc)
			}

			p := e.lab.Start(t, "", "flint", flintBin, "serve", "--config", e.ConfigPath, "--data", e.Data, "--log-format", "text")
			code, ok := p.Wait(20 * time.Second)
			if !ok {
				p.Signal(syscall.SIGKILL)
				t.Fatalf("flint serve is still running 20 s after start with a broken profile; want it to refuse")
			}
			if code == 0 {
				t.Errorf("flint serve with a broken profile exited 0, want non-zero")
			}
			if !located.MatchString(strings.ReplaceAll(p.Stderr.String()+p.Stdout.String(), "\n  ", "\n")) {
				t.Errorf("flint serve's refusal does not name %s:%v:\n%s", profile, lines, p.Stderr.String())
			}
			if code, _, _, err := httpGet(e.Base+"/healthz", ""); err == nil {
				t.Errorf("flint with a broken profile answered /healthz: %d", code)
			}
		})
	}
}

func numbered(text string) string {
	var b strings.Builder
	for i, ln := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, ln)
	}
	return b.String()
}
