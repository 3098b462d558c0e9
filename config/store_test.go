package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreSection: the default is bolt; an etcd store needs https
// endpoints, certificate files that exist (the key 0600) and a prefix
// between slashes; every problem names file:line: key.
func TestStoreSection(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key, loose := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key"), filepath.Join(dir, "loose.key")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{ca, 0o644}, {cert, 0o644}, {key, 0o600}, {loose, 0o644}} {
		if err := os.WriteFile(f.path, []byte("-----BEGIN X-----\n"), f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f.path, f.mode) // past the umask
	}
	// Encryption keys: raw, hex and base64 are accepted; a short one and one
	// readable by others are not.
	rawKey, hexKey, b64Key, shortKey, looseKey := filepath.Join(dir, "raw.key"), filepath.Join(dir, "hex.key"), filepath.Join(dir, "b64.key"), filepath.Join(dir, "short.key"), filepath.Join(dir, "loose-enc.key")
	key32 := []byte("0123456789abcdef0123456789abcdef")
	for _, f := range []struct {
		path string
		data string
		mode os.FileMode
	}{
		{rawKey, string(key32), 0o600}, {hexKey, hex.EncodeToString(key32) + "\n", 0o600}, {b64Key, base64.StdEncoding.EncodeToString(key32) + "\n", 0o600},
		{shortKey, "0123456789abcdef\n", 0o600}, {looseKey, string(key32), 0o644},
	} {
		if err := os.WriteFile(f.path, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f.path, f.mode)
	}
	// The store section is appended at line 22 of goodConfig.
	etcd := func(lines ...string) string {
		return goodConfig + "store:\n  backend: etcd\n" + strings.Join(lines, "\n") + "\n"
	}
	good := []string{"  endpoints: [https://198.18.0.10:2379, https://198.18.0.11:2379]", "  ca_file: " + ca, "  cert_file: " + cert, "  key_file: " + key, "  encryption_key_file: " + rawKey}
	with := func(i int, line string) []string {
		out := append([]string(nil), good...)
		out[i] = line
		return out
	}

	t.Run("default bolt", func(t *testing.T) {
		cfg, err := Parse("site.yaml", []byte(goodConfig))
		if err != nil || cfg.Store.Backend != StoreBolt {
			t.Fatalf("backend %q, %v", cfg.Store.Backend, err)
		}
	})
	t.Run("etcd", func(t *testing.T) {
		cfg, err := Parse("site.yaml", []byte(etcd(append(good, "  prefix: /flint/site-a/")...)))
		if err != nil {
			t.Fatal(err)
		}
		if s := cfg.Store; s.Backend != StoreEtcd || len(s.Endpoints) != 2 || s.KeyFile != key || s.Prefix != "/flint/site-a/" {
			t.Fatalf("store = %+v", s)
		}
		cfg, err = Parse("site.yaml", []byte(etcd(good...)))
		if err != nil || cfg.Store.Prefix != DefaultStorePrefix {
			t.Fatalf("default prefix %q, %v", cfg.Store.Prefix, err)
		}
		for _, f := range []string{rawKey, hexKey, b64Key} {
			cfg, err := Parse("site.yaml", []byte(etcd(with(4, "  encryption_key_file: "+f)...)))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			k, err := ReadEncryptionKey(cfg.Store.EncryptionKeyFile)
			if err != nil || !bytes.Equal(k, key32) {
				t.Fatalf("%s: key %x, %v", f, k, err)
			}
		}
	})
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown backend", goodConfig + "store:\n  backend: postgres\n", `site.yaml:23: store.backend: unknown backend "postgres": use bolt`},
		{"etcd keys with bolt", goodConfig + "store:\n  backend: bolt\n  prefix: /flint/\n", `site.yaml:24: store.prefix: is an etcd setting, but store.backend is bolt`},
		{"etcd keys without backend", goodConfig + "store:\n  endpoints: [https://198.18.0.10:2379]\n", `site.yaml:22: store.ca_file: missing: the etcd backend needs`}, // prepared for flint store migrate --to etcd: checked in full
		{"unknown key", goodConfig + "store:\n  backend: etcd\n  endpoint: x\n", `site.yaml:24: store.endpoint: unknown key (did you mean endpoints?)`},
		{"no endpoints", etcd(good[1:]...), `site.yaml:22: store.endpoints: missing: the etcd backend needs the client URLs`}, // at the section's line
		{"http endpoint", etcd(with(0, "  endpoints: [http://198.18.0.10:2379]")...), `site.yaml:24: store.endpoints[0]: "http://198.18.0.10:2379" is not an https URL`},
		{"endpoint without port", etcd(with(0, "  endpoints: [https://198.18.0.10]")...), `store.endpoints[0]: "https://198.18.0.10" is not an https URL`},
		{"endpoint twice", etcd(with(0, "  endpoints: [https://a:2379, https://a:2379]")...), `store.endpoints[1]: a:2379 is listed twice (also store.endpoints[0])`},
		{"missing CA", etcd(with(1, "  ca_file: "+dir+"/nope.crt")...), `site.yaml:25: store.ca_file: ` + dir + `/nope.crt does not exist`},
		{"CA a directory", etcd(with(1, "  ca_file: "+dir)...), `site.yaml:25: store.ca_file: ` + dir + ` is not a regular file`},
		{"no cert", etcd(good[0], good[1], good[3]), `store.cert_file: missing: the etcd backend needs flint's client certificate`},
		{"key readable by others", etcd(with(3, "  key_file: "+loose)...), `site.yaml:27: store.key_file: ` + loose + ` has mode 0644: a private key must be readable by its owner only (chmod 600 `},
		{"prefix without slashes", etcd(append(good, "  prefix: flint")...), `site.yaml:29: store.prefix: "flint" must start and end with '/'`},
		{"no encryption key", etcd(good[:4]...), "site.yaml:22: store.encryption_key_file: missing: with the etcd backend flint keeps its CA, keys and tokens in etcd, sealed with this key; make one with `head -c 32 /dev/urandom"},
		{"encryption key readable by others", etcd(with(4, "  encryption_key_file: "+looseKey)...), `site.yaml:28: store.encryption_key_file: ` + looseKey + ` has mode 0644: a private key must be readable by its owner only`},
		{"encryption key too short", etcd(with(4, "  encryption_key_file: "+shortKey)...), `site.yaml:28: store.encryption_key_file: ` + shortKey + ` holds 17 bytes that are no 32-byte key (want exactly 32 raw bytes, 64 hex digits or 44 characters of base64)`},
		{"encryption key missing file", etcd(with(4, "  encryption_key_file: "+dir+"/nope.key")...), `site.yaml:28: store.encryption_key_file: ` + dir + `/nope.key does not exist`},
		{"encryption key with bolt", goodConfig + "store:\n  encryption_key_file: /etc/flint/store.key\n", `site.yaml:23: store.encryption_key_file: is an etcd setting, but store.backend is bolt`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("site.yaml", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}
