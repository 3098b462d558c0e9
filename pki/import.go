package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ImportFiles copies the identity of the PKI in directory dir (a site that
// ran on DATA/pki before it moved to an etcd store) into st: the CA and its
// key, the K3s server and agent tokens, the report key, the admin token and
// the node passwords, all in one create-if-absent step, and only when st
// holds no CA yet. Without it the first start on an empty store would make
// a new CA and tokens that the running cluster does not trust. Leaf
// certificates are not copied: the same CA issues new ones when nodes ask.
// It reports whether it copied; a dir without a CA copies nothing, and a
// store that already has a PKI (another instance was first) is left as is.
func ImportFiles(dir string, st Storage) (bool, error) {
	src := &fileStorage{dir: dir, readOnly: true}
	if _, err := src.read(caCertFile, false); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	// Check what would be copied as Open does; this writes nothing.
	if _, err := OpenExisting(dir, time.Now, nil); err != nil {
		return false, fmt.Errorf("pki: %s is to be copied into the etcd store but does not open: %w", dir, err)
	}
	var items []item
	for _, name := range []string{caKeyFile, caCertFile, tokenFile, agentTokenFile, reportKeyFile, adminTokenFile} {
		data, err := src.read(name, true)
		if err != nil {
			return false, fmt.Errorf("pki: %w", err)
		}
		items = append(items, item{name: name, data: data, secret: name != caCertFile})
	}
	entries, err := os.ReadDir(filepath.Join(dir, passwordsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("pki: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || checkHostname("node name", e.Name()) != nil {
			continue // temp files and strays
		}
		name := passwordsDir + "/" + e.Name()
		data, err := src.read(name, true)
		if err != nil {
			return false, fmt.Errorf("pki: %w", err)
		}
		items = append(items, item{name: name, data: data, secret: true})
	}
	// Nothing is copied over a store that has a CA, however it got there.
	if _, err := st.read(caCertFile, false); !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := st.create(items...); errors.Is(err, fs.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("pki: copy %s into %s: %w", dir, st.Origin(), err)
	}
	return true, nil
}
