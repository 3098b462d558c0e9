package config

import (
	"path/filepath"
	"strings"
)

// CheckDataDir checks the config against the data directory flint runs with:
// boot.assets_dir, which /assets/ serves to anyone, must not hold the data
// directory (the state database, the admin socket) or its pki/ (the CA key,
// tokens, node passwords). An error is a *Error naming the field and line.
func (c *Config) CheckDataDir(dataDir string) error {
	if c.Boot.AssetsDir == "" {
		return nil // DATA/assets: inside the data directory, beside pki/
	}
	assets, err1 := resolvePath(c.Boot.AssetsDir)
	data, err2 := resolvePath(dataDir)
	if err1 != nil || err2 != nil {
		return nil // unresolvable paths fail later with their own error
	}
	pki := filepath.Join(data, "pki")
	var msg string
	switch {
	case within(data, assets):
		msg = "%q holds flint's data directory %q: /assets/ would serve the state database and the PKI (the CA key, tokens, node passwords) to anyone; use a directory beside it, like " + filepath.Join(dataDir, "assets")
	case within(assets, pki):
		msg = "%q is inside flint's PKI directory under %q: /assets/ would serve private keys; use a directory outside " + pki
	default:
		return nil
	}
	p := Problem{Field: "boot.assets_dir", Line: c.line("boot.assets_dir"), Message: sprintf(msg, c.Boot.AssetsDir, dataDir)}
	return &Error{Source: c.Source, Problems: []Problem{p}}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// resolvePath makes p absolute and resolves the symlinks of the part of it
// that exists, so two spellings of one directory compare equal.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
