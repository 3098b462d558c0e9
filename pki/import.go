package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Copy copies the identity of the PKI in src into dst: the CA and its key,
// the K3s server and agent tokens, the report key and the admin token in one
// create-if-absent step when dst holds no CA yet, then every node password
// dst lacks. The node passwords go one by one (a site may have more than one
// etcd transaction holds) and only while dst's CA is src's: a copy that
// stopped half-way, or a later one, completes them. A dst with another CA
// is left as is and reported as otherCA: nothing of src's belongs there.
// Leaf certificates are not copied: the same CA issues new ones when nodes
// ask. copied says whether anything was written; a src without a CA copies
// nothing.
func Copy(src, dst Storage) (copied, otherCA bool, err error) {
	ca, err := src.read(caCertFile, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	} else if err != nil {
		return false, false, fmt.Errorf("pki: %w", err)
	}
	// Check what would be copied as Open does; this writes nothing.
	if _, err := OpenExistingStorage(src, time.Now, nil); err != nil {
		return false, false, fmt.Errorf("pki: %s is to be copied into %s but does not open: %w", src.Origin(), dst.Origin(), err)
	}
	var identity []item
	for _, name := range []string{caKeyFile, caCertFile, tokenFile, agentTokenFile, reportKeyFile, adminTokenFile} {
		data, err := src.read(name, true)
		if err != nil {
			return false, false, fmt.Errorf("pki: %w", err)
		}
		identity = append(identity, item{name: name, data: data, secret: name != caCertFile})
	}
	have, err := dst.read(caCertFile, false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = dst.create(identity...)
		if err == nil {
			copied, have = true, ca
		} else if !errors.Is(err, fs.ErrExist) {
			return false, false, fmt.Errorf("pki: copy %s into %s: %w", src.Origin(), dst.Origin(), err)
		} else if have, err = dst.read(caCertFile, false); err != nil { // another instance was first
			return false, false, err
		}
	case err != nil:
		return false, false, err
	}
	if !bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(ca)) {
		return false, true, nil
	}
	names, err := src.names(passwordsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return copied, false, fmt.Errorf("pki: %w", err)
	}
	for _, n := range names {
		if checkHostname("node name", n) != nil {
			continue // strays
		}
		name := passwordsDir + "/" + n
		if _, err := dst.read(name, true); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return copied, false, err
		}
		data, err := src.read(name, true)
		if err != nil {
			return copied, false, fmt.Errorf("pki: %w", err)
		}
		switch err := dst.create(item{name: name, data: data, secret: true}); {
		case err == nil:
			copied = true
		case !errors.Is(err, fs.ErrExist): // another instance copied it meanwhile
			return copied, false, fmt.Errorf("pki: copy %s into %s: %w", name, dst.Origin(), err)
		}
	}
	return copied, false, nil
}

// ImportFiles copies the PKI in directory dir (a site that ran on DATA/pki
// before it moved to an etcd store) into st (see Copy). Without it the first
// start on an empty store would make a new CA and tokens that the running
// cluster does not trust. A store with another CA (another instance was
// first, with another DATA/pki) is left as is. It reports whether it copied
// anything.
func ImportFiles(dir string, st Storage) (bool, error) {
	copied, _, err := Copy(&fileStorage{dir: dir, readOnly: true}, st)
	return copied, err
}

// ExportFiles copies the PKI in st (an etcd store) into directory dir, for
// a site going back to DATA/pki (flint store migrate --to bolt) or a copy
// next to a backup: the identity and every node password, 0600 in 0700
// folders. A dir that holds another CA is refused: it is another site's
// identity, and nodes may trust it.
func ExportFiles(st Storage, dir string) (bool, error) {
	dst := &fileStorage{dir: dir}
	if err := dst.start(false, nil); err != nil {
		return false, err
	}
	copied, other, err := Copy(st, dst)
	if other {
		return false, fmt.Errorf("pki: %s holds another CA than %s: nothing was copied; move that directory away (keep it: nodes may trust its CA) and run this again", dir, st.Origin())
	}
	return copied, err
}
