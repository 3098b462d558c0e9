package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ImportFiles copies the identity of the PKI in directory dir (a site that
// ran on DATA/pki before it moved to an etcd store) into st: the CA and its
// key, the K3s server and agent tokens, the report key and the admin token
// in one create-if-absent step when st holds no CA yet, then every node
// password st lacks. Without it the first start on an empty store would make
// a new CA and tokens that the running cluster does not trust. The node
// passwords go one by one (a site may have more than one etcd transaction
// holds) and only while st's CA is dir's: a start that stopped half-way, or
// a later one, completes them; a store with another CA (another instance
// was first, with another DATA/pki) is left as is. Leaf certificates are
// not copied: the same CA issues new ones when nodes ask. It reports whether
// it copied anything; a dir without a CA copies nothing.
func ImportFiles(dir string, st Storage) (bool, error) {
	src := &fileStorage{dir: dir, readOnly: true}
	ca, err := src.read(caCertFile, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("pki: %w", err)
	}
	// Check what would be copied as Open does; this writes nothing.
	if _, err := OpenExisting(dir, time.Now, nil); err != nil {
		return false, fmt.Errorf("pki: %s is to be copied into the etcd store but does not open: %w", dir, err)
	}
	var identity []item
	for _, name := range []string{caKeyFile, caCertFile, tokenFile, agentTokenFile, reportKeyFile, adminTokenFile} {
		data, err := src.read(name, true)
		if err != nil {
			return false, fmt.Errorf("pki: %w", err)
		}
		identity = append(identity, item{name: name, data: data, secret: name != caCertFile})
	}
	copied := false
	have, err := st.read(caCertFile, false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = st.create(identity...)
		if err == nil {
			copied, have = true, ca
		} else if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("pki: copy %s into %s: %w", dir, st.Origin(), err)
		} else if have, err = st.read(caCertFile, false); err != nil { // another instance was first
			return false, err
		}
	case err != nil:
		return false, err
	}
	if !bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(ca)) {
		return false, nil // another identity: nothing of dir's belongs there
	}
	entries, err := os.ReadDir(filepath.Join(dir, passwordsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return copied, fmt.Errorf("pki: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || checkHostname("node name", e.Name()) != nil {
			continue // temp files and strays
		}
		name := passwordsDir + "/" + e.Name()
		if _, err := st.read(name, true); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return copied, err
		}
		data, err := src.read(name, true)
		if err != nil {
			return copied, fmt.Errorf("pki: %w", err)
		}
		switch err := st.create(item{name: name, data: data, secret: true}); {
		case err == nil:
			copied = true
		case !errors.Is(err, fs.ErrExist): // another instance copied it meanwhile
			return copied, fmt.Errorf("pki: copy %s into %s: %w", name, st.Origin(), err)
		}
	}
	return copied, nil
}
