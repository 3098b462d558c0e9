// Command storm simulates a boot storm of N Intel NUCs against flint, for
// bench/storm.sh. Each simulated NUC does what a real one does, in order:
//
//  1. DHCP DISCOVER/REQUEST as UEFI PXE firmware (option 60
//     PXEClient:Arch:00007, option 93 = 7): its reserved address and ipxe.efi;
//  2. TFTP read of ipxe.efi (EDK2's tsize probe, then blksize 1468) from its
//     own address;
//  3. DHCP again as iPXE (option 77 "iPXE"): http://FLINT/boot.ipxe;
//  4. GET /boot.ipxe, then the per-MAC script it chains to;
//  5. GET the kernel the script names;
//  6. GET the initrd, over the same keep-alive connection;
//  7. GET the pointer config named by ignition.config.url (plain HTTP);
//  8. GET the HTTPS config it names, trusting only the pointer's CA;
//  9. GET the config's remote files (k3s; etcd and etcdctl on servers):
//     NUC 1 checks each against its sha512 as Ignition does, the others
//     their length (hashing every copy would take CPU from flint);
//  10. POST config-applied and k3s-up to the config's events URL with the
//     report token from /etc/flint/report.header.
//
// All NUCs share the client namespace's IP stack: DHCP goes through one
// socket on :68 (replies by broadcast, matched by xid), and every TFTP and
// HTTP socket of a NUC is bound to the address flint leased to its MAC, which
// bench/storm.sh put on the client interface beforehand.
//
//	storm gen -n N -dev IF -lladdr MAC -dir DIR   # flint's machines: and the ip -batch files
//	storm floor-serve -listen ADDR -file F         # a trivial HTTP server (sendfile) for the link's capacity
//	storm run -n N -iface IF -pid FLINT_PID ...    # the storm; prints a summary and markdown tables
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: storm gen|floor-serve|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "floor-serve":
		err = floorServe(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	n := fs.Int("n", 200, "machines")
	dev := fs.String("dev", "", "client interface (for addrs.batch)")
	srvDev := fs.String("srv-dev", "", "server interface (for neigh.batch)")
	lladdr := fs.String("lladdr", "", "the client interface's MAC (for neigh.batch)")
	dir := fs.String("dir", ".", "where machines.yaml, addrs.batch and neigh.batch go")
	_ = fs.Parse(args)
	if *n < servers || *n > maxN {
		return fmt.Errorf("-n must be %d-%d", servers, maxN)
	}
	nodes := plan(*n)
	write := func(name string, f func(io.Writer)) error {
		out, err := os.Create(filepath.Join(*dir, name))
		if err != nil {
			return err
		}
		f(out)
		return out.Close()
	}
	return errors.Join(
		write("machines.yaml", func(w io.Writer) { writeMachines(w, nodes) }),
		write("addrs.batch", func(w io.Writer) { writeAddrBatch(w, nodes, *dev) }),
		write("neigh.batch", func(w io.Writer) { writeNeighBatch(w, nodes, *srvDev, *lladdr) }),
	)
}

// floorServe serves files with net/http's FileServer (sendfile), nothing else:
// the plain transfer the storm's bytes are compared with.
func floorServe(args []string) error {
	fs := flag.NewFlagSet("floor-serve", flag.ExitOnError)
	listen := fs.String("listen", "", "address:port")
	dir := fs.String("dir", "", "directory to serve")
	_ = fs.Parse(args)
	return (&http.Server{Addr: *listen, Handler: http.FileServer(http.Dir(*dir))}).ListenAndServe()
}

type options struct {
	n                      int
	iface                  string
	pid                    int
	ramp                   time.Duration
	maxDur                 time.Duration
	tftp                   tftpOpts
	ipxeSize               int64
	kernelSize, initrdSize int64
	kernelSum, initrdSum   string
	floorURL               string
	capStreams             int
	capDur                 time.Duration
	startedFile            string
	cpuProfile             string
}

type storm struct {
	opt      options
	dhcp     *dhcpNet
	nodes    []node
	ph       [nPhases]phaseStat
	t0       time.Time
	configAt []atomic.Int64 // since t0 in ns; 0: never got its config
	doneAt   []atomic.Int64 // 0: did not finish
	failed   atomic.Int64
}

func fileInfo(path string, sum bool) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if !sum {
		st, err := f.Stat()
		if err != nil {
			return 0, "", err
		}
		return st.Size(), "", nil
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var o options
	var ipxeFile, kernelFile, initrdFile string
	fs.IntVar(&o.n, "n", 200, "simulated NUCs (machines of flint's config, from `storm gen`)")
	fs.StringVar(&o.iface, "iface", "", "client interface (required)")
	fs.IntVar(&o.pid, "pid", 0, "flint's PID: CPU time and peak RSS from /proc")
	fs.DurationVar(&o.ramp, "ramp", 0, "spread the NUCs' power-on evenly over this long (0: all at once)")
	fs.DurationVar(&o.maxDur, "max", 15*time.Minute, "give up on NUCs still booting after this long")
	fs.IntVar(&o.tftp.blksize, "tftp-blksize", 1468, "TFTP blksize the firmware asks for")
	fs.DurationVar(&o.tftp.timeout, "tftp-timeout", 4*time.Second, "TFTP wait per packet before retransmitting")
	fs.IntVar(&o.tftp.retries, "tftp-retries", 5, "TFTP retransmissions per packet")
	fs.BoolVar(&o.tftp.probe, "tftp-probe", true, "EDK2's tsize probe before the read")
	fs.StringVar(&ipxeFile, "ipxe-file", "", "ipxe.efi as flint serves it (size check)")
	fs.StringVar(&kernelFile, "kernel-file", "", "the kernel as flint serves it (size check; node 1 checks sha256)")
	fs.StringVar(&initrdFile, "initrd-file", "", "the initrd, likewise")
	fs.StringVar(&o.floorURL, "floor-url", "", "URL of a big file on `storm floor-serve`: the link's capacity, before and after the storm")
	fs.IntVar(&o.capStreams, "cap-streams", 8, "parallel downloads for the capacity")
	fs.DurationVar(&o.capDur, "cap-time", 5*time.Second, "how long each capacity measurement runs")
	fs.StringVar(&o.startedFile, "started", "", "create this file when the NUCs power on (for a profiler)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile of the storm here")
	_ = fs.Parse(args)
	if o.iface == "" || o.n < servers || o.n > maxN {
		fs.Usage()
		return errors.New("need -iface and a valid -n")
	}
	var err error
	o.ipxeSize, o.kernelSize, o.initrdSize = -1, -1, -1
	if ipxeFile != "" {
		if o.ipxeSize, _, err = fileInfo(ipxeFile, false); err != nil {
			return err
		}
	}
	if kernelFile != "" {
		if o.kernelSize, o.kernelSum, err = fileInfo(kernelFile, true); err != nil {
			return err
		}
	}
	if initrdFile != "" {
		if o.initrdSize, o.initrdSum, err = fileInfo(initrdFile, true); err != nil {
			return err
		}
	}

	d, err := newDHCPNet(o.iface)
	if err != nil {
		return err
	}
	s := &storm{opt: o, dhcp: d, nodes: plan(o.n), configAt: make([]atomic.Int64, o.n), doneAt: make([]atomic.Int64, o.n)}
	for i := range s.ph {
		s.ph[i].name = phaseNames[i]
	}

	var capBefore, capAfter float64
	if o.floorURL != "" {
		if capBefore, err = capacity(o.floorURL, o.capStreams, o.capDur); err != nil {
			return fmt.Errorf("capacity: %w", err)
		}
		fmt.Fprintf(os.Stderr, "storm: link capacity before: %.0f MB/s\n", capBefore/1e6)
	}

	flint := procStat{o.pid}
	hwmStart := flint.status("VmHWM") // peak so far: start-up (config, PKI, renders)
	rssStart := flint.status("VmRSS")
	flint.resetPeak()
	cpu0 := flint.cpu()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)

	// Sample flint's RSS while the storm runs (VmHWM is the true peak; this
	// is a cross-check where clear_refs is not allowed).
	var rssMax atomic.Int64
	stopSample := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				if v := flint.status("VmRSS"); v > rssMax.Load() {
					rssMax.Store(v)
				}
			}
		}
	}()

	fmt.Fprintf(os.Stderr, "storm: %d NUCs power on\n", o.n)
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	s.t0 = time.Now()
	if o.startedFile != "" {
		_ = os.WriteFile(o.startedFile, nil, 0o644)
	}
	var wg sync.WaitGroup
	for i := range s.nodes {
		wg.Add(1)
		go func(nd *node) {
			defer wg.Done()
			if o.ramp > 0 {
				time.Sleep(time.Duration(int64(o.ramp) * int64(nd.i) / int64(o.n)))
			}
			s.bootNode(nd)
		}(&s.nodes[i])
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	progress := time.NewTicker(5 * time.Second)
	timedOut := false
	deadline := time.After(o.maxDur)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-progress.C:
			got := 0
			for i := range s.configAt {
				if s.configAt[i].Load() > 0 {
					got++
				}
			}
			fmt.Fprintf(os.Stderr, "storm: %.0fs: %d/%d configs, %d failed\n", time.Since(s.t0).Seconds(), got, o.n, s.failed.Load())
		case <-deadline:
			timedOut = true
			break wait
		}
	}
	progress.Stop()
	wall := time.Since(s.t0)
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	cpu1 := flint.cpu()
	hwmStorm := flint.status("VmHWM")
	rssEnd := flint.status("VmRSS")
	close(stopSample)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	clientCPU := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond

	if o.floorURL != "" && !timedOut {
		if capAfter, err = capacity(o.floorURL, o.capStreams, o.capDur); err != nil {
			return fmt.Errorf("capacity: %w", err)
		}
		fmt.Fprintf(os.Stderr, "storm: link capacity after: %.0f MB/s\n", capAfter/1e6)
	}

	// --- results ------------------------------------------------------------
	var lastConfig, lastDone time.Duration
	var configs, finished int
	for i := range s.nodes {
		if at := time.Duration(s.configAt[i].Load()); at > 0 {
			configs++
			lastConfig = max(lastConfig, at)
		}
		if at := time.Duration(s.doneAt[i].Load()); at > 0 {
			finished++
			lastDone = max(lastDone, at)
		}
	}
	var bytesToConfig, bytesAll int64
	for i := range s.ph {
		b := s.ph[i].bytes.Load()
		bytesAll += b
		if i <= phConfig {
			bytesToConfig += b
		}
	}
	capBest := max(capBefore, capAfter)
	floorConfig, floorAll := 0.0, 0.0
	ratioConfig, ratioAll := "-", "-"
	if capBest > 0 {
		floorConfig = float64(bytesToConfig) / capBest
		floorAll = float64(bytesAll) / capBest
		if configs == o.n {
			ratioConfig = fmt.Sprintf("%.2f", lastConfig.Seconds()/floorConfig)
		}
		if finished == o.n {
			ratioAll = fmt.Sprintf("%.2f", lastDone.Seconds()/floorAll)
		}
	}
	notDone := o.n - finished - int(s.failed.Load())

	fmt.Printf("storm n=%d configs=%d finished=%d failed=%d unfinished=%d wall_s=%.2f last_config_s=%.2f last_report_s=%.2f "+
		"bytes_to_config=%d bytes_all=%d cap_before_MBps=%.0f cap_after_MBps=%.0f floor_config_s=%.2f floor_all_s=%.2f ratio_config=%s ratio_all=%s "+
		"flint_cpu_s=%.2f flint_rss_start_MiB=%s flint_hwm_startup_MiB=%s flint_hwm_storm_MiB=%s flint_rss_sampled_max_MiB=%s flint_rss_end_MiB=%s "+
		"client_cpu_s=%.2f dhcp_sent=%d dhcp_stray=%d\n",
		o.n, configs, finished, s.failed.Load(), notDone, wall.Seconds(), lastConfig.Seconds(), lastDone.Seconds(),
		bytesToConfig, bytesAll, capBefore/1e6, capAfter/1e6, floorConfig, floorAll, ratioConfig, ratioAll,
		(cpu1 - cpu0).Seconds(), mib(rssStart), mib(hwmStart), mib(hwmStorm), mib(rssMax.Load()), mib(rssEnd),
		clientCPU.Seconds(), d.sent.Load(), d.stray.Load())

	fmt.Println()
	fmt.Println("| phase | ok | failed | retries | p50 ms | p99 ms | max ms | last done s | MB received |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for i := range s.ph {
		p := &s.ph[i]
		p.mu.Lock()
		nok, nfail := len(p.durs), p.nfail
		p.mu.Unlock()
		fmt.Printf("| %s | %d | %d | %d | %s | %s | %s | %s | %.1f |\n", p.name, nok, nfail, p.retries.Load(),
			ms(p.pct(0.5)), ms(p.pct(0.99)), ms(p.pct(1)), secs(p.lastDone), float64(p.bytes.Load())/1e6)
	}
	var reasons []string
	for i := range s.ph {
		p := &s.ph[i]
		for r, c := range p.fails {
			reasons = append(reasons, fmt.Sprintf("- %s: %d x %s", p.name, c, r))
		}
	}
	sort.Strings(reasons)
	if notDone > 0 {
		reasons = append(reasons, fmt.Sprintf("- %d NUCs still booting after %s", notDone, o.maxDur))
	}
	if len(reasons) > 0 {
		fmt.Println()
		fmt.Println("Failures:")
		fmt.Println()
		for _, r := range reasons {
			fmt.Println(r)
		}
	}
	return nil
}

// capacity measures what a plain HTTP download moves over the link: streams
// parallel keep-alive downloads of url for dur, all body bytes over dur.
func capacity(u string, streams int, dur time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var total atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := transport(clientAddr, nil)
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			bp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bp)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, err)
						mu.Unlock()
					}
					return
				}
				n, _ := io.CopyBuffer(sink{}, resp.Body, *bp)
				resp.Body.Close()
				total.Add(n)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(total.Load()) / el.Seconds(), nil
}
