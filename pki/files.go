package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flint-boot/flint/atomicfile"
)

// writeFile writes data to path atomically (atomicfile.Write): readers see
// the old content or the new one, never a torn file, also after a power loss.
func writeFile(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// writeNewFile is writeFile for things that must never be overwritten (the CA,
// the token, node passwords): it fails with an error matching fs.ErrExist if
// path exists (atomicfile.WriteNew).
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteNew(path, data, perm)
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// ensurePrivateDir creates dir with mode 0700, or tightens an existing one:
// it holds private keys.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pki: %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("pki: make %s private: %w", dir, err)
		}
	}
	return nil
}

func removeStaleTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); atomicfile.IsTemp(name) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("pki: remove stale temp file: %w", err)
			}
		}
	}
	return nil
}

// isCertFileName says whether a directory entry is a certificate flint wrote
// (temp files start with a dot).
func isCertFileName(name string) bool {
	return strings.HasSuffix(name, ".crt") && !strings.HasPrefix(name, ".")
}
