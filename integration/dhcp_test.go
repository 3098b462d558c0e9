package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// wantLease compares what a client's script got with what flint must hand out.
func wantLease(t *testing.T, who string, l *Lease, r Result, ip, bootFile string) {
	t.Helper()
	if l == nil {
		t.Errorf("%s got no lease from flint\n%s", who, r)
		return
	}
	checks := []struct{ field, got, want string }{
		{"address", l.IP, ip},
		{"router", l.Router, routerIP},
		{"server identifier (option 54)", l.ServerID, flintIP},
		{"subnet mask", l.Subnet, "255.255.255.0"},
		{"DNS servers", l.DNS, dnsIP},
		{"domain", l.Domain, "lab.test"},
		{"lease time", l.LeaseTime, "3600"},
		{"boot file", l.BootFile, bootFile},
	}
	if bootFile != "" {
		checks = append(checks, struct{ field, got, want string }{"next-server (siaddr)", l.NextServer, flintIP})
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %s = %q, want %q", who, c.field, c.got, c.want)
		}
	}
}

func inPool(ip string) bool { return inRange(ip, poolStart, poolEnd) }

// TestDHCPFullMode: real udhcpc and dhclient get their reservations and boot
// files; unknown machines get distinct pool addresses that survive a SIGKILL
// of flint; `flint machines` shows all of them, from the running server and
// from the database after it stopped.
func TestDHCPFullMode(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "udhcpc", "dhclient", "curl")
	l := NewLab(t)
	cfg := l.WriteConfig(t, siteConfig{Mode: "full", Pool: true, DiscoverUnknown: true, Machines: []machine{node1, node2, node3}})
	data := filepath.Join(l.Dir, "data")
	f := l.StartFlint(t, cfg, data)

	t.Run("banner", func(t *testing.T) {
		// /healthz may answer a moment before the banner is written: give it 5 s.
		wants := []string{flintIP, node1.Hostname, node1.MAC, node2.MAC, node3.MAC, fmt.Sprint(httpPort)}
		err := eventually(5*time.Second, 50*time.Millisecond, func() error {
			banner := f.Stdout.String()
			for _, want := range wants {
				if !strings.Contains(banner, want) {
					return fmt.Errorf("startup banner on stdout does not mention %q:\n%s", want, banner)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	n1 := l.AddHost(t, "n1", node1.MAC)
	n2 := l.AddHost(t, "n2", node2.MAC)
	n3 := l.AddHost(t, "n3", node3.MAC)
	const to = 20 * time.Second

	t.Run("udhcpc/known-bios", func(t *testing.T) {
		lease, r := n1.Udhcpc(t, to, udhcpcPXE(0)...)
		wantLease(t, "udhcpc node1 arch 0", lease, r, node1.IP, "undionly.kpxe")
	})
	t.Run("udhcpc/known-uefi", func(t *testing.T) {
		lease, r := n1.Udhcpc(t, to, udhcpcPXE(7)...)
		wantLease(t, "udhcpc node1 arch 7", lease, r, node1.IP, "ipxe.efi")
	})
	t.Run("udhcpc/pinned-ipxe-binary", func(t *testing.T) {
		lease, r := n2.Udhcpc(t, to, udhcpcPXE(7)...)
		wantLease(t, "udhcpc node2 arch 7 (ipxe_binary: snponly.efi)", lease, r, node2.IP, "snponly.efi")
	})
	t.Run("udhcpc/ipxe-user-class", func(t *testing.T) {
		// iPXE itself: option 77 "iPXE" -> the HTTP script, never the binary again.
		lease, r := n1.Udhcpc(t, to, append(udhcpcPXE(7), "-x", "0x4d:69505845")...)
		wantLease(t, "udhcpc node1 as iPXE", lease, r, node1.IP, flintHTTP+"/boot.ipxe")
	})
	t.Run("udhcpc/not-netboot", func(t *testing.T) {
		lease, r := n1.Udhcpc(t, to)
		wantLease(t, "udhcpc node1 without PXE options", lease, r, node1.IP, "")
	})
	t.Run("dhclient/known-bios", func(t *testing.T) {
		lease, r := n3.Dhclient(t, to, 0)
		wantLease(t, "dhclient node3 arch 0", lease, r, node3.IP, "undionly.kpxe")
	})
	t.Run("dhclient/known-uefi", func(t *testing.T) {
		lease, r := n3.Dhclient(t, to, 7)
		wantLease(t, "dhclient node3 arch 7", lease, r, node3.IP, "ipxe.efi")
	})

	// Two machines flint does not know: pool addresses, distinct, stable.
	unknown := []*Host{l.AddHost(t, "u1", "52:54:00:cc:00:01"), l.AddHost(t, "u2", "52:54:00:cc:00:02")}
	first := map[string]string{} // MAC -> address
	t.Run("unknown-clients-get-pool-addresses", func(t *testing.T) {
		for i, h := range unknown {
			var lease *Lease
			var r Result
			if i == 0 {
				lease, r = h.Udhcpc(t, to)
			} else {
				lease, r = h.Udhcpc(t, to, udhcpcPXE(7)...) // discover_unknown: a netboot client gets ipxe.efi
			}
			if lease == nil {
				t.Fatalf("unknown client %s got no lease\n%s", h.MAC, r)
			}
			if !inPool(lease.IP) {
				t.Errorf("unknown client %s got %s, want an address of the pool %s-%s", h.MAC, lease.IP, poolStart, poolEnd)
			}
			if lease.Router != routerIP {
				t.Errorf("unknown client %s: router %q, want %s", h.MAC, lease.Router, routerIP)
			}
			want := ""
			if i == 1 {
				want = "ipxe.efi"
			}
			if lease.BootFile != want {
				t.Errorf("unknown client %s: boot file %q, want %q", h.MAC, lease.BootFile, want)
			}
			first[h.MAC] = lease.IP
		}
		if a, b := first[unknown[0].MAC], first[unknown[1].MAC]; a == b {
			t.Errorf("both unknown clients got %s", a)
		}
		// Asking again (no restart) gives the same address.
		for _, h := range unknown {
			lease, r := h.Udhcpc(t, to)
			if lease == nil || lease.IP != first[h.MAC] {
				t.Errorf("unknown client %s asked again: got %v, want %s\n%s", h.MAC, lease, first[h.MAC], r)
			}
		}
	})

	t.Run("reservations-and-leases-not-stolen", func(t *testing.T) {
		// udhcpc -r asks for a specific address (option 50): someone else's must not be given.
		u := unknown[1]
		for _, want := range []string{node1.IP, first[unknown[0].MAC]} {
			lease, r := u.Udhcpc(t, to, "-r", want)
			if lease == nil {
				t.Errorf("%s asking for %s got no lease at all\n%s", u.MAC, want, r)
				continue
			}
			if lease.IP != first[u.MAC] {
				t.Errorf("%s asked for %s (held by another machine) and got %s; want its own %s", u.MAC, want, lease.IP, first[u.MAC])
			}
		}
	})

	t.Run("api-leases", func(t *testing.T) {
		code, r := f.API(l, "/api/v1/leases")
		if code != "200" {
			t.Fatalf("GET /api/v1/leases: status %s\n%s", code, r)
		}
		for _, ip := range []string{first[unknown[0].MAC], first[unknown[1].MAC], node1.IP, node3.IP} {
			if ip != "" && !strings.Contains(r.Stdout, `"`+ip+`"`) {
				t.Errorf("/api/v1/leases does not list %s:\n%s", ip, r.Stdout)
			}
		}
	})

	wantMachines := func(t *testing.T, how string, ms []machineRecord) {
		t.Helper()
		byMAC := map[string]machineRecord{}
		for _, m := range ms {
			byMAC[m.MAC] = m
		}
		for _, k := range []machine{node1, node2, node3} {
			m, ok := byMAC[k.MAC]
			switch {
			case !ok:
				t.Errorf("%s: known machine %s missing", how, k.MAC)
			case !m.Known || m.Hostname != k.Hostname || m.Role != k.Role:
				t.Errorf("%s: %s = %+v, want known %s %s", how, k.MAC, m, k.Hostname, k.Role)
			case m.IP != k.IP:
				t.Errorf("%s: %s has IP %q, want %s (it was handed out)", how, k.MAC, m.IP, k.IP)
			}
		}
		for _, h := range unknown {
			m, ok := byMAC[h.MAC]
			switch {
			case !ok:
				t.Errorf("%s: discovered machine %s missing", how, h.MAC)
			case m.Known:
				t.Errorf("%s: %s is marked known", how, h.MAC)
			case m.IP != first[h.MAC]:
				t.Errorf("%s: %s has IP %q, want %s", how, h.MAC, m.IP, first[h.MAC])
			}
		}
	}
	t.Run("machines-cli-while-serving", func(t *testing.T) {
		// The database is locked by serve: the CLI must ask the server (in its namespace).
		ms, r := flintMachines(t, l, l.Srv, data)
		wantMachines(t, "flint machines (serve running)", ms)
		txt := l.Run(l.Srv, 15*time.Second, flintBin, "machines", "--data", data)
		wantMachineTable(t, txt, map[string][]string{
			node1.MAC:      {node1.Hostname, node1.IP, "ready"},
			unknown[0].MAC: {first[unknown[0].MAC], "discovered"},
			unknown[1].MAC: {first[unknown[1].MAC], "discovered"},
		})
		_ = r
	})

	t.Run("leases-survive-sigkill", func(t *testing.T) {
		f.Kill(t)
		f = l.StartFlint(t, cfg, data)
		for _, h := range unknown {
			lease, r := h.Udhcpc(t, to)
			if lease == nil {
				t.Errorf("after restart, %s got no lease\n%s", h.MAC, r)
				continue
			}
			if lease.IP != first[h.MAC] {
				t.Errorf("after kill -9 and restart, %s got %s, want its old address %s", h.MAC, lease.IP, first[h.MAC])
			}
		}
		lease, r := n1.Udhcpc(t, to, udhcpcPXE(0)...)
		wantLease(t, "udhcpc node1 after restart", lease, r, node1.IP, "undionly.kpxe")
		// A new unknown machine must not get an address the old ones hold.
		u3 := l.AddHost(t, "u3", "52:54:00:cc:00:03")
		lease, r = u3.Udhcpc(t, to)
		if lease == nil {
			t.Fatalf("new unknown client got no lease after restart\n%s", r)
		}
		if !inPool(lease.IP) || lease.IP == first[unknown[0].MAC] || lease.IP == first[unknown[1].MAC] {
			t.Errorf("new unknown client got %s; pool %s-%s minus %v", lease.IP, poolStart, poolEnd, first)
		}
	})

	t.Run("machines-cli-after-stop", func(t *testing.T) {
		f.Stop(t)
		ms, _ := flintMachines(t, l, "", data)
		wantMachines(t, "flint machines (serve stopped)", ms)
		txt := l.Run("", 15*time.Second, flintBin, "machines", "--data", data)
		wantMachineTable(t, txt, map[string][]string{
			node1.MAC:      {node1.Hostname, node1.IP, "ready"},
			unknown[0].MAC: {first[unknown[0].MAC], "discovered"},
		})
	})
}

// machineRecord is the part of `flint machines --json` the tests check.
type machineRecord struct {
	MAC        string `json:"mac"`
	Known      bool   `json:"known"`
	Hostname   string `json:"hostname"`
	Role       string `json:"role"`
	IP         string `json:"ip"`
	ReservedIP string `json:"reserved_ip"`
	Arch       string `json:"arch"`
	LastEvent  string `json:"last_event"`
}

func flintMachines(t *testing.T, l *Lab, ns, data string) ([]machineRecord, Result) {
	t.Helper()
	r := l.Run(ns, 15*time.Second, flintBin, "machines", "--data", data, "--json")
	if r.Err != nil {
		t.Fatalf("flint machines --json failed\n%s", r)
	}
	var ms []machineRecord
	if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil {
		t.Fatalf("flint machines --json: not a JSON array of machines: %v\n%s", err, r)
	}
	return ms, r
}

// wantMachineTable checks that the row of each MAC in the table mentions the given words.
func wantMachineTable(t *testing.T, r Result, rows map[string][]string) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("flint machines failed\n%s", r)
		return
	}
	lines := strings.Split(r.Stdout, "\n")
	for mac, words := range rows {
		row := ""
		for _, ln := range lines {
			if strings.Contains(ln, mac) {
				row = ln
			}
		}
		if row == "" {
			t.Errorf("flint machines lists no row for %s:\n%s", mac, r.Stdout)
			continue
		}
		fields := strings.Fields(row)
		for _, w := range words {
			found := false
			for _, f := range fields {
				if f == w {
					found = true
				}
			}
			if !found {
				t.Errorf("flint machines row of %s lacks %q: %q", mac, w, row)
			}
		}
	}
}

// TestDHCPStorm: 20 machines switched on at once each get their own pool address.
func TestDHCPStorm(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "udhcpc", "curl")
	l := NewLab(t)
	cfg := l.WriteConfig(t, siteConfig{Mode: "full", Pool: true, Machines: []machine{node1}})
	f := l.StartFlint(t, cfg, filepath.Join(l.Dir, "data"))

	const n = 20
	hosts := make([]*Host, n)
	for i := range hosts {
		hosts[i] = l.AddHost(t, fmt.Sprintf("s%02d", i), fmt.Sprintf("52:54:00:dd:00:%02x", i+1))
	}
	leases := make([]*Lease, n)
	results := make([]Result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// More retries than a single client needs: 20 of them share 2 CPUs.
			leases[i], results[i] = h.Udhcpc(t, 60*time.Second, "-t", "10")
		}()
	}
	wg.Wait()
	t.Logf("%d clients got their leases in %v", n, time.Since(start).Round(time.Millisecond))

	owner := map[string]string{}
	var got []string
	for i, h := range hosts {
		lease := leases[i]
		if lease == nil {
			t.Errorf("client %s got no lease\n%s", h.MAC, results[i])
			continue
		}
		if !inPool(lease.IP) {
			t.Errorf("client %s got %s, outside the pool %s-%s", h.MAC, lease.IP, poolStart, poolEnd)
		}
		if prev, dup := owner[lease.IP]; dup {
			t.Errorf("address %s handed to both %s and %s", lease.IP, prev, h.MAC)
		}
		owner[lease.IP] = h.MAC
		got = append(got, lease.IP)
	}
	sort.Strings(got)
	t.Logf("addresses: %s", strings.Join(got, " "))
	if len(owner) != n {
		t.Errorf("%d distinct addresses for %d clients", len(owner), n)
	}
	// Every lease is on record with its owner.
	recorded, err := f.Leases(l)
	if err != nil {
		t.Fatal(err)
	}
	for ip, mac := range owner {
		if recorded[ip] != mac {
			t.Errorf("/api/v1/leases: %s belongs to %q, want %s", ip, recorded[ip], mac)
		}
	}
}
