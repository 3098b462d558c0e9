package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// validateStore checks the store section. With etcd it also checks the
// certificate files: flint would otherwise fail at start, or, worse, on
// another host than the one validating.
func (cfg *Config) validateStore(c *checker) {
	st := &cfg.Store
	switch st.Backend {
	case StoreBolt:
		if len(st.Endpoints) > 0 {
			// An etcd section prepared next to bolt names the destination of
			// flint store migrate --to etcd: checked in full like one in use.
			break
		}
		for field, set := range map[string]bool{
			"store.endpoints": len(st.Endpoints) > 0, "store.ca_file": st.CAFile != "", "store.cert_file": st.CertFile != "",
			"store.key_file": st.KeyFile != "", "store.prefix": st.Prefix != "", "store.encryption_key_file": st.EncryptionKeyFile != "",
		} {
			if set {
				c.fail(field, "is an etcd setting, but store.backend is bolt (DATA/flint.db) and store.endpoints is missing: set store.backend: etcd, list the etcd members in store.endpoints (to prepare flint store migrate --to etcd), or remove it")
			}
		}
		return
	case StoreEtcd:
	default:
		c.fail("store.backend", "unknown backend %q: use bolt (the default: DATA/flint.db) or etcd", st.Backend)
		return
	}
	if len(st.Endpoints) == 0 {
		c.fail("store.endpoints", "missing: the etcd backend needs the client URLs of the etcd members, like [https://198.18.0.10:2379, https://198.18.0.11:2379, https://198.18.0.12:2379]")
	}
	seen := map[string]string{}
	for i, e := range st.Endpoints {
		field := fmt.Sprintf("store.endpoints[%d]", i)
		u, err := url.Parse(e)
		switch {
		case err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "":
			c.fail(field, "%q is not an https URL of an etcd member like https://198.18.0.10:2379 (flint speaks to its store over TLS only)", e)
		case seen[u.Host] != "":
			c.fail(field, "%s is listed twice (also %s)", u.Host, seen[u.Host])
		default:
			seen[u.Host] = field
		}
	}
	c.pemFile("store.ca_file", st.CAFile, "the CA certificate that signed the etcd members' certificates", false)
	c.pemFile("store.cert_file", st.CertFile, "flint's client certificate for etcd", false)
	c.pemFile("store.key_file", st.KeyFile, "the private key of store.cert_file", true)
	c.encryptionKeyFile("store.encryption_key_file", st.EncryptionKeyFile)
	if !strings.HasPrefix(st.Prefix, "/") || !strings.HasSuffix(st.Prefix, "/") || len(st.Prefix) < 2 {
		c.fail("store.prefix", "%q must start and end with '/' and name something, like /flint/site-a/ (each site sharing an etcd takes its own)", st.Prefix)
	} else if strings.ContainsFunc(st.Prefix, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		c.fail("store.prefix", "%q contains white space or control characters", st.Prefix)
	}
}

// pemFile checks that a file the store needs exists, is a readable regular
// file and, for a private key, is readable by its owner only.
func (c *checker) pemFile(field, path, what string, private bool) {
	if path == "" {
		c.fail(field, "missing: the etcd backend needs %s (a PEM file)", what)
		return
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.fail(field, "%s does not exist: it should hold %s", path, what)
		return
	case errors.Is(err, fs.ErrPermission):
		c.fail(field, "%s: permission denied: run flint as the user that owns it (usually root), or fix the directories' modes", path)
		return
	case err != nil:
		c.fail(field, "%v", err)
		return
	case !fi.Mode().IsRegular():
		c.fail(field, "%s is not a regular file: it should hold %s", path, what)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		c.fail(field, "%s is not readable by this user: %v (run flint as the user that owns it, usually root)", path, err)
		return
	}
	f.Close()
	if private && fi.Mode().Perm()&0o077 != 0 {
		c.fail(field, "%s has mode %04o: a private key must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
}
