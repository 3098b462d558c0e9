package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAssetsDirMustNotHoldTheDataDir(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(data, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		assets string
		want   string // "" = accepted
	}{
		{"", ""},
		{filepath.Join(data, "assets"), ""},
		{filepath.Join(root, "srv", "assets"), ""},
		{data, "holds flint's data directory"},
		{root, "holds flint's data directory"},
		{filepath.Join(root, "link"), "holds flint's data directory"},
		{filepath.Join(data, "pki"), "inside flint's PKI directory"},
		{filepath.Join(root, "link", "pki", "etcd"), "inside flint's PKI directory"},
		{"/", "holds flint's data directory"},
	} {
		text := goodConfig + "boot: {assets_dir: " + quoteYAMLString(c.assets) + "}\n"
		cfg, err := Parse("site.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.CheckDataDir(data)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("assets_dir %q: %v", c.assets, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "site.yaml:22: boot.assets_dir:")):
			t.Errorf("assets_dir %q: %v, want an error at site.yaml:22 saying %q", c.assets, err, c.want)
		}
	}
}

func quoteYAMLString(s string) string { return `"` + s + `"` }
