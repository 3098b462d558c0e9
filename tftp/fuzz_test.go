package tftp

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCleanName: every name cleanName accepts is local to the root, has
// no "..", backslash, NUL or control character, joins to a path under the
// root and is already clean; and whatever open makes of any name, it only
// ever opens files under the root, and its errors (sent to the client)
// never show the host path of the root.
//
// The seeds in testdata/fuzz/FuzzCleanName run with every `go test`; run
// `go test -run '^$' -fuzz FuzzCleanName ./tftp/` to search for more.
func FuzzCleanName(f *testing.F) {
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	for path, content := range map[string]string{
		"root/ipxe.efi":          "ipxe",
		"root/efi/snponly.efi":   "snponly",
		"root/a/b/undionly.kpxe": "undionly",
		"secret":                 "SECRET",
		"root.secret":            "SECRET", // a sibling that shares root's prefix
	} {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "link-out")); err != nil {
		f.Fatal(err)
	}
	s := New(root, Options{}, nil)

	f.Fuzz(func(t *testing.T, name string) {
		rel, err := cleanName(name)
		if err == nil {
			switch {
			case rel == "" || !filepath.IsLocal(rel):
				t.Fatalf("cleanName(%q) = %q: not a local name", name, rel)
			case strings.Contains(rel, "..") || strings.Contains(name, ".."):
				t.Fatalf("cleanName(%q) = %q: accepted a name with \"..\"", name, rel)
			case strings.ContainsAny(rel, "\\\x00") || !utf8.ValidString(rel) || strings.IndexFunc(rel, unicode.IsControl) >= 0:
				t.Fatalf("cleanName(%q) = %q: backslash, NUL, control character or bad UTF-8", name, rel)
			case strings.HasPrefix(rel, "/") || filepath.ToSlash(filepath.Clean(rel)) != rel:
				t.Fatalf("cleanName(%q) = %q: not clean", name, rel)
			}
			if again, err := cleanName(rel); err != nil || again != rel {
				t.Fatalf("cleanName(%q) = %q, but cleanName(%q) = %q, %v", name, rel, rel, again, err)
			}
			if joined := filepath.Join(root, rel); !strings.HasPrefix(joined, root+string(filepath.Separator)) {
				t.Fatalf("cleanName(%q) = %q joins to %s, outside %s", name, rel, joined, root)
			}
		}

		file, _, err := s.open(netip.Addr{}, name)
		if err != nil {
			if strings.Contains(err.Error(), dir) && !strings.Contains(name, dir) {
				t.Fatalf("open(%q) error shows a host path: %v", name, err)
			}
			return
		}
		defer file.Close()
		if cleanErr := func() error { _, err := cleanName(name); return err }(); cleanErr != nil {
			t.Fatalf("open(%q) succeeded although cleanName refuses it: %v", name, cleanErr)
		}
		if !strings.HasPrefix(file.Name(), root+string(filepath.Separator)) {
			t.Fatalf("open(%q) opened %s, outside the root", name, file.Name())
		}
		// The operator's symlinks are followed on purpose (Debian's
		// ipxe.efi is one); only link-out, planted here, leads out.
		if b, _ := io.ReadAll(file); string(b) == "SECRET" && rel != "link-out" {
			t.Fatalf("open(%q) read the secret outside the root", name)
		}
	})
}
