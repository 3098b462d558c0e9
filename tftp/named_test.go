package tftp

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Named files (the Secure Boot chain) are served by their own names: a file
// outside root by path, bytes flint made by name, with or without a leading
// slash, and nothing else of the directory a named file lives in.
func TestNamedFiles(t *testing.T) {
	outside := t.TempDir()
	shim := randomBytes(t, 3000)
	writeFile(t, filepath.Join(outside, "shimx64.efi.signed"), shim)
	writeFile(t, filepath.Join(outside, "secret"), []byte("not served"))
	cfg := []byte("source (http,198.18.0.1:8080)/machines/${net_default_mac}/grub.cfg\n")
	f := startWith(t, "127.0.0.1", Options{Named: map[string]Named{
		"shimx64.efi":   {Path: filepath.Join(outside, "shimx64.efi.signed")},
		"grub/grub.cfg": {Data: cfg},
	}}, nil, nil)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), []byte("ipxe"))

	for _, tc := range []struct {
		name string
		want []byte
	}{
		{"shimx64.efi", shim},
		{"/shimx64.efi", shim},
		{"grub/grub.cfg", cfg},
		{"/grub/grub.cfg", cfg},
		{"ipxe.efi", []byte("ipxe")}, // root still served
	} {
		got, size, err := f.fetch(t, tc.name, 1468, true)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(got, tc.want) || size != int64(len(tc.want)) {
			t.Errorf("%s: %d bytes (tsize %d), want %d", tc.name, len(got), size, len(tc.want))
		}
		if tr := f.lastTransfer(t); tr.err != nil || tr.bytes != int64(len(tc.want)) {
			t.Errorf("%s: reported %+v", tc.name, tr)
		}
	}
	for _, name := range []string{"secret", "shimx64.efi.signed", "grub/x86_64-efi/grub.cfg", "grub"} {
		if _, _, err := f.fetch(t, name, 0, false); err == nil {
			t.Errorf("%s: served, want file not found", name)
		}
	}
}

// Dirs serve a prefix from a directory of its own; Generate answers its
// prefix per request and client, and its error reaches the client.
func TestDirsAndGenerated(t *testing.T) {
	assets := t.TempDir()
	kernel := randomBytes(t, 70000)
	writeFile(t, filepath.Join(assets, "e2e", "vmlinuz"), kernel)
	var mu sync.Mutex
	var asked []string
	f := startWith(t, "127.0.0.1", Options{
		Dirs:           map[string]string{"assets/": assets},
		GeneratePrefix: "grub/machines/",
		Generate: func(client netip.Addr, name string) ([]byte, error) {
			mu.Lock()
			asked = append(asked, client.String()+" "+name)
			mu.Unlock()
			if strings.Contains(name, "99") {
				return nil, errors.New("MAC 99 is not in flint's config")
			}
			return []byte("config for " + name), nil
		},
	}, nil, nil)
	got, _, err := f.fetch(t, "/assets/e2e/vmlinuz", 1024, true)
	if err != nil || !bytes.Equal(got, kernel) {
		t.Errorf("asset over TFTP: %d bytes, %v", len(got), err)
	}
	for _, name := range []string{"assets/", "assets/../secret", "assets/e2e/missing"} {
		if _, _, err := f.fetch(t, name, 0, false); err == nil {
			t.Errorf("%s: served", name)
		}
	}
	got, _, err = f.fetch(t, "/grub/machines/52:54:00:00:00:01/grub.cfg", 0, false)
	if err != nil || string(got) != "config for grub/machines/52:54:00:00:00:01/grub.cfg" {
		t.Errorf("generated: %q, %v", got, err)
	}
	if _, _, err := f.fetch(t, "grub/machines/52:54:00:00:00:99/grub.cfg", 0, false); err == nil || !strings.Contains(err.Error(), "not in flint's config") {
		t.Errorf("generator's refusal: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || !strings.HasPrefix(asked[0], "127.0.0.1 ") {
		t.Errorf("generator called %q", asked)
	}
}
