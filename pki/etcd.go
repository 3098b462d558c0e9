package pki

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrSealed is matched by the error for a value in etcd that does not open:
// another encryption key, a value moved from another key, or damage.
var ErrSealed = errors.New("sealed PKI value does not open")

// sealMagic starts every value flint seals, so an operator looking at etcd
// sees what it is (and that it is not for reading).
var sealMagic = []byte("flint-pki-aes256gcm-v1:")

// etcdTimeout bounds one PKI operation on etcd.
const etcdTimeout = 5 * time.Second

// EtcdStorage keeps the PKI in etcd under prefix + "pki/" (prefix is the
// store's, e.g. /flint/), one key per item with the same names as the files
// of FileStorage (e.g. /flint/pki/ca.key). Every value, certificates
// included, is sealed with AES-256-GCM under key (32 bytes, the store's
// encryption key): a random 96-bit nonce per value and the full etcd key as
// additional data, so a value copied to another key does not open. Creating
// the CA, a token or a node password is a create-if-absent transaction: of
// several instances starting at once the first writer wins and the others
// read its value.
func EtcdStorage(cli *clientv3.Client, prefix string, key []byte) (Storage, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("pki: the encryption key has %d bytes, want 32 (AES-256)", len(key))
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("pki: etcd prefix %q must start and end with '/'", prefix)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &etcdStorage{cli: cli, prefix: prefix + "pki/", aead: aead}, nil
}

type etcdStorage struct {
	cli    *clientv3.Client
	prefix string // ends in "pki/"
	aead   cipher.AEAD
}

func (e *etcdStorage) start(bool, *slog.Logger) error { return nil }
func (e *etcdStorage) where(name string) string       { return "etcd key " + e.prefix + name }
func (e *etcdStorage) Origin() string                 { return "etcd " + e.prefix }
func (e *etcdStorage) shared() bool                   { return true }

func (e *etcdStorage) read(name string, _ bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix+name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w (is the etcd store reachable? check store.endpoints)", e.where(name), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", e.where(name), fs.ErrNotExist)
	}
	return e.open(e.prefix+name, resp.Kvs[0].Value)
}

func (e *etcdStorage) readPair(a, b item) ([]byte, error, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).Then(clientv3.OpGet(e.prefix+a.name), clientv3.OpGet(e.prefix+b.name)).Commit()
	if err != nil {
		err = fmt.Errorf("read %s: %w (is the etcd store reachable? check store.endpoints)", e.where(a.name), err)
		return nil, err, nil, err
	}
	out := make([][]byte, 2)
	errs := make([]error, 2)
	for i, name := range []string{a.name, b.name} {
		kvs := resp.Responses[i].GetResponseRange().Kvs
		if len(kvs) == 0 {
			errs[i] = fmt.Errorf("%s: %w", e.where(name), fs.ErrNotExist)
			continue
		}
		out[i], errs[i] = e.open(e.prefix+name, kvs[0].Value)
	}
	return out[0], errs[0], out[1], errs[1]
}

func (e *etcdStorage) create(items ...item) error {
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for _, it := range items {
		k := e.prefix + it.name
		sealed, err := e.seal(k, it.data)
		if err != nil {
			return err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		puts = append(puts, clientv3.OpPut(k, string(sealed)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return fmt.Errorf("write %s: %w (is the etcd store reachable? check store.endpoints)", e.where(items[0].name), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w (another flint instance created it first)", e.where(items[0].name), fs.ErrExist)
	}
	return nil
}

func (e *etcdStorage) put(items ...item) error {
	var puts []clientv3.Op
	for _, it := range items {
		k := e.prefix + it.name
		sealed, err := e.seal(k, it.data)
		if err != nil {
			return err
		}
		puts = append(puts, clientv3.OpPut(k, string(sealed)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	if _, err := e.cli.Txn(ctx).Then(puts...).Commit(); err != nil {
		return fmt.Errorf("write %s: %w (is the etcd store reachable? check store.endpoints)", e.where(items[0].name), err)
	}
	return nil
}

func (e *etcdStorage) names(dir string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdTimeout)
	defer cancel()
	from := e.prefix + dir + "/"
	resp, err := e.cli.Get(ctx, from, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("pki: list %s: %w", from, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		if name := strings.TrimPrefix(string(kv.Key), from); !strings.Contains(name, "/") {
			out = append(out, name)
		}
	}
	return out, nil
}

// seal encrypts data for etcd key k.
func (e *etcdStorage) seal(k string, data []byte) ([]byte, error) {
	nonce := make([]byte, e.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pki: random: %w", err)
	}
	out := append(append(bytes.Clone(sealMagic), nonce...), e.aead.Seal(nil, nonce, data, []byte(k))...)
	return out, nil
}

// open decrypts the value of etcd key k.
func (e *etcdStorage) open(k string, v []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(v, sealMagic)
	if !ok || len(rest) < e.aead.NonceSize()+e.aead.Overhead() {
		return nil, fmt.Errorf("%w: etcd key %s does not hold a value flint sealed (written by something else, or damaged): "+
			"restore it from a backup of the etcd store", ErrSealed, k)
	}
	nonce, ct := rest[:e.aead.NonceSize()], rest[e.aead.NonceSize():]
	data, err := e.aead.Open(nil, nonce, ct, []byte(k))
	if err != nil {
		return nil, fmt.Errorf("%w: etcd key %s does not open with this encryption key: check that store.encryption_key_file "+
			"holds the same key as on the flint instances that share this store (copy the file from one of them); "+
			"a value copied from another key or another prefix does not open either", ErrSealed, k)
	}
	return data, nil
}
