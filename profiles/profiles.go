// Package profiles holds the Butane templates flint renders into Ignition
// configs: one profile per kind of node (server.yaml, agent.yaml) and parts
// they share (files starting with "_", which only {{define}} named templates).
//
// The templates are Go text/template producing Butane YAML (variant flatcar).
// The data they see is ignition.Data. A site can override an embedded file or
// add new ones by putting same-named or new *.yaml files in
// cluster.profiles_dir; a machine picks its profile with machine.profile
// (default: its role).
package profiles

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"

	"github.com/flint-boot/flint/config"
)

// Ext is the file name extension of templates.
const Ext = ".yaml"

//go:embed *.yaml
var embedded embed.FS

// FS returns the embedded templates.
func FS() fs.FS { return embedded }

// File is one template file.
type File struct {
	Name   string // base name, e.g. "server.yaml"; also the template's name
	Origin string // where it came from, for messages: the overlay path, or "embedded:NAME"
	Data   []byte
}

// IsPart says whether the file only defines named templates ("_common.yaml").
func (f File) IsPart() bool { return strings.HasPrefix(f.Name, "_") }

// Set is a snapshot of the templates: the embedded ones with an overlay
// directory's files laid over them. It is immutable.
type Set struct {
	files  map[string]File
	digest string
}

// Load reads the embedded templates and, when overlayDir is not empty, every
// *.yaml file directly in it: a file with an embedded name replaces the
// embedded one, other names add to the set. Hidden files and subdirectories
// are ignored.
func Load(overlayDir string) (*Set, error) {
	files := map[string]File{}
	entries, err := fs.ReadDir(embedded, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := fs.ReadFile(embedded, e.Name())
		if err != nil {
			return nil, err
		}
		files[e.Name()] = File{Name: e.Name(), Origin: "embedded:" + e.Name(), Data: data}
	}
	if overlayDir != "" {
		entries, err := os.ReadDir(overlayDir)
		if err != nil {
			return nil, dirError(err)
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, Ext) {
				continue
			}
			path := filepath.Join(overlayDir, name)
			// Stat follows symlinks, so a linked profile counts as a file.
			if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, dirError(err)
			}
			files[name] = File{Name: name, Origin: path, Data: data}
		}
	}
	return newSet(files), nil
}

// dirError says what to do about a profiles_dir (or a profile in it) that
// cannot be read.
func dirError(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cluster.profiles_dir: %w (permission denied: flint reads its profiles as the user it runs as; run it as a user that can read them, or fix their owner or mode, e.g. chmod a+rX)", err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cluster.profiles_dir: %w (create the directory or fix cluster.profiles_dir in the config)", err)
	}
	return fmt.Errorf("cluster.profiles_dir: %w", err)
}

// Loader loads the set of one overlay directory and keeps it while the
// directory's files stay the same (by name, size, modification time and
// inode: a stat each, no read), so a render asks for the set at the cost of
// one directory listing, and the embedded files are read once.
type Loader struct {
	dir string

	mu    sync.Mutex
	stamp string
	set   *Set
}

// NewLoader makes a loader for overlayDir ("" for the embedded files only).
func NewLoader(overlayDir string) *Loader { return &Loader{dir: overlayDir} }

// Load returns the current set, reloading it when the overlay changed.
func (l *Loader) Load() (*Set, error) {
	stamp, err := l.stampOf()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set != nil && stamp == l.stamp {
		return l.set, nil
	}
	set, err := Load(l.dir)
	if err != nil {
		return nil, err
	}
	l.set, l.stamp = set, stamp
	return set, nil
}

func (l *Loader) stampOf() (string, error) {
	if l.dir == "" {
		return "", nil
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return "", dirError(err)
	}
	var b strings.Builder
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, Ext) {
			continue
		}
		st, err := os.Stat(filepath.Join(l.dir, name)) // follows symlinks, like Load
		if err != nil {
			continue
		}
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\x00%d\x00", name, st.Size(), st.ModTime().UnixNano(), ino)
	}
	return b.String(), nil
}

// NewSet makes a set from in-memory files (name -> content), e.g. for tests.
// Origins are the names.
func NewSet(contents map[string]string) *Set {
	files := map[string]File{}
	for name, data := range contents {
		files[name] = File{Name: name, Origin: name, Data: []byte(data)}
	}
	return newSet(files)
}

func newSet(files map[string]File) *Set {
	h := sha256.New()
	for _, name := range sortedKeys(files) {
		f := files[name]
		// Length-prefixed, so no two different sets hash alike.
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(f.Data))
		h.Write(f.Data)
	}
	return &Set{files: files, digest: hex.EncodeToString(h.Sum(nil))}
}

// Digest identifies the set's names and contents; it changes when any file does.
func (s *Set) Digest() string { return s.digest }

// Files returns every file, sorted by name.
func (s *Set) Files() []File {
	out := make([]File, 0, len(s.files))
	for _, name := range sortedKeys(s.files) {
		out = append(out, s.files[name])
	}
	return out
}

// Profiles returns the names machines can select ("agent", "server", ...).
func (s *Set) Profiles() []string {
	var out []string
	for _, f := range s.Files() {
		if !f.IsPart() {
			out = append(out, strings.TrimSuffix(f.Name, Ext))
		}
	}
	return out
}

// Lookup finds a file by its name ("server.yaml").
func (s *Set) Lookup(name string) (File, bool) {
	f, ok := s.files[name]
	return f, ok
}

// ProfileOf is the profile machine m renders: machine.profile, or its role.
func ProfileOf(m *config.Machine) string {
	if m.Profile != "" {
		return strings.TrimSuffix(m.Profile, Ext)
	}
	return m.Role
}

// Error is a problem in a template file, located for editors.
type Error struct {
	File    string // the file's Origin
	Line    int    // 0 when unknown
	Message string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Message)
}

// Parse parses profile (a name from Profiles) together with every part. The
// result's templates are named by file name; execute the one named
// profile+Ext. Executing it in parallel is safe.
func (s *Set) Parse(profile string) (*template.Template, error) {
	name := strings.TrimSuffix(profile, Ext) + Ext
	main, ok := s.files[name]
	if !ok || main.IsPart() {
		return nil, fmt.Errorf("profile %q not found: known profiles: %s", profile, strings.Join(s.Profiles(), ", "))
	}
	root := template.New(name).Funcs(Funcs()).Option("missingkey=error")
	for _, f := range append(s.parts(), main) {
		t := root
		if f.Name != name {
			t = root.New(f.Name)
		}
		if _, err := t.Parse(string(f.Data)); err != nil {
			return nil, s.templateError(err)
		}
	}
	return root, nil
}

func (s *Set) parts() []File {
	var out []File
	for _, f := range s.Files() {
		if f.IsPart() {
			out = append(out, f)
		}
	}
	return out
}

// templateLocRE matches the location text/template puts in front of its
// errors: "template: NAME:LINE: msg" or "template: NAME:LINE:COL: msg".
var templateLocRE = regexp.MustCompile(`^template: ([^:]+):(\d+):(?:\d+:)? ?(.*)$`)

// templateError turns a text/template parse or execution error into an
// *Error that names the file's origin.
func (s *Set) templateError(err error) error {
	msg := err.Error()
	m := templateLocRE.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: "profiles", Message: strings.TrimPrefix(msg, "template: ")}
	}
	origin := m[1]
	if f, ok := s.files[m[1]]; ok {
		origin = f.Origin
	}
	line, _ := strconv.Atoi(m[2])
	return &Error{File: origin, Line: line, Message: m[3]}
}

// ExecError turns an error from executing a template of this set into an
// *Error located at the template line that failed.
func (s *Set) ExecError(err error) error { return s.templateError(err) }

// Funcs are the functions templates can call besides text/template's own:
//
//	quote S          S as a double-quoted YAML string (JSON escaping)
//	dataurl S        "data:;base64,..." of S, for contents.source; the way
//	                 secrets and other multi-line text enter the YAML
//	env K1 V1 K2 V2  an environment file: "K1=V1\nK2=V2\n"; fails on a
//	                 value with a newline
//	join SEP LIST    strings.Join
func Funcs() template.FuncMap {
	return template.FuncMap{
		"quote":   quote,
		"dataurl": dataURL,
		"env":     envFile,
		"join":    func(sep string, list []string) string { return strings.Join(list, sep) },
	}
}

func quote(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// PlaceholderPrefix starts every placeholder of a per-delivery token
// (ignition.BootData): the delivery writes the token over it, which it can
// only find as plain text.
const PlaceholderPrefix = "FLINT_PER_BOOT_"

func dataURL(s string) (string, error) {
	if strings.Contains(s, PlaceholderPrefix) {
		return "", errors.New("dataurl: a per-boot token (.Boot.*) must be written as plain text (inline:), not base64-encoded: flint writes each delivery's token over it")
	}
	return "data:;base64," + base64.StdEncoding.EncodeToString([]byte(s)), nil
}

func envFile(kv ...string) (string, error) {
	if len(kv)%2 != 0 {
		return "", errors.New("env needs pairs of name and value")
	}
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return "", fmt.Errorf("env: %q is not a variable name", k)
		}
		if strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("env: value of %s contains a line break", k)
		}
		if v == "" {
			return "", fmt.Errorf("env: value of %s is empty", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
