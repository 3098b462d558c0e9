package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phaseStat collects one phase of every node's boot.
type phaseStat struct {
	name string

	mu       sync.Mutex
	durs     []time.Duration
	lastDone time.Duration // since the storm's start
	fails    map[string]int
	nfail    int

	retries atomic.Int64 // retransmissions / repeated requests inside the phase
	bytes   atomic.Int64 // payload bytes the nodes received in the phase
}

func (p *phaseStat) ok(d, at time.Duration) {
	p.mu.Lock()
	p.durs = append(p.durs, d)
	p.lastDone = max(p.lastDone, at)
	p.mu.Unlock()
}

func (p *phaseStat) fail(err error) {
	p.mu.Lock()
	if p.fails == nil {
		p.fails = map[string]int{}
	}
	// Group by the message without the numbers that differ per node.
	p.fails[clipReason(err.Error())]++
	p.nfail++
	p.mu.Unlock()
}

func clipReason(s string) string {
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func (p *phaseStat) pct(q float64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pctOf(p.durs, q)
}

func pctOf(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(k, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
func secs(d time.Duration) string {
	return fmt.Sprintf("%.2f", d.Seconds())
}

// proc reads a process's CPU time (utime+stime) and memory from /proc.
type procStat struct{ pid int }

func (p procStat) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * (time.Second / 100) // USER_HZ
}

// status returns a /proc/PID/status field in KiB (VmRSS, VmHWM).
func (p procStat) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// resetPeak makes VmHWM start again from the current RSS (clear_refs 5).
func (p procStat) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
