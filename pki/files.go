package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is part of every temp file name, so Open can clean up after a crash.
const tempMarker = ".tmp-"

// writeFile writes data to path atomically: readers see the old content or the
// new one, never a torn file, also after a power loss. The data goes to a temp
// file in the same directory, is fsynced, then moved into place and the
// directory is fsynced so the new name is durable too.
func writeFile(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, os.Rename)
}

// writeNewFile is writeFile for things that must never be overwritten (the CA,
// the token, node passwords): it fails with an error matching fs.ErrExist if
// path exists. A hard link, unlike rename, refuses to replace its target.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, os.Link)
}

func writeAtomic(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+tempMarker+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// After a rename this finds nothing; after a link it drops the temp name.
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := place(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

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
		if name := e.Name(); strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker) && e.Type().IsRegular() {
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
