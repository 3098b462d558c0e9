// Command scale is bench/scale.sh's helper:
//
//	scale seed -data DIR -n N   records N discovered machines (MACs flint's
//	                            config does not list) in flint's state, as a
//	                            site that has seen that many strangers would
//	scale time CMD ARGS...      runs CMD and prints secs=S maxrss_kib=K
//	                            (wall time, peak RSS of the child), its exit
//	                            status passed on
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/flint-boot/flint/store"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "seed":
		seed(os.Args[2:])
	case "time":
		timeCmd(os.Args[2:])
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: scale seed -data DIR -n N | scale time CMD ARGS...")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scale:", err)
	os.Exit(1)
}

// seed writes n discovered records in batches, the way flint's DHCP server
// records a stranger's DISCOVER (one sighting each).
func seed(args []string) {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	dir := fs.String("data", "", "flint's data directory (flint must not be running)")
	n := fs.Int("n", 0, "discovered machines to record")
	fs.Parse(args)
	if *dir == "" || *n <= 0 {
		usage()
	}
	st, err := store.OpenBolt(*dir, false, store.WithLimits(store.Limits{Discovered: *n}))
	if err != nil {
		fail(err)
	}
	defer st.Close()
	const batch = 2000
	at := time.Now().Add(-time.Hour)
	for i := 0; i < *n; i += batch {
		var ss []store.Sighting
		for j := i; j < min(i+batch, *n); j++ {
			// 0a:... : locally administered, apart from the config's 02:...
			mac := fmt.Sprintf("0a:5c:%02x:%02x:%02x:%02x", byte(j>>24), byte(j>>16), byte(j>>8), byte(j))
			ss = append(ss, store.Sighting{
				MAC: mac, At: at.Add(time.Duration(j) * time.Millisecond), Arch: "x86-64 UEFI",
				VendorClass: "PXEClient:Arch:00007:UNDI:003016", IP: netip.Addr{}, Event: "dhcp-discover",
			})
		}
		if err := st.RecordSightings(ss); err != nil {
			fail(err)
		}
	}
}

// timeCmd runs a command and prints its wall time and peak RSS.
func timeCmd(args []string) {
	if len(args) == 0 {
		usage()
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t0 := time.Now()
	err := cmd.Run()
	secs := time.Since(t0).Seconds()
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss // KiB on Linux
	}
	fmt.Printf("secs=%.2f maxrss_kib=%d\n", secs, rss)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fail(err)
	}
}
