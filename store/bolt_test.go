package store

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadOnlyWhileLocked(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenBolt(dir, true); err == nil || !strings.Contains(err.Error(), "no flint state") {
		t.Fatalf("read-only open of empty dir: %v", err)
	}
	st, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// flock is per open file description, so a second open in this process conflicts like another process would.
	_, err = OpenBolt(dir, true)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("want ErrLocked, got %v", err)
	}
}

// TestSurvivesKill9 writes leases in a child process, SIGKILLs it right after it
// reports them written, and checks every reported lease is there.
func TestSurvivesKill9(t *testing.T) {
	if dir := os.Getenv("FLINT_STORE_CHILD"); dir != "" {
		st, err := OpenBolt(dir, false)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			a := netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)})
			if err := st.PutLease(Lease{IP: a, MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), State: LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("written", i) // only after PutLease returned: the lease must be durable now
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSurvivesKill9$")
	cmd.Env = append(os.Environ(), "FLINT_STORE_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last := -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "written" {
			last, _ = strconv.Atoi(f[1])
			if last >= 50 {
				break
			}
		} else if len(f) > 0 && f[0] == "error" {
			t.Fatal(sc.Text())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if last < 50 {
		t.Fatalf("child wrote only %d leases", last+1)
	}
	st, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer st.Close()
	ls, err := st.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) < last+1 {
		t.Fatalf("child reported %d leases written, %d survived kill -9", last+1, len(ls))
	}
}

// A command that changes serve's state must not leave a database in a
// directory serve never used; a directory it may not read is not "no state".
func TestOpenExistingOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-served")
	_, err := OpenBolt(dir, false, ExistingOnly())
	if !errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), "run flint serve with --data "+dir+" first") {
		t.Fatalf("open of a directory serve never used: %v", err)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the open created %s: %v", dir, serr)
	}
	st, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = OpenBolt(dir, false, ExistingOnly())
	if err != nil {
		t.Fatalf("open of serve's state: %v", err)
	}
	st.Close()

	denied := accessAdvice(&fs.PathError{Op: "open", Path: dir, Err: syscall.EACCES})
	if !strings.Contains(denied, "permission denied: the data directory belongs to the user flint serve runs as") {
		t.Fatalf("advice for permission denied: %q", denied)
	}
	if os.Geteuid() != 0 { // root opens whatever the mode says
		os.Chmod(dir, 0)
		defer os.Chmod(dir, 0o700)
		if _, err := OpenBolt(dir, true); err == nil || errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("read-only open of an unreadable directory: %v", err)
		}
	}
}
