package pki_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func etcdStorage(t *testing.T, cli *clientv3.Client, prefix string, key []byte) pki.Storage {
	t.Helper()
	st, err := pki.EtcdStorage(cli, prefix, key)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// secretsOf is everything that must be one across instances.
func secretsOf(t *testing.T, p *pki.PKI) string {
	t.Helper()
	pw, err := p.NodePassword("nuc1")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("ca=%x token=%s agent=%s report=%x admin=%s nuc1=%s",
		p.CACertPEM(), p.K3sToken(), p.K3sAgentToken(), p.ReportKey(), p.AdminToken(), pw)
}

// TestEtcdStorage runs the PKI on a real etcd: instances racing on an empty
// store end with one CA and one set of secrets, nothing is in clear in etcd,
// a wrong key or a moved value fails to open, and a read-only open mints
// nothing.
func TestEtcdStorage(t *testing.T) {
	c := etcdtest.Start(t, 1)
	key := newKey(t)

	t.Run("racing opens end with one CA and one set of secrets", func(t *testing.T) {
		for round := range 20 {
			prefix := fmt.Sprintf("/race%d/", round)
			var wg sync.WaitGroup
			got := make([]string, 3)
			errs := make([]error, 3)
			for i := range got {
				cli := c.Client() // one connection per instance, as separate processes have
				wg.Add(1)
				go func() {
					defer wg.Done()
					p, err := pki.OpenStorage(etcdStorage(t, cli, prefix, key), nil, nil)
					if err != nil {
						errs[i] = err
						return
					}
					got[i] = secretsOf(t, p)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d: instance %d: %v", round, i, err)
				}
			}
			if got[0] != got[1] || got[0] != got[2] {
				t.Fatalf("round %d: instances differ:\n%s\n%s\n%s", round, got[0], got[1], got[2])
			}
			// One of each in etcd: the create-if-absent transactions wrote
			// each once; the losers read the winner's.
			for _, k := range []string{"ca.crt", "ca.key", "k3s-token", "k3s-agent-token", "report-key", "admin-token", "node-passwords/nuc1"} {
				resp, err := c.Client().Get(context.Background(), prefix+"pki/"+k)
				if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 {
					t.Fatalf("round %d: %s in etcd: %v %+v (want one key written once)", round, k, err, resp)
				}
			}
		}
		t.Logf("20 rounds of 3 instances opening an empty store at once: each round one CA, token, report key, admin token, node password")
	})

	t.Run("nothing in clear in etcd", func(t *testing.T) {
		p, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/clear/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets := []string{p.K3sToken(), p.K3sAgentToken(), hex.EncodeToString(p.ReportKey()), p.AdminToken()}
		pw, err := p.NodePassword("nuc1")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := p.EtcdServer(pki.Node{Name: "nuc1", IP: netip.MustParseAddr("198.18.0.11")})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, pw, string(srv.KeyPEM))
		// etcdctl: an independent reader of what etcd holds.
		var dump struct {
			Kvs []struct{ Key, Value []byte }
		}
		if err := json.Unmarshal(c.Etcdctl(nil, "get", "--prefix", "/clear/pki/", "-w", "json"), &dump); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		var all []byte
		for _, kv := range dump.Kvs {
			have[string(kv.Key)] = true
			all = append(append(all, kv.Value...), 0)
			if !bytes.HasPrefix(kv.Value, []byte("flint-pki-aes256gcm-v1:")) {
				t.Errorf("%s: value does not start with the seal marker: %.40q", kv.Key, kv.Value)
			}
		}
		keys := len(dump.Kvs)
		for _, want := range []string{"/clear/pki/ca.crt", "/clear/pki/ca.key", "/clear/pki/k3s-token", "/clear/pki/k3s-agent-token",
			"/clear/pki/report-key", "/clear/pki/admin-token", "/clear/pki/node-passwords/nuc1", "/clear/pki/etcd/nuc1-server.key",
			"/clear/pki/clients/flint-admin.key"} {
			if !have[want] {
				t.Errorf("etcd lacks %s", want)
			}
		}
		if bytes.Contains(all, []byte("-----BEGIN")) || bytes.Contains(all, []byte("PRIVATE KEY")) {
			t.Errorf("etcd holds PEM in clear")
		}
		for _, s := range secrets {
			if bytes.Contains(all, []byte(strings.TrimSpace(s))) {
				t.Errorf("etcd holds a secret in clear (%.8s...)", s)
			}
		}
		t.Logf("etcdctl get --prefix /clear/pki/: %d keys, all sealed, no PEM header, no token, key or password in clear", keys)
	})

	t.Run("a wrong key fails and says what to check", func(t *testing.T) {
		_, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/clear/", newKey(t)), nil, nil)
		if !errors.Is(err, pki.ErrSealed) || !strings.Contains(err.Error(), "store.encryption_key_file") {
			t.Fatalf("open with another key: %v, want ErrSealed naming store.encryption_key_file", err)
		}
		_, err = pki.OpenExistingStorage(etcdStorage(t, c.Client(), "/clear/", newKey(t)), nil, nil)
		if !errors.Is(err, pki.ErrSealed) {
			t.Fatalf("read-only open with another key: %v, want ErrSealed", err)
		}
		t.Logf("wrong key: %v", err)
	})

	t.Run("a value moved to another key does not open", func(t *testing.T) {
		p, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/moved/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cli := c.Client()
		ctx := context.Background()
		tok, err := cli.Get(ctx, "/moved/pki/k3s-token")
		if err != nil || len(tok.Kvs) != 1 {
			t.Fatal(err)
		}
		// An attacker with write access to etcd swaps the agent token for
		// the server token, so agents would be handed the server token.
		if _, err := cli.Put(ctx, "/moved/pki/k3s-agent-token", string(tok.Kvs[0].Value)); err != nil {
			t.Fatal(err)
		}
		_, err = pki.OpenStorage(etcdStorage(t, cli, "/moved/", key), nil, nil)
		if !errors.Is(err, pki.ErrSealed) || !strings.Contains(err.Error(), "k3s-agent-token") {
			t.Fatalf("open after moving the token: %v, want ErrSealed naming k3s-agent-token", err)
		}
		_ = p
	})

	t.Run("read-only open on an empty store mints nothing", func(t *testing.T) {
		_, noPKI := pki.OpenExistingStorage(etcdStorage(t, c.Client(), "/empty/", key), nil, nil)
		if err := noPKI; !errors.Is(err, pki.ErrNoPKI) {
			t.Fatalf("read-only open of an empty store: %v, want ErrNoPKI", err)
		}
		if out := c.Etcdctl(nil, "get", "--prefix", "/empty/", "--keys-only"); len(bytes.TrimSpace(out)) != 0 {
			t.Fatalf("read-only open wrote to etcd:\n%s", out)
		}
		// A read-only open of an existing PKI makes a missing node password
		// in memory only.
		ro, err := pki.OpenExistingStorage(etcdStorage(t, c.Client(), "/clear/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ro.NodePassword("nuc9"); err != nil {
			t.Fatal(err)
		}
		if out := c.Etcdctl(nil, "get", "--prefix", "/clear/pki/node-passwords/nuc9", "--keys-only"); len(bytes.TrimSpace(out)) != 0 {
			t.Fatalf("read-only open stored a node password:\n%s", out)
		}
		t.Logf("read-only open of an empty store: %v; etcd under /empty/ stays empty", noPKI)
	})

	t.Run("a site moving from DATA/pki to etcd keeps its identity", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pki")
		files, err := pki.Open(dir, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := secretsOf(t, files) // also makes nuc1's node password
		other, err := pki.Open(filepath.Join(t.TempDir(), "pki"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := etcdStorage(t, c.Client(), "/import/", key)
		if ok, err := pki.ImportFiles(dir, st); !ok || err != nil {
			t.Fatalf("first import: %v %v", ok, err)
		}
		// A second instance with its own DATA/pki comes later: the store
		// keeps the first one's identity.
		if ok, err := pki.ImportFiles(other.Dir(), st); ok || err != nil {
			t.Fatalf("second import over an existing PKI: %v %v, want false, nil", ok, err)
		}
		p, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/import/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := secretsOf(t, p); got != want {
			t.Fatalf("after the import the etcd PKI differs from DATA/pki:\n%s\n%s", got, want)
		}
		if ok, err := pki.ImportFiles(filepath.Join(t.TempDir(), "none"), etcdStorage(t, c.Client(), "/import2/", key)); ok || err != nil {
			t.Fatalf("import of a directory without a PKI: %v %v", ok, err)
		}
		t.Logf("DATA/pki copied into etcd: same CA, tokens, report key, admin token and node password; a second DATA/pki did not replace it")
	})

	t.Run("a site with more node passwords than one etcd transaction holds, and an import that stopped half-way", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pki")
		files, err := pki.Open(dir, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		const nodes = 150 // etcd's default --max-txn-ops is 128
		want := map[string]string{}
		for i := range nodes {
			name := fmt.Sprintf("nuc%d", i)
			pw, err := files.NodePassword(name)
			if err != nil {
				t.Fatal(err)
			}
			want[name] = pw
		}
		check := func(t *testing.T, prefix string) {
			t.Helper()
			p, err := pki.OpenStorage(etcdStorage(t, c.Client(), prefix, key), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, pw := range want {
				if got, err := p.NodePassword(name); err != nil || got != pw {
					t.Fatalf("%s's node password in etcd: %q %v, want DATA/pki's", name, got, err)
				}
			}
		}
		if ok, err := pki.ImportFiles(dir, etcdStorage(t, c.Client(), "/many/", key)); !ok || err != nil {
			t.Fatalf("import of %d node passwords: %v %v", nodes, ok, err)
		}
		check(t, "/many/")
		// A start that stopped after the CA: some passwords missing. The
		// next start (the store's CA is the directory's) completes them.
		c.Etcdctl(nil, "del", "--prefix", "/many/pki/node-passwords/nuc1")
		if ok, err := pki.ImportFiles(dir, etcdStorage(t, c.Client(), "/many/", key)); !ok || err != nil {
			t.Fatalf("completing import: %v %v, want true, nil", ok, err)
		}
		check(t, "/many/")
		if ok, err := pki.ImportFiles(dir, etcdStorage(t, c.Client(), "/many/", key)); ok || err != nil {
			t.Fatalf("import of a complete copy: %v %v, want false, nil (nothing to do)", ok, err)
		}
		t.Logf("%d node passwords copied one by one; a half-done import completed on the next start", nodes)

		// And back out of etcd into a directory (flint store migrate --to bolt).
		back := filepath.Join(t.TempDir(), "pki")
		if ok, err := pki.ExportFiles(etcdStorage(t, c.Client(), "/many/", key), back); !ok || err != nil {
			t.Fatalf("export into an empty directory: %v %v", ok, err)
		}
		p, err := pki.OpenExisting(back, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, orig := secretsOf(t, p), secretsOf(t, files); got != orig {
			t.Fatalf("the exported PKI differs from the original:\n%s\n%s", got, orig)
		}
		for name, pw := range want {
			if got, err := p.NodePassword(name); err != nil || got != pw {
				t.Fatalf("%s's exported node password: %q %v", name, got, err)
			}
		}
		if ok, err := pki.ExportFiles(etcdStorage(t, c.Client(), "/many/", key), back); ok || err != nil {
			t.Fatalf("export into a complete copy: %v %v, want false, nil", ok, err)
		}
		// A directory with another identity is never overwritten.
		otherDir := filepath.Join(t.TempDir(), "pki")
		if _, err := pki.Open(otherDir, nil, nil); err != nil {
			t.Fatal(err)
		}
		if ok, err := pki.ExportFiles(etcdStorage(t, c.Client(), "/many/", key), otherDir); ok || err == nil || !strings.Contains(err.Error(), "holds another CA") {
			t.Fatalf("export into a directory with another CA: %v %v, want a refusal", ok, err)
		}
		t.Logf("exported again: the same identity and %d node passwords; a directory with another CA refused", nodes)
	})

	t.Run("a re-seal moves the PKI to a new key", func(t *testing.T) {
		p, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/reseal/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := secretsOf(t, p) // makes nuc1's node password too
		newK := newKey(t)
		n, already, err := pki.Reseal(context.Background(), c.Client(), "/reseal/", key, newK)
		if err != nil || n == 0 || already != 0 {
			t.Fatalf("re-seal: %d re-sealed, %d already, %v", n, already, err)
		}
		q, err := pki.OpenExistingStorage(etcdStorage(t, c.Client(), "/reseal/", newK), nil, nil)
		if err != nil {
			t.Fatalf("open with the new key: %v", err)
		}
		if got := secretsOf(t, q); got != want {
			t.Fatalf("after the re-seal the PKI differs:\n%s\n%s", got, want)
		}
		if _, err := pki.OpenExistingStorage(etcdStorage(t, c.Client(), "/reseal/", key), nil, nil); !errors.Is(err, pki.ErrSealed) {
			t.Fatalf("open with the old key after the re-seal: %v, want ErrSealed", err)
		}
		// Run again (as after one that stopped half-way): nothing to do.
		if again, done, err := pki.Reseal(context.Background(), c.Client(), "/reseal/", key, newK); err != nil || again != 0 || done != n {
			t.Fatalf("second re-seal: %d re-sealed, %d already, %v; want 0, %d", again, done, err, n)
		}
		// Keys that open nothing there stop it, naming the etcd key.
		if _, _, err := pki.Reseal(context.Background(), c.Client(), "/reseal/", newKey(t), newKey(t)); err == nil || !strings.Contains(err.Error(), "opens neither") {
			t.Fatalf("re-seal with two foreign keys: %v", err)
		}
		t.Logf("%d values re-sealed with the new key: same CA, tokens and node password; the old key no longer opens them", n)
	})

	t.Run("each instance keeps its own serving certificate, listed with the rest", func(t *testing.T) {
		st := etcdStorage(t, c.Client(), "/serving/", key)
		a, err := pki.OpenStorage(st, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pki.OpenStorage(etcdStorage(t, c.Client(), "/serving/", key), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ipA, ipB := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
		sa, err := a.Serving([]string{"localhost"}, []netip.Addr{ipA})
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.Serving([]string{"localhost"}, []netip.Addr{ipB})
		if err != nil {
			t.Fatal(err)
		}
		sa2, err := a.Serving([]string{"localhost"}, []netip.Addr{ipA})
		if err != nil {
			t.Fatal(err)
		}
		if sa.Cert.SerialNumber.Cmp(sa2.Cert.SerialNumber) != 0 || sa.Cert.SerialNumber.Cmp(sb.Cert.SerialNumber) == 0 {
			t.Fatalf("serving certificates: A %s then %s, B %s: want A's kept while B has its own", sa.Cert.SerialNumber, sa2.Cert.SerialNumber, sb.Cert.SerialNumber)
		}
		list, err := b.List()
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, ci := range list {
			files = append(files, ci.File)
		}
		if n := len(files); n != 4 || files[0] != "ca.crt" || !strings.HasPrefix(files[2], "serving/flint-") {
			t.Fatalf("List on etcd: %v, want ca.crt, clients/flint-admin.crt and two serving certificates", files)
		}
		t.Logf("List on etcd: %v", files)
	})
}
