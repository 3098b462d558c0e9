package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

// EncryptionKeyHowTo says how to make a store.encryption_key_file.
const EncryptionKeyHowTo = "make one with `head -c 32 /dev/urandom > /etc/flint/store.key && chmod 600 /etc/flint/store.key` " +
	"and copy the same file to every flint instance that shares the store"

// ReadEncryptionKey reads store.encryption_key_file: 32 bytes that seal
// flint's PKI in the etcd store. The file holds them raw (exactly 32 bytes,
// e.g. from /dev/urandom), as 64 hex digits or as standard base64 (44
// characters); white space around the text forms is ignored. The error never
// quotes the file's content.
func ReadEncryptionKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseEncryptionKey(data)
}

func parseEncryptionKey(data []byte) ([]byte, error) {
	if len(data) == 32 {
		return bytes.Clone(data), nil
	}
	text := bytes.TrimSpace(data)
	if len(text) == 64 {
		if k, err := hex.DecodeString(string(text)); err == nil {
			return k, nil
		}
	}
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, fmt.Errorf("holds %d bytes that are no 32-byte key (want exactly 32 raw bytes, 64 hex digits or 44 characters of base64)", len(data))
}

// encryptionKeyFile checks store.encryption_key_file: present, a private
// regular file, holding a key ReadEncryptionKey accepts.
func (c *checker) encryptionKeyFile(field, path string) {
	if path == "" {
		c.fail(field, "missing: with the etcd backend flint keeps its CA, keys and tokens in etcd, sealed with this key; %s", EncryptionKeyHowTo)
		return
	}
	before := len(c.problems)
	c.pemFile(field, path, "the 32-byte key that seals flint's PKI in etcd", true)
	if len(c.problems) > before {
		return
	}
	if _, err := ReadEncryptionKey(path); err != nil {
		c.fail(field, "%s %v: %s (use the same key on every instance; a new key cannot open a PKI sealed with the old one)", path, err, EncryptionKeyHowTo)
	}
}
