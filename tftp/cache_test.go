package tftp

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/testenv"
)

// atftpFetch downloads name from the fixture's server with atftp, as firmware
// does (blksize 1468, tsize; more options in args), and returns the bytes
// (nil if it failed) and atftp's output.
func atftpFetch(t *testing.T, f *fixture, name string, args ...string) ([]byte, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs atftp: skipped in -short mode")
	}
	if _, err := exec.LookPath("atftp"); err != nil {
		testenv.Unavailable(t, "install Debian's atftp (`make deps`)", "no atftp: %v", err)
	}
	host, port, _ := net.SplitHostPort(f.addr)
	dst := filepath.Join(t.TempDir(), "out")
	args = append([]string{"--option", "blksize 1468", "--option", "tsize 0"}, args...)
	out, err := exec.Command("atftp", append(args, "-g", "-r", name, "-l", dst, host, port)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Sprintf("atftp: %v: %s", err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b, string(out)
}

// sentFrom is the "from" of the last "tftp: sent" log line: memory or disk.
func sentFrom(t *testing.T, logs *logRecords) string {
	t.Helper()
	var from string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		logs.mu.Lock()
		empty := logs.buf.Len() == 0
		logs.mu.Unlock()
		if empty {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if sent := logs.with(t, "tftp: sent"); len(sent) > 0 {
			from, _ = sent[len(sent)-1]["from"].(string)
			logs.mu.Lock()
			logs.buf.Reset()
			logs.mu.Unlock()
			return from
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no \"tftp: sent\" log line")
	return ""
}

// TestChangedFileServedNew: a file is served from memory after its first
// transfer, and whatever way it changes on disk (replaced by a rename as
// package upgrades do, rewritten in place with its old mtime put back,
// grown, deleted), the next client gets what is on disk now.
func TestChangedFileServedNew(t *testing.T) {
	logs := &logRecords{}
	f := startWith(t, "127.0.0.1", Options{}, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	path := filepath.Join(f.root, "ipxe.efi")
	v1 := randomBytes(t, 1468*40+17)
	writeFile(t, path, v1)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}

	expect := func(step string, want []byte, from string) {
		t.Helper()
		got, out := atftpFetch(t, f, "ipxe.efi")
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: atftp got %d bytes, want the %d on disk now (%s)", step, len(got), len(want), out)
		}
		if where := sentFrom(t, logs); where != from {
			t.Errorf("%s: sent from %q, want %q", step, where, from)
		}
		waitActive(t, f.server, 0) // the transfer has let go of its bytes
		if st := f.server.Stats(); st.CachedFiles != 1 || st.CachedBytes != int64(len(want)) {
			t.Errorf("%s: Stats %+v, want 1 file of %d bytes in memory", step, st, len(want))
		}
	}
	expect("first fetch", v1, "memory")
	expect("again", v1, "memory")

	// Replaced: a new file renamed over the old one, same size, same mtime.
	v2 := randomBytes(t, len(v1))
	writeFile(t, path+".new", v2)
	if err := os.Chtimes(path+".new", old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	expect("replaced by rename", v2, "memory")

	// Rewritten in place (same inode, same size), mtime set back: only
	// ctime tells.
	v3 := randomBytes(t, len(v1))
	if err := os.WriteFile(path, v3, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	expect("rewritten in place, mtime restored", v3, "memory")

	// Grown.
	v4 := append(append([]byte(nil), v3...), randomBytes(t, 3000)...)
	if err := os.WriteFile(path, v4, 0o644); err != nil {
		t.Fatal(err)
	}
	expect("grown", v4, "memory")

	// Deleted: not served, and not kept.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, out := atftpFetch(t, f, "ipxe.efi"); got != nil || !strings.Contains(out, "not found") {
		t.Errorf("deleted file: atftp got %d bytes (%s), want \"file not found\"", len(got), out)
	}
	if st := f.server.Stats(); st.CachedFiles != 0 || st.CachedBytes != 0 {
		t.Errorf("Stats %+v after the file was deleted, want nothing in memory", st)
	}
}

// TestCacheBound: the files kept in memory never exceed CacheFiles files or
// CacheBytes bytes, the least recently used go first, a file larger than
// CacheBytes is still served (from disk), and requests for names that do
// not exist keep nothing.
func TestCacheBound(t *testing.T) {
	const maxFiles, maxBytes = 3, 10_000
	logs := &logRecords{}
	f := startWith(t, "127.0.0.1", Options{CacheFiles: maxFiles, CacheBytes: maxBytes},
		slog.New(slog.NewJSONHandler(logs, nil)), nil)
	files := map[string][]byte{}
	for _, name := range []string{"a", "b", "c", "d"} {
		files[name] = randomBytes(t, 3000)
		writeFile(t, filepath.Join(f.root, name), files[name])
	}
	files["small"] = randomBytes(t, 100)
	writeFile(t, filepath.Join(f.root, "small"), files["small"])
	files["big"] = randomBytes(t, maxBytes+1)
	writeFile(t, filepath.Join(f.root, "big"), files["big"])

	fetch := func(name, from string, wantFiles int, wantBytes int64) {
		t.Helper()
		got, _, err := f.fetch(t, name, 1468, true)
		if err != nil || !bytes.Equal(got, files[name]) {
			t.Fatalf("fetch %s: %v, %d bytes; want its %d bytes", name, err, len(got), len(files[name]))
		}
		if where := sentFrom(t, logs); where != from {
			t.Errorf("fetch %s: sent from %q, want %q", name, where, from)
		}
		waitActive(t, f.server, 0) // the transfer has let go of its bytes
		st := f.server.Stats()
		if st.CachedFiles > maxFiles || st.CachedBytes > maxBytes {
			t.Fatalf("after %s: %d files, %d bytes in memory: over the bound (%d, %d)", name, st.CachedFiles, st.CachedBytes, maxFiles, maxBytes)
		}
		if st.CachedFiles != wantFiles || st.CachedBytes != wantBytes {
			t.Errorf("after %s: %d files, %d bytes in memory; want %d, %d", name, st.CachedFiles, st.CachedBytes, wantFiles, wantBytes)
		}
	}
	fetch("a", "memory", 1, 3000)
	fetch("b", "memory", 2, 6000)
	fetch("c", "memory", 3, 9000)
	fetch("a", "memory", 3, 9000)     // a is now the most recently used
	fetch("d", "memory", 3, 9000)     // bytes: b goes
	fetch("small", "memory", 3, 6100) // files: c goes
	fetch("big", "disk", 3, 6100)     // larger than the bound: served, not kept
	fetch("a", "memory", 3, 6100)     // still kept
	fetch("b", "memory", 3, 6100)     // read again; d goes (a, small used later)
	fetch("small", "memory", 3, 6100) // kept
	fetch("c", "memory", 3, 6100)     // a goes
	for i := range 50 {
		name := fmt.Sprintf("missing-%d", i)
		if _, _, err := f.fetch(t, name, 0, false); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("fetch %s: %v, want \"file not found\"", name, err)
		}
	}
	if st := f.server.Stats(); st.CachedFiles != 3 || st.CachedBytes != 6100 {
		t.Errorf("after 50 requests for missing names: Stats %+v, want the same 3 files, 6100 bytes", st)
	}

	// Nothing kept when asked so.
	g := startWith(t, "127.0.0.1", Options{CacheFiles: -1}, nil, nil)
	writeFile(t, filepath.Join(g.root, "a"), files["a"])
	if got, _, err := g.fetch(t, "a", 1468, true); err != nil || !bytes.Equal(got, files["a"]) {
		t.Fatalf("fetch without a cache: %v", err)
	}
	if st := g.server.Stats(); st.CachedFiles != 0 || st.CachedBytes != 0 {
		t.Errorf("CacheFiles -1: Stats %+v, want nothing kept", st)
	}
}

// TestCacheFirstFetchesAtOnce: clients that ask for a file nobody fetched
// yet, all at once (a rack powered on together), each get it whole, and
// it is read into memory once.
func TestCacheFirstFetchesAtOnce(t *testing.T) {
	f := startWith(t, "127.0.0.1", Options{MaxPerClient: 16}, nil, nil)
	want := randomBytes(t, 1468*200+5)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Go(func() {
			got, size, err := f.fetch(t, "ipxe.efi", 1468, true)
			switch {
			case err != nil:
				errs <- err
			case !bytes.Equal(got, want) || size != int64(len(want)):
				errs <- fmt.Errorf("%d bytes, tsize %d; want %d", len(got), size, len(want))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := f.server.Stats(); st.CachedFiles != 1 || st.CachedBytes != int64(len(want)) {
		t.Errorf("Stats %+v, want one copy of %d bytes", st, len(want))
	}
}

// TestLoadRefusesAnotherVersion: a file that is not the version its stat
// named when it is opened (replaced in between) is not kept.
func TestLoadRefusesAnotherVersion(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, []byte("old"))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := keyOf(fi)
	if !ok {
		t.Skip("no file versions on this platform")
	}
	writeFile(t, p+".new", []byte("new"))
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
	if b, err := load(p, key); err != errChanged {
		t.Errorf("load of a replaced file = %q, %v; want errChanged", b, err)
	}
	c := newFileCache(4, 1<<20)
	if _, _, ok := c.get("f", p, fi); ok {
		t.Error("get with a stale stat kept the file")
	}
	if files, bytes := c.stats(); files != 0 || bytes != 0 {
		t.Errorf("cache holds %d files, %d bytes after a failed load", files, bytes)
	}
}

// TestCacheInUseNotEvicted: a file a transfer is still sending from is not
// evicted to make room for another; that other file is sent from disk, so
// clients that alternate between files cannot make the server hold two
// copies of one (memory stays within the bound). Once the transfer ends,
// the room is there again.
func TestCacheInUseNotEvicted(t *testing.T) {
	logs := &logRecords{}
	f := startWith(t, "127.0.0.1", Options{CacheFiles: 1, CacheBytes: 1 << 20},
		slog.New(slog.NewJSONHandler(logs, nil)), func(s *Server) { s.timeout = 20 * time.Second })
	a, b := randomBytes(t, 5000), randomBytes(t, 6000)
	writeFile(t, filepath.Join(f.root, "a"), a)
	writeFile(t, filepath.Join(f.root, "b"), b)

	holder := newRawClient(t, f, "127.0.0.2")
	holder.hold("a") // block 1 sent, never acknowledged
	t.Cleanup(holder.end)
	fetch := func(name string, want []byte, from string) {
		t.Helper()
		got, _, err := f.fetch(t, name, 1468, true)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("fetch %s: %v, %d bytes; want %d", name, err, len(got), len(want))
		}
		if where := sentFrom(t, logs); where != from {
			t.Errorf("fetch %s: sent from %q, want %q", name, where, from)
		}
	}
	fetch("b", b, "disk") // the one place is a's, which is being sent
	if st := f.server.Stats(); st.CachedFiles != 1 || st.CachedBytes != int64(len(a)) {
		t.Errorf("Stats %+v while a is sent, want a alone in memory", st)
	}
	fetch("a", a, "memory") // the same copy, shared
	holder.end()
	waitActive(t, f.server, 0)
	fetch("b", b, "memory") // a is free now, so it goes
	waitActive(t, f.server, 0)
	if st := f.server.Stats(); st.CachedFiles != 1 || st.CachedBytes != int64(len(b)) {
		t.Errorf("Stats %+v, want b alone in memory", st)
	}
}
