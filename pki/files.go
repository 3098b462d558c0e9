package pki

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/flint-boot/flint/atomicfile"
)

// Storage is where a PKI keeps its items: a directory (FileStorage) or an
// etcd cluster several flint instances share (EtcdStorage). Items are named
// by their path below the PKI, e.g. "ca.key" or "etcd/nuc1-server.crt".
type Storage interface {
	// start prepares the storage for a PKI that writes (readOnly false)
	// or only reads.
	start(readOnly bool, log *slog.Logger) error
	// where names an item for messages: a file path or an etcd key.
	where(name string) string
	// origin names the whole storage for "restore from a backup of ...".
	Origin() string
	// read returns an item's content, or an error matching fs.ErrNotExist.
	read(name string, secret bool) ([]byte, error)
	// readPair reads two items at one point in time (etcd: one revision),
	// so a pair another instance stores at once is seen whole or not at all.
	readPair(a, b item) (aData []byte, aErr error, bData []byte, bErr error)
	// create stores all items, in order, none of which may exist yet; if
	// one does, it fails with an error matching fs.ErrExist.
	create(items ...item) error
	// put stores the items, replacing what was there.
	put(items ...item) error
	// names lists the items directly in folder dir (file names; temp files
	// left out), an error matching fs.ErrNotExist when there is no folder.
	names(dir string) ([]string, error)
	// shared says whether several flint instances use the storage: then
	// each keeps its own serving certificate (its own names and addresses).
	shared() bool
}

// item is one thing to store; secret items are private (0600 files).
type item struct {
	name   string
	data   []byte
	secret bool
}

// FileStorage keeps the PKI in directory dir (e.g. DATA/pki), as the
// package comment lays out.
func FileStorage(dir string) Storage { return &fileStorage{dir: dir} }

type fileStorage struct {
	dir      string
	readOnly bool
	log      *slog.Logger
}

func (f *fileStorage) start(readOnly bool, log *slog.Logger) error {
	f.readOnly, f.log = readOnly, log
	if readOnly {
		return nil
	}
	for _, d := range []string{f.dir, f.where(etcdDir), f.where(clientsDir), f.where(servingDir), f.where(passwordsDir)} {
		if err := ensurePrivateDir(d); err != nil {
			return err
		}
		// A crash between creating and renaming a temp file leaves it behind.
		if err := removeStaleTemps(d); err != nil {
			return err
		}
	}
	return nil
}

func (f *fileStorage) where(name string) string { return filepath.Join(f.dir, name) }
func (f *fileStorage) Origin() string           { return f.dir }
func (f *fileStorage) shared() bool             { return false }

func (f *fileStorage) read(name string, secret bool) ([]byte, error) {
	path := f.where(name)
	data, err := os.ReadFile(path)
	if err != nil || !secret {
		return data, err
	}
	// A file that must be private: tighten its mode if a restore from
	// backup left it readable by others.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && !f.readOnly {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("make %s private: %w", path, err)
		}
		if f.log != nil {
			f.log.Warn("secret file was readable by others; changed its mode to 0600", "file", path, "was", fi.Mode().Perm())
		}
	}
	return data, nil
}

func (f *fileStorage) readPair(a, b item) ([]byte, error, []byte, error) {
	aData, aErr := f.read(a.name, a.secret)
	bData, bErr := f.read(b.name, b.secret)
	return aData, aErr, bData, bErr
}

// create writes each file with atomicfile.WriteNew, which refuses to replace
// an existing file, so a second flint process can never swap the CA or a
// token.
func (f *fileStorage) create(items ...item) error {
	for _, it := range items {
		if err := atomicfile.WriteNew(f.where(it.name), it.data, perm(it)); err != nil {
			return err
		}
	}
	return nil
}

// put writes each file atomically (atomicfile.Write): readers see the old
// content or the new one, never a torn file, also after a power loss.
func (f *fileStorage) put(items ...item) error {
	for _, it := range items {
		if err := atomicfile.Write(f.where(it.name), it.data, perm(it)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fileStorage) names(dir string) ([]string, error) {
	entries, err := os.ReadDir(f.where(dir))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func perm(it item) os.FileMode {
	if it.secret {
		return 0o600
	}
	return 0o644
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
		if name := e.Name(); atomicfile.IsTemp(name) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("pki: remove stale temp file: %w", err)
			}
		}
	}
	return nil
}

// certNames lists the certificates (NAME.crt) in folder dir of st.
func certNames(st Storage, dir string) ([]string, error) {
	names, err := st.names(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if isCertFileName(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// isCertFileName says whether a directory entry is a certificate flint wrote
// (temp files start with a dot).
func isCertFileName(name string) bool {
	return strings.HasSuffix(name, ".crt") && !strings.HasPrefix(name, ".")
}
