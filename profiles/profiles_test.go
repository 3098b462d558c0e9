package profiles

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flint-boot/flint/config"
)

func TestEmbedded(t *testing.T) {
	var names []string
	fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if want := []string{"_common.yaml", "agent.yaml", "installer.yaml", "server.yaml"}; !reflect.DeepEqual(names, want) {
		t.Errorf("embedded files %v, want %v", names, want)
	}
	s, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Profiles(); !reflect.DeepEqual(got, []string{"agent", "installer", "server"}) {
		t.Errorf("Profiles() = %v", got)
	}
	for _, p := range s.Profiles() {
		if _, err := s.Parse(p); err != nil {
			t.Errorf("embedded %s does not parse: %v", p, err)
		}
	}
	if f, _ := s.Lookup("server.yaml"); f.Origin != "embedded:server.yaml" {
		t.Errorf("origin %q", f.Origin)
	}
}

func TestOverlay(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("server.yaml", "variant: flatcar\n# site server\n")
	write("gpu.yaml", "variant: flatcar\n")
	write("notes.txt", "ignored: not a template\n")
	write(".hidden.yaml", "ignored\n")
	os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755)

	embeddedOnly, _ := Load("")
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Profiles(); !reflect.DeepEqual(got, []string{"agent", "gpu", "installer", "server"}) {
		t.Errorf("Profiles() = %v", got)
	}
	f, _ := s.Lookup("server.yaml")
	if f.Origin != filepath.Join(dir, "server.yaml") || !bytes.Contains(f.Data, []byte("site server")) {
		t.Errorf("server.yaml not overridden: %+v", f)
	}
	if a, _ := s.Lookup("agent.yaml"); a.Origin != "embedded:agent.yaml" {
		t.Errorf("agent.yaml should stay embedded: %s", a.Origin)
	}
	if s.Digest() == embeddedOnly.Digest() {
		t.Error("digest ignores the overlay")
	}
	again, _ := Load(dir)
	if again.Digest() != s.Digest() {
		t.Error("digest is not stable")
	}
	write("gpu.yaml", "variant: flatcar\n# changed\n")
	if changed, _ := Load(dir); changed.Digest() == s.Digest() {
		t.Error("digest did not change with a file")
	}

	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "cluster.profiles_dir") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestProfileOf(t *testing.T) {
	for _, c := range []struct {
		m    config.Machine
		want string
	}{
		{config.Machine{Role: "server"}, "server"},
		{config.Machine{Role: "agent", Profile: "gpu"}, "gpu"},
		{config.Machine{Role: "agent", Profile: "gpu.yaml"}, "gpu"},
	} {
		if got := ProfileOf(&c.m); got != c.want {
			t.Errorf("ProfileOf(%+v) = %q, want %q", c.m, got, c.want)
		}
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	s := NewSet(map[string]string{
		"_parts.yaml":  "{{define \"x\"}}\nok\n{{end}}\n",
		"bad.yaml":     "line one\nline two {{if}}\n",
		"_broken.yaml": "\n\n{{define \"y\"}}{{.Foo | nosuchfunc}}{{end}}\n",
	})
	_, err := s.Parse("bad")
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	// The broken part is parsed first and fails the whole set.
	if pe.File != "_broken.yaml" || pe.Line != 3 || !strings.Contains(pe.Message, "nosuchfunc") {
		t.Errorf("got %+v", pe)
	}

	s = NewSet(map[string]string{"bad.yaml": "line one\nline two {{if}}\n"})
	_, err = s.Parse("bad")
	if !errors.As(err, &pe) || pe.File != "bad.yaml" || pe.Line != 2 || pe.Error() != "bad.yaml:2: missing value for if" {
		t.Errorf("got %v", err)
	}
	if _, err := s.Parse("nope"); err == nil || !strings.Contains(err.Error(), `profile "nope" not found: known profiles: bad`) {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestFuncs(t *testing.T) {
	s := NewSet(map[string]string{"t.yaml": `a: {{quote .Q}}
b: "{{dataurl .S}}"
{{env "A" "1" "B" .S}}{{join "," .L}}`})
	tmpl, err := s.Parse("t")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err = tmpl.ExecuteTemplate(&b, "t.yaml", map[string]any{"Q": `say "hi" <&>`, "S": "x y", "L": []string{"p", "q"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "a: \"say \\\"hi\\\" <&>\"\nb: \"data:;base64,eCB5\"\nA=1\nB=x y\np,q"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	for _, bad := range []map[string]any{{"V": "two\nlines"}, {"V": ""}} {
		tmpl, _ := NewSet(map[string]string{"e.yaml": "x\n{{env \"K\" .V}}"}).Parse("e")
		err := tmpl.ExecuteTemplate(&b, "e.yaml", bad)
		var pe *Error
		if !errors.As(NewSet(nil).ExecError(err), &pe) || pe.Line != 2 || !strings.Contains(pe.Message, "env: value of K") {
			t.Errorf("env %q: %v", bad["V"], err)
		}
	}
}

// TestLoaderReloadsOnlyOnChange: the set is kept while the overlay's files
// are the same, and reloaded when one is added, edited or removed.
func TestLoaderReloadsOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	l := NewLoader(dir)
	a, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := l.Load(); b != a {
		t.Fatal("an unchanged overlay was loaded again")
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "gpu.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("variant: flatcar\n")
	b, _ := l.Load()
	if b == a || b.Digest() == a.Digest() {
		t.Fatal("an added profile was not loaded")
	}
	time.Sleep(10 * time.Millisecond) // another modification time
	write("variant: flatcaR\n")       // same size
	c, _ := l.Load()
	if c.Digest() == b.Digest() {
		t.Fatal("an edited profile of the same size was not loaded")
	}
	os.Remove(filepath.Join(dir, "gpu.yaml"))
	if d, _ := l.Load(); d.Digest() != a.Digest() {
		t.Fatal("a removed profile is still in the set")
	}
	if _, err := NewLoader(filepath.Join(dir, "missing")).Load(); err == nil || !strings.Contains(err.Error(), "cluster.profiles_dir") {
		t.Fatalf("a missing overlay: %v", err)
	}
}

// A profiles_dir flint may not read says so, not that it is missing.
func TestOverlayUnreadable(t *testing.T) {
	err := dirError(&fs.PathError{Op: "open", Path: "/srv/profiles", Err: syscall.EACCES})
	if !strings.Contains(err.Error(), "cluster.profiles_dir: open /srv/profiles: permission denied (permission denied: flint reads its profiles as the user it runs as; run it as a user that can read them, or fix their owner or mode") {
		t.Fatalf("permission denied: %v", err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "create the directory or fix cluster.profiles_dir") {
		t.Fatalf("missing directory: %v", err)
	}
	if os.Geteuid() != 0 { // root reads whatever the mode says
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "server.yaml"), []byte("variant: flatcar\n"), 0o000)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "fix their owner or mode") {
			t.Fatalf("unreadable profile: %v", err)
		}
	}
}
