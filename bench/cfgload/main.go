// Command cfgload measures Ignition config delivery per node, for
// bench/ignition.sh: a closed loop of -c workers, each taking the next machine
// that no other worker is serving and delivering its config, until -duration
// has passed or -n deliveries have started.
//
// -mode flint: one delivery is what a node does with flint (README, "Trust"):
//
//  1. GET BASE/machines/MAC/boot.ipxe?arch=x86_64 (iPXE): the script's kernel
//     line carries ignition.config.url=...&token=T, a fresh single-use boot token;
//  2. GET that URL (Ignition, plain HTTP) with Ignition v2's Accept header: the
//     pointer config, flint's CA and config.replace naming the HTTPS URL;
//  3. GET the HTTPS URL over a new TLS connection (a node's Ignition opens one;
//     no session resumption, HTTP/1.1 as Ignition's transport), trusting only
//     the CA of the pointer: the machine's config, which spends the token.
//
// -mode matchbox: one delivery is GET BASE/ignition?mac=MAC, once.
//
// Every request goes over a new TCP connection, as it does from a booting
// node (-keepalive reuses the plain-HTTP ones instead). A delivery counts as
// ok when every answer is 200 and the config parses as JSON with
// ignition.version 3.x. Two deliveries of one machine never overlap: each
// script's token is spent by its own delivery, never by a concurrent one.
//
// With -serve-floor it is the server instead: a stand-in for flint that does
// only what the protocol itself costs (floor.go).
//
// It prints one line of key=value pairs: deliveries per second, p50/p90/p99/max
// of the whole delivery, errors, the server's CPU time per delivery with -pid
// (utime+stime from /proc/PID/stat), its own CPU per delivery (it shares the
// machine's cores), the mean config size and, in flint mode, the p50 of each
// step. The first few errors go to stderr.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ignitionAccept is what Ignition v2 sends (internal/resource/url.go, spec 3.6.0).
const ignitionAccept = "application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1"

func main() {
	mode := flag.String("mode", "flint", "flint (script, pointer, config over a new TLS connection) or matchbox (one /ignition request)")
	base := flag.String("url", "", "server base URL, e.g. http://127.0.0.1:8080 (required)")
	macsFile := flag.String("macs", "", "file with the machines' MACs, one per line (required)")
	conc := flag.Int("c", 8, "concurrent workers (at most the number of machines)")
	dur := flag.Duration("duration", 10*time.Second, "stop starting deliveries after this long (with -n 0)")
	n := flag.Int("n", 0, "deliveries to run (0: run for -duration)")
	timeout := flag.Duration("timeout", 10*time.Second, "per request")
	keepalive := flag.Bool("keepalive", false, "reuse plain-HTTP connections (the TLS one is always new)")
	pids := flag.String("pid", "", "comma-separated server PIDs whose CPU time is measured")
	label := flag.String("label", "", "printed as server=LABEL (default: the mode)")
	cpuprofile := flag.String("cpuprofile", "", "write cfgload's own CPU profile here (what the client costs)")
	floorSpec := flag.String("serve-floor", "", "HTTP_ADDR,TLS_ADDR,CONFIG_FILE: instead of loading, serve the floor (floor.go): -mode flint's protocol with nothing else")
	flag.Parse()
	if *floorSpec != "" {
		runFloor(*floorSpec)
		return
	}
	if *base == "" || *macsFile == "" || *conc <= 0 || (*mode != "flint" && *mode != "matchbox") {
		flag.Usage()
		os.Exit(2)
	}
	if *label == "" {
		*label = *mode
	}
	macs, err := readMACs(*macsFile)
	if err != nil {
		fail(err)
	}
	if *conc > len(macs) {
		fail(fmt.Errorf("-c %d is more than the %d machines: two workers would share a machine (and its boot token)", *conc, len(macs)))
	}
	var pidList []int
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p != "" {
			v, err := strconv.Atoi(p)
			if err != nil {
				fail(fmt.Errorf("bad -pid %q", p))
			}
			pidList = append(pidList, v)
		}
	}

	l := &loader{
		base:    strings.TrimRight(*base, "/"),
		timeout: *timeout,
		plain:   newTransport(nil, *keepalive, *conc),
		pools:   map[string]*x509.CertPool{},
	}
	// Free machines: a worker takes one, delivers its config and puts it back
	// at the end of the queue, so deliveries cycle over all machines.
	free := make(chan string, len(macs))
	for _, m := range macs {
		free <- m
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, self0 := cpuTicks(pidList), cpuTicks([]int{os.Getpid()})
	start := time.Now()
	deadline := start.Add(*dur)
	var started atomic.Int64
	var wg sync.WaitGroup
	res := make([]stats, *conc)
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(s *stats) {
			defer wg.Done()
			for {
				if *n > 0 {
					if started.Add(1) > int64(*n) {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				mac := <-free
				t0 := time.Now()
				var st steps
				var size int
				var err error
				if *mode == "flint" {
					st, size, err = l.flint(mac)
				} else {
					size, err = l.matchbox(mac)
				}
				d := time.Since(t0)
				free <- mac
				if err != nil {
					s.errs = append(s.errs, fmt.Sprintf("%s: %v", mac, err))
					continue
				}
				s.lat = append(s.lat, d)
				s.bytes += int64(size)
				for i := range st {
					s.step[i] = append(s.step[i], st[i])
				}
			}
		}(&res[w])
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, self1 := cpuTicks(pidList), cpuTicks([]int{os.Getpid()})

	var all stats
	for _, s := range res {
		all.lat = append(all.lat, s.lat...)
		all.errs = append(all.errs, s.errs...)
		all.bytes += s.bytes
		for i := range s.step {
			all.step[i] = append(all.step[i], s.step[i]...)
		}
	}
	ok := len(all.lat)
	const hz = 100.0 // USER_HZ: /proc/PID/stat counts in these units
	perOK := func(ticks int64) string {
		if ok == 0 {
			return "na"
		}
		return fmt.Sprintf("%.3f", float64(ticks)/hz*1000/float64(ok))
	}
	cpuMs := "na"
	if len(pidList) > 0 {
		cpuMs = perOK(cpu1 - cpu0)
	}
	meanBytes := int64(0)
	if ok > 0 {
		meanBytes = all.bytes / int64(ok)
	}
	line := fmt.Sprintf("server=%s mode=%s conc=%d ok=%d errors=%d secs=%.2f rate=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f cpu_ms=%s client_cpu_ms=%s config_bytes=%d",
		*label, *mode, *conc, ok, len(all.errs), elapsed.Seconds(), float64(ok)/elapsed.Seconds(),
		pct(all.lat, 0.50), pct(all.lat, 0.90), pct(all.lat, 0.99), pct(all.lat, 1.0),
		cpuMs, perOK(self1-self0), meanBytes)
	if *mode == "flint" {
		line += fmt.Sprintf(" script_p50_ms=%.2f pointer_p50_ms=%.2f tls_config_p50_ms=%.2f",
			pct(all.step[0], 0.5), pct(all.step[1], 0.5), pct(all.step[2], 0.5))
	}
	fmt.Println(line)
	// The first distinct errors, so a broken setup is obvious.
	seen := map[string]bool{}
	for _, e := range all.errs {
		k := e[strings.IndexByte(e, ' ')+1:]
		if len(k) > 60 {
			k = k[:60]
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		fmt.Fprintln(os.Stderr, "cfgload: error:", e)
		if len(seen) == 5 {
			break
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cfgload:", err)
	os.Exit(1)
}

type steps [3]time.Duration // flint: script, pointer, TLS config (handshake included)

type stats struct {
	lat   []time.Duration
	step  [3][]time.Duration
	errs  []string
	bytes int64
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p*float64(len(s))+0.5) - 1
	k = max(0, min(k, len(s)-1))
	return float64(s[k].Microseconds()) / 1000
}

func readMACs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var macs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hw, err := net.ParseMAC(line)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("%s: %q is not a MAC", path, line)
		}
		// The form iPXE's ${mac:hexhyp} gives: 02-00-00-00-00-01.
		macs = append(macs, strings.ReplaceAll(hw.String(), ":", "-"))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(macs) == 0 {
		return nil, fmt.Errorf("%s: no MACs", path)
	}
	return macs, nil
}

// newTransport is an HTTP/1.1 transport like Ignition's (a custom
// TLSClientConfig and no ForceAttemptHTTP2, so no h2), without keep-alive
// unless asked for.
func newTransport(tlsConf *tls.Config, keepalive bool, conns int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   !keepalive,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
	}
}

type loader struct {
	base    string
	timeout time.Duration
	plain   *http.Transport

	mu    sync.Mutex
	pools map[string]*x509.CertPool // by the pointer's CA source (the client's work, not the server's)
}

// get fetches url with rt and returns the body of a 200 answer.
func (l *loader) get(rt http.RoundTripper, url, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("User-Agent", "cfgload")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		return nil, fmt.Errorf("%d %s", resp.StatusCode, msg)
	}
	return body, nil
}

var tokenURL = regexp.MustCompile(`ignition\.config\.url=(\S+)`)

func (l *loader) flint(mac string) (st steps, size int, err error) {
	t0 := time.Now()
	script, err := l.get(l.plain, l.base+"/machines/"+mac+"/boot.ipxe?arch=x86_64", "")
	if err != nil {
		return st, 0, fmt.Errorf("script: %w", err)
	}
	m := tokenURL.FindSubmatch(script)
	if m == nil {
		return st, 0, fmt.Errorf("script: no ignition.config.url on its kernel line")
	}
	pointerURL := string(m[1])
	if u, err := url.Parse(pointerURL); err != nil || u.Query().Get("token") == "" {
		return st, 0, fmt.Errorf("script: %q carries no token", pointerURL)
	}
	t1 := time.Now()
	st[0] = t1.Sub(t0)

	raw, err := l.get(l.plain, pointerURL, ignitionAccept)
	if err != nil {
		return st, 0, fmt.Errorf("pointer: %w", err)
	}
	var p struct {
		Ignition struct {
			Version string `json:"version"`
			Config  struct {
				Replace struct {
					Source string `json:"source"`
				} `json:"replace"`
			} `json:"config"`
			Security struct {
				TLS struct {
					CertificateAuthorities []struct {
						Source string `json:"source"`
					} `json:"certificateAuthorities"`
				} `json:"tls"`
			} `json:"security"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return st, 0, fmt.Errorf("pointer: %w", err)
	}
	target := p.Ignition.Config.Replace.Source
	if !strings.HasPrefix(target, "https://") || len(p.Ignition.Security.TLS.CertificateAuthorities) != 1 {
		return st, 0, fmt.Errorf("pointer: want one CA and an https replace URL, got %s", raw)
	}
	pool, err := l.pool(p.Ignition.Security.TLS.CertificateAuthorities[0].Source)
	if err != nil {
		return st, 0, fmt.Errorf("pointer: %w", err)
	}
	t2 := time.Now()
	st[1] = t2.Sub(t1)

	// A new transport: a new TCP and TLS connection, full handshake (no
	// session cache), as a node's Ignition does.
	tr := newTransport(&tls.Config{RootCAs: pool}, false, 1)
	cfg, err := l.get(tr, target, ignitionAccept)
	tr.CloseIdleConnections()
	if err != nil {
		return st, 0, fmt.Errorf("config: %w", err)
	}
	if err := checkConfig(cfg); err != nil {
		return st, 0, fmt.Errorf("config: %w", err)
	}
	st[2] = time.Since(t2)
	return st, len(cfg), nil
}

func (l *loader) matchbox(mac string) (int, error) {
	cfg, err := l.get(l.plain, l.base+"/ignition?mac="+mac, ignitionAccept)
	if err != nil {
		return 0, err
	}
	if err := checkConfig(cfg); err != nil {
		return 0, err
	}
	return len(cfg), nil
}

// checkConfig: the answer is JSON with ignition.version 3.x.
func checkConfig(raw []byte) error {
	var c struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if !strings.HasPrefix(c.Ignition.Version, "3.") {
		return fmt.Errorf("ignition.version %q, want 3.x", c.Ignition.Version)
	}
	return nil
}

// pool is the CA of a pointer's data URL as a cert pool; parsed once per
// distinct source.
func (l *loader) pool(source string) (*x509.CertPool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.pools[source]; ok {
		return p, nil
	}
	pem, err := decodeDataURL(source)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, errors.New("the pointer's CA holds no PEM certificate")
	}
	l.pools[source] = p
	return p, nil
}

// decodeDataURL decodes data:[<mediatype>][;base64],<data> (RFC 2397).
func decodeDataURL(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return nil, fmt.Errorf("CA source %.40q is not a data URL", s)
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("CA data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		return base64.StdEncoding.DecodeString(data)
	}
	u, err := url.PathUnescape(data)
	return []byte(u), err
}

// cpuTicks sums utime+stime (clock ticks) of the given processes (all threads).
func cpuTicks(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// After ")": state is field 3 of stat(5), so utime (14) is f[11], stime (15) f[12].
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + st
		}
	}
	return total
}
