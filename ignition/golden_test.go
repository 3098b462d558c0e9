package ignition

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flint-boot/flint/config"
)

// Regenerate the golden files after an intended change to the profiles or the
// pipeline with:
//
//	go test ./ignition/ -run TestGolden -update
//
// and review the diff: it is exactly what changes for nodes.
var update = flag.Bool("update", false, "rewrite ignition/testdata/golden/*.ign.json from the current output")

// TestGolden renders a server and an agent with fixed fake secrets (the real
// PKI's keys are random) and fixed asset files, so the whole config,
// secrets included, is stable. The files are indented for review; the
// served config is compact.
func TestGolden(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.renderer(t, fakeSecrets{})
	for name, mac := range map[string]config.MAC{"server": macNuc1, "agent": macNuc4} {
		for _, spec := range []Spec{SpecV3, SpecLegacy} {
			out, err := r.RenderMAC(mac, spec)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			file := name + ".ign.json"
			if spec == SpecLegacy {
				file = name + ".legacy.ign.json"
			}
			// The asset directory is a temp dir, but only hashes of its files
			// reach the config: nothing to mask.
			path := filepath.Join("testdata", "golden", file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with: go test ./ignition/ -run TestGolden -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("%s differs from the rendered config (if intended: go test ./ignition/ -run TestGolden -update)\n%s", path, firstDiff(string(want), pretty.String()))
			}
		}
	}
}

// firstDiff shows the first differing line.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  golden: " + wl + "\n  now:    " + gl
		}
	}
	return ""
}
