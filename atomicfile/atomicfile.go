// Package atomicfile writes files so that a crash or a concurrent reader
// sees either the old or the new content, never a torn one. It is flint's
// one way to write a file that must survive a crash.
package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is part of every temporary file's name (".NAME.tmp-RANDOM"),
// so that IsTemp recognises what a crash left behind.
const tempMarker = ".tmp-"

// Write writes data to a temporary file beside path, fsyncs it, renames it
// over path and fsyncs the directory, so the rename itself survives a crash.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// WriteNew is Write for what must never be overwritten (a CA key, a token):
// it fails with an error matching fs.ErrExist if path exists. A hard link,
// unlike a rename, refuses to replace its target.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Link)
}

func write(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tempMarker+"*")
	if err != nil {
		return err
	}
	// After a rename this finds nothing; after a link it drops the temp name.
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := place(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Install moves a complete file written elsewhere (a verified download) to
// dst with the same guarantees as Write: it fsyncs the file and sets its
// mode, creates dst's directory, renames, and fsyncs the directory. tmp must
// be on dst's file system.
func Install(tmp, dst string, perm os.FileMode) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
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
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(dst))
}

// IsTemp says whether a directory entry's name is a temporary file of Write
// or WriteNew: one a crash left behind, when no write is running.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
