package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// TestReseal: flint store reseal is refused while a flint serve runs on the
// store; with every instance stopped it seals the PKI with the new key: the
// same CA and admin token open with a config naming the new key, and the
// old key opens nothing any more.
func TestReseal(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	oldKey := cl.EncryptionKeyFile()
	newKey := filepath.Join(t.TempDir(), "new.key")
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newKey, k, 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := func(key string) string {
		cfg := loopbackConfig(t, freePort(t), freePort(t), "")
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(cl.StoreSection("etcd", "/flint/reseal/", key))
		f.Close()
		return cfg
	}
	cfgOld, cfgNew := withKey(oldKey), withKey(newKey)
	print := func(cfg, what string) (string, error) {
		out, err := cliProcess("pki", "--config", cfg, "--print", what).CombinedOutput()
		return string(out), err
	}
	reseal := func() (string, error) {
		out, err := cliProcess("store", "reseal", "--config", cfgOld, "--new-key", newKey).CombinedOutput()
		return string(out), err
	}

	srv := startServe(t, cfgOld, t.TempDir()) // creates the PKI
	ca, err := print(cfgOld, "ca.crt")
	if err != nil {
		t.Fatalf("flint pki --print ca.crt: %v\n%s", err, ca)
	}
	token, err := print(cfgOld, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := reseal(); err == nil || !strings.Contains(out, "flint instances are running on this store") || !strings.Contains(out, "Nothing was changed") {
		t.Fatalf("reseal with flint serve running: %v\n%s", err, out)
	} else {
		t.Logf("reseal while an instance runs: %s", strings.TrimSpace(out))
	}
	srv.stop() // withdraws its announcement
	out, err := reseal()
	if err != nil || !strings.Contains(out, "re-sealed") || !strings.Contains(out, "next step: put that key in store.encryption_key_file") {
		t.Fatalf("reseal with every instance stopped: %v\n%s", err, out)
	}
	t.Logf("flint store reseal:\n%s", strings.TrimSpace(out))
	if got, err := print(cfgNew, "ca.crt"); err != nil || got != ca {
		t.Fatalf("the CA with the new key: %v\n%s", err, got)
	}
	if got, err := print(cfgNew, "admin-token"); err != nil || got != token {
		t.Fatalf("the admin token with the new key: %v", err)
	}
	if got, err := print(cfgOld, "ca.crt"); err == nil || !strings.Contains(got, "does not open with this encryption key") || bytes.Contains([]byte(got), []byte("BEGIN")) {
		t.Fatalf("the old key after the re-seal: %v\n%s", err, got)
	}
	// The instances start again with the new key.
	startServe(t, cfgNew, t.TempDir())
	t.Logf("the same CA and admin token open with the new key, the old one opens nothing, flint serve starts with the new key")
}
