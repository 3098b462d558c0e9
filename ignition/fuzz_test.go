package ignition

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flint-boot/flint/profiles"
)

// FuzzProfile renders an agent with any template text as its profile. Either
// the render fails with a problem flint can report (ProfileError, naming the
// template line), or the config passed Ignition's parser; and an agent's
// config never holds what only servers get (the server token, etcd keys),
// whatever the template asks for.
func FuzzProfile(f *testing.F) {
	embedded := profiles.FS()
	for _, name := range []string{"agent.yaml", "server.yaml", "installer.yaml"} {
		b, err := fs.ReadFile(embedded, name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /x\n      contents:\n        inline: {{.K3s.Token}}{{.Secrets.ServerKey}}\n")
	f.Add("variant: flatcar\nversion: 1.1.0\n{{template \"k3s-files\" .}}\n{{range .Hosts}}{{.IP}}{{end}}")
	f.Add("{{dataurl .Boot.ReportToken}}")
	f.Add("{{define \"x\"}}{{template \"x\" .}}{{end}}{{template \"x\" .}}")
	f.Add("variant: flatcar\nversion: 1.1.0\nsystemd:\n  units:\n    - name: a.service\n      contents: |\n        {{.Machine.Hostname}}\n")
	e := newEnv(f, envOpts{profiles: true})
	f.Fuzz(func(t *testing.T, tmpl string) {
		if err := os.WriteFile(filepath.Join(e.profilesDir, "agent.yaml"), []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := NewRenderer(e.cfg, fakeSecrets{}, e.assetsDir, RenderOptions{})
		if err != nil {
			return // the set does not load (e.g. a part that does not parse): flint says so at start-up
		}
		out, err := r.RenderMAC(macNuc4, SpecV3)
		if err != nil {
			var pe *ProfileError
			var perr *profiles.Error
			if !errors.As(err, &pe) && !errors.As(err, &perr) {
				t.Fatalf("render failed without a profile problem: %T %v", err, err)
			}
			return
		}
		if len(out) == 0 {
			t.Fatal("empty config without an error")
		}
		server := fakeSecrets{}.K3sToken()
		for _, needle := range []string{server, base64.StdEncoding.EncodeToString([]byte(server)), "PRIVATE KEY", base64.StdEncoding.EncodeToString([]byte("-----BEGIN"))} {
			if strings.Contains(string(out), needle) {
				t.Fatalf("an agent's config holds %q:\n%s", needle, out)
			}
		}
	})
}
