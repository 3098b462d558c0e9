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
	"sync"
	"syscall"
	"testing"
	"time"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLeasesPersistAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	want := Lease{IP: ip("198.18.0.100"), MAC: "52:54:00:00:00:01", State: LeaseBound, Hostname: "a", Start: exp.Add(-time.Hour), Expires: exp}
	if err := st.PutLease(want); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLease(Lease{IP: ip("198.18.0.101"), State: LeaseDeclined, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteLease(ip("198.18.0.101")); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].IP != want.IP || got[0].MAC != want.MAC || !got[0].Expires.Equal(exp) || got[0].State != LeaseBound {
		t.Fatalf("leases after reopen = %+v", got)
	}
}

func TestSightingsAndSyncConfig(t *testing.T) {
	st, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := st.RecordSighting(Sighting{MAC: "52:54:00:00:00:09", At: t0.Add(time.Duration(i) * time.Second), Arch: "BIOS", Event: fmt.Sprintf("e%d", i), IP: ip("198.18.0.9")})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := st.SyncConfig([]KnownMachine{{MAC: "52:54:00:00:00:01", Hostname: "nuc1", Role: "server", ReservedIP: ip("198.18.0.60")}}); err != nil {
		t.Fatal(err)
	}
	ms, err := st.Machines()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("machines = %+v", ms)
	}
	known, seen := ms[0], ms[1]
	if !known.Known || known.Hostname != "nuc1" || !known.LastSeen.IsZero() {
		t.Errorf("known machine = %+v", known)
	}
	if seen.Known || seen.Events != 20 || !seen.FirstSeen.Equal(t0) || !seen.LastSeen.Equal(t0.Add(19*time.Second)) || seen.Arch != "BIOS" {
		t.Errorf("sighted machine = %+v", seen)
	}
	// A machine that leaves the config becomes discovered, and keeps its history.
	if err := st.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}
	ms, _ = st.Machines()
	if ms[0].Known || ms[0].Hostname != "" {
		t.Errorf("after removal from config: %+v", ms[0])
	}
}

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

func TestTimelineOrderedAndBounded(t *testing.T) {
	st, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mac := "52:54:00:00:00:0a"
	// Recorded out of order (goroutines do that); the timeline comes back by time.
	for _, i := range []int{2, 0, 1} {
		if err := st.RecordSighting(Sighting{MAC: mac, At: t0.Add(time.Duration(i) * time.Second), Event: fmt.Sprintf("e%d", i), Detail: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := st.Events(mac)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 3 || ev[0].Event != "e0" || ev[2].Event != "e2" || ev[1].Detail != "d" || !ev[1].At.Equal(t0.Add(time.Second)) {
		t.Fatalf("timeline = %+v", ev)
	}
	for i := range MaxEventsPerMachine + 200 {
		if err := st.RecordSighting(Sighting{MAC: mac, At: t0.Add(time.Hour + time.Duration(i)*time.Millisecond), Event: fmt.Sprintf("n%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ev, _ = st.Events(mac)
	if len(ev) > MaxEventsPerMachine+64 || len(ev) < MaxEventsPerMachine {
		t.Fatalf("timeline holds %d events, want about %d", len(ev), MaxEventsPerMachine)
	}
	if last := ev[len(ev)-1].Event; last != fmt.Sprintf("n%d", MaxEventsPerMachine+199) {
		t.Fatalf("newest event = %s", last)
	}
	if other, _ := st.Events("52:54:00:00:00:0b"); len(other) != 0 {
		t.Fatalf("unknown MAC has events: %v", other)
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
