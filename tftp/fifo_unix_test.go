//go:build unix

package tftp

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Opening a FIFO would block until a writer appears: it must be refused
// without being opened.
func TestNonRegularRefused(t *testing.T) {
	f := start(t)
	if err := syscall.Mkfifo(filepath.Join(f.root, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	begin := time.Now()
	_, _, err := f.fetch(t, "pipe", 0, false)
	if err == nil {
		t.Fatal("fetched a FIFO")
	}
	if d := time.Since(begin); d > 400*time.Millisecond {
		t.Errorf("refusal took %s (did the server block opening the FIFO?)", d)
	}
}
