package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOpenExistingWritesNothing(t *testing.T) {
	c := newClock()
	t.Run("no directory: ErrNoPKI, and the directory is not created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pki")
		_, err := OpenExisting(dir, c.Now, nil)
		if !errors.Is(err, ErrNoPKI) {
			t.Fatalf("want ErrNoPKI, got %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s exists after OpenExisting: %v", dir, err)
		}
	})
	t.Run("empty directory: ErrNoPKI, and it stays empty", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenExisting(dir, c.Now, nil)
		if !errors.Is(err, ErrNoPKI) {
			t.Fatalf("want ErrNoPKI, got %v", err)
		}
		if got := snapshot(t, dir); len(got) != 0 {
			t.Fatalf("OpenExisting wrote %v", changedFiles(nil, got))
		}
	})

	dir := t.TempDir()
	full := openPKI(t, dir, c)
	if _, err := full.EtcdServer(nuc1); err != nil {
		t.Fatal(err)
	}
	stored := must(full.NodePassword(nuc1.Name))

	t.Run("a missing token is an error, not made up", func(t *testing.T) {
		d := t.TempDir()
		openPKI(t, d, c)
		remove(t, d, adminTokenFile)
		before := snapshot(t, d)
		_, err := OpenExisting(d, c.Now, nil)
		if !errors.Is(err, ErrNoPKI) {
			t.Fatalf("want ErrNoPKI, got %v", err)
		}
		if ch := changedFiles(before, snapshot(t, d)); len(ch) > 0 {
			t.Fatalf("changed %v", ch)
		}
	})

	t.Run("existing PKI: same CA and secrets, new things only in memory", func(t *testing.T) {
		before := snapshot(t, dir)
		p, err := OpenExisting(dir, c.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(p.CACertPEM()) != string(full.CACertPEM()) || p.K3sToken() != full.K3sToken() || p.AdminToken() != full.AdminToken() {
			t.Fatal("OpenExisting does not return the stored CA and tokens")
		}
		if got := must(p.NodePassword(nuc1.Name)); got != stored {
			t.Fatal("stored node password not returned")
		}
		kp := must(p.EtcdServer(nuc1))
		if len(p.Unsaved()) != 0 {
			t.Fatalf("stored items listed as unsaved: %v", p.Unsaved())
		}
		// A node that never fetched its config: made in memory, signed by the real CA.
		kp = must(p.EtcdPeer(nuc2))
		if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: caPool(t, full), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: c.Now()}); err != nil {
			t.Fatalf("in-memory certificate is not signed by the stored CA: %v", err)
		}
		if _, err := p.NodePassword(nuc2.Name); err != nil {
			t.Fatal(err)
		}
		want := []string{"etcd/" + nuc2.Name + "-peer.crt", "node-passwords/" + nuc2.Name}
		if got := p.Unsaved(); !slices.Equal(got, want) {
			t.Fatalf("Unsaved = %v, want %v", got, want)
		}
		if ch := changedFiles(before, snapshot(t, dir)); len(ch) > 0 {
			t.Fatalf("OpenExisting changed %v", ch)
		}
	})
}

func TestEphemeralTouchesNoDisk(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	p, err := Ephemeral(newClock().Now)
	if err != nil {
		t.Fatal(err)
	}
	kp := must(p.EtcdServer(nuc1))
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: caPool(t, p), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: t0}); err != nil {
		t.Fatal(err)
	}
	if p.K3sToken() == "" || p.K3sToken() == p.K3sAgentToken() || must(p.NodePassword(nuc1.Name)) == "" {
		t.Fatal("ephemeral PKI lacks distinct secrets")
	}
	if got := snapshot(t, cwd); len(got) != 0 {
		t.Fatalf("Ephemeral wrote %v", changedFiles(nil, got))
	}
}
