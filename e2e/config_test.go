package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/flint-boot/flint/e2e/vlab"
)

// ignitionConfig is the part of an Ignition 3.x config the suite compares
// with what the real client wrote.
type ignitionConfig struct {
	Ignition struct {
		Version string `json:"version"`
	} `json:"ignition"`
	Storage struct {
		Files []struct {
			node
			Contents struct {
				Source      *string `json:"source"`
				Compression *string `json:"compression"`
			} `json:"contents"`
		} `json:"files"`
		Directories []node `json:"directories"`
	} `json:"storage"`
	Systemd struct {
		Units []struct {
			Name     string  `json:"name"`
			Contents *string `json:"contents"`
		} `json:"units"`
	} `json:"systemd"`
}

type node struct {
	Path  string `json:"path"`
	Mode  *int   `json:"mode"`
	User  owner  `json:"user"`
	Group owner  `json:"group"`
}

type owner struct {
	ID *int `json:"id"`
}

func (o owner) id() int {
	if o.ID == nil {
		return 0
	}
	return *o.ID
}

// renderIgnition is the config flint serves the machine, made by `flint
// render` from the lab's config and data directory (same PKI, same assets).
// The suite cannot simply GET /ignition again: in full DHCP mode flint
// serves a config only to the address it leased to that MAC, and only once
// per boot token (the boot spent it; checkReplay shows the 403).
func renderIgnition(lab *vlab.Lab, vm vlab.VM) (*ignitionConfig, int, error) {
	cmd := exec.Command(flintBin, "render", "--mac", vm.MAC, "--config", lab.ConfigPath, "--data", lab.DataDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("flint render --mac %s: %v: %s", vm.MAC, err, stderr.String())
	}
	var c ignitionConfig
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, 0, fmt.Errorf("decode: %v", err)
	}
	return &c, len(bytes.TrimSpace(out)), nil
}

// reportHeaderPath holds the one thing a served config has that `flint
// render` cannot show: the report token, fresh for every delivery. render
// prints a placeholder of the same length there.
const reportHeaderPath = "/etc/flint/report.header"

var (
	servedReportHeader   = regexp.MustCompile(`^Authorization: Bearer [0-9a-f]{64}$`)
	renderedReportHeader = regexp.MustCompile(`^Authorization: Bearer FLINT_PER_BOOT_REPORT_TOKEN_X+$`)
)

// checkConfigApplied compares every file, directory and unit of the served
// config with the console's E2E-FILE/E2E-DIR lines: content (sha256), mode
// and owner, byte for byte, but for the report token (checkReportHeader).
func checkConfigApplied(t *testing.T, lab *vlab.Lab, r *vmRun) {
	t.Helper()
	cfg, files, dirs := r.config, r.console.Files, r.console.Dirs
	if !strings.HasPrefix(cfg.Ignition.Version, "3.") {
		t.Errorf("served config has ignition.version %q, want 3.x", cfg.Ignition.Version)
	}
	for _, f := range cfg.Storage.Files {
		got, ok := files[f.Path]
		if !ok {
			t.Errorf("config file %s: not on the machine", f.Path)
			continue
		}
		checkNode(t, f.node, got, 0o644)
		if f.Contents.Source == nil {
			continue
		}
		want, err := sourceContent(*f.Contents.Source, f.Contents.Compression, lab.AssetsDir)
		if err != nil {
			t.Errorf("config file %s: %v", f.Path, err)
			continue
		}
		if f.Path == reportHeaderPath {
			checkReportHeader(t, r, got, string(want))
			continue
		}
		if got.SHA256 != sha256hex(want) {
			t.Errorf("config file %s: machine has sha256 %s, config says %s", f.Path, got.SHA256, sha256hex(want))
		}
	}
	for _, d := range cfg.Storage.Directories {
		got, ok := dirs[d.Path]
		if !ok {
			t.Errorf("config directory %s: not on the machine", d.Path)
			continue
		}
		checkNode(t, d, got, 0o755)
	}
	for _, u := range cfg.Systemd.Units {
		if u.Contents == nil {
			continue
		}
		p := "/etc/systemd/system/" + u.Name
		if got, ok := files[p]; !ok {
			t.Errorf("unit %s: not on the machine", p)
		} else if got.SHA256 != sha256hex([]byte(*u.Contents)) {
			t.Errorf("unit %s: content differs from the config", p)
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	t.Logf("%d files, %d directories, %d units of the served config are on the machine as configured; its console lists: %s",
		len(cfg.Storage.Files), len(cfg.Storage.Directories), len(cfg.Systemd.Units), strings.Join(paths, " "))
}

// checkReportHeader: render has the placeholder, the machine a 64-hex-digit
// token in its place (the console's E2E-REPORT-HEADER line is the file: same
// sha256). That flint took the token is checked by the node report itself.
func checkReportHeader(t *testing.T, r *vmRun, got vlab.File, rendered string) {
	t.Helper()
	served := r.console.ReportHeader
	if !renderedReportHeader.MatchString(rendered) || len(rendered) != len("Authorization: Bearer ")+64 {
		t.Errorf("%s: flint render gives %q, want %q, the placeholder as long as a token", reportHeaderPath, rendered, renderedReportHeader)
	}
	switch {
	case sha256hex([]byte(served)) != got.SHA256:
		t.Errorf("%s: the console's E2E-REPORT-HEADER line is not the file (sha256 %s, file %s)", reportHeaderPath, sha256hex([]byte(served)), got.SHA256)
	case !servedReportHeader.MatchString(served):
		t.Errorf("%s on the machine: %q, want %q", reportHeaderPath, redact("E2E-REPORT-HEADER "+served), servedReportHeader)
	case served == rendered:
		t.Errorf("%s on the machine is render's placeholder: flint served no report token", reportHeaderPath)
	}
}

func checkNode(t *testing.T, n node, got vlab.File, defaultMode int) {
	t.Helper()
	mode := defaultMode
	if n.Mode != nil {
		mode = *n.Mode
	}
	if want := fmt.Sprintf("%o", mode); got.Mode != want {
		t.Errorf("%s: mode %s, config says %s", n.Path, got.Mode, want)
	}
	if got.UID != n.User.id() || got.GID != n.Group.id() {
		t.Errorf("%s: owner %d:%d, config says %d:%d", n.Path, got.UID, got.GID, n.User.id(), n.Group.id())
	}
}

// sourceContent is what a contents.source holds: a data URL decoded (and
// gunzipped when the config says so), or an asset flint serves, read from
// the assets directory.
func sourceContent(src string, compression *string, assetsDir string) ([]byte, error) {
	var b []byte
	switch {
	case strings.HasPrefix(src, "data:"):
		meta, data, ok := strings.Cut(strings.TrimPrefix(src, "data:"), ",")
		if !ok {
			return nil, fmt.Errorf("malformed data URL")
		}
		if strings.HasSuffix(meta, ";base64") {
			var err error
			if b, err = base64.StdEncoding.DecodeString(data); err != nil {
				return nil, err
			}
		} else {
			s, err := url.PathUnescape(data)
			if err != nil {
				return nil, err
			}
			b = []byte(s)
		}
	case strings.HasPrefix(src, vlab.FlintURL+"/assets/"):
		rel, err := url.PathUnescape(strings.TrimPrefix(src, vlab.FlintURL+"/assets/"))
		if err != nil {
			return nil, err
		}
		if b, err = os.ReadFile(filepath.Join(assetsDir, filepath.FromSlash(rel))); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("source %.60q is neither a data URL nor one of flint's assets", src)
	}
	if compression != nil && *compression == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}
	return b, nil
}
