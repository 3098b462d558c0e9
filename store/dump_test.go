package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// fillState writes a state with every kind of record and field through
// the Store API, as flint serve would.
func fillState(t *testing.T, st Store) {
	t.Helper()
	zone := time.FixedZone("CET", 3600)
	at := time.Date(2026, 11, 30, 7, 0, 0, 123456789, zone)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.SyncConfig([]KnownMachine{
		{MAC: "52:54:00:00:00:01", Hostname: "nuc1", Role: "server", ReservedIP: ip("198.18.0.11")},
		{MAC: "52:54:00:00:00:02", Hostname: "nuc2", Role: "agent"},
	}))
	must(st.PutLease(Lease{IP: ip("198.18.0.100"), MAC: "52:54:00:00:00:02", State: LeaseBound, Hostname: "nuc2", Start: at, Expires: at.Add(time.Hour)}))
	must(st.PutLease(Lease{IP: ip("198.18.0.9"), State: LeaseDeclined, Start: at, Expires: at.Add(10 * time.Minute)}))
	var ss []Sighting
	for i := range 5 {
		ss = append(ss,
			Sighting{MAC: "52:54:00:00:00:01", At: at.Add(time.Duration(i) * time.Second), Arch: "x86-64 UEFI", VendorClass: "PXEClient:Arch:00007", IP: ip("198.18.0.11"), Event: "dhcp ACK", Detail: fmt.Sprint("lease ", i), DHCPAddr: true},
			Sighting{MAC: "02:00:00:00:00:99", At: at.Add(time.Duration(i) * time.Second), UserClass: "iPXE", Event: "http script"})
	}
	// Two events at the same instant keep their order.
	ss = append(ss, Sighting{MAC: "52:54:00:00:00:01", At: at.Add(9 * time.Second), Event: "tftp ipxe.efi"},
		Sighting{MAC: "52:54:00:00:00:01", At: at.Add(9 * time.Second), Event: "http script"})
	must(st.RecordSightings(ss))
	// A timeline without a machine record (a refused request).
	must(st.RecordSighting(Sighting{MAC: "02:00:00:00:00:aa", At: at, Event: "http refused", TimelineOnly: true, IP: ip("198.18.0.200")}))
	_, err := st.UpdateMachine("52:54:00:00:00:01", func(m *Machine) error {
		m.State, m.StateChanged, m.EtcdRejoin, m.Stuck = StateInstalled, at.Add(time.Minute), true, true
		m.Boot = Boot{SpentBefore: at, Nonce: "n0nce", Delivered: at.Add(30 * time.Second), DeliveredTo: ip("198.18.0.11"), InstalledSpent: true}
		return nil
	})
	must(err)
	_, err = st.ClaimRebuild("52:54:00:00:00:01", func(m *Machine) error { m.State, m.Rebuilding = StateReprovision, true; return nil })
	must(err)
}

func dump(t *testing.T, p Porter) ([]byte, Summary) {
	t.Helper()
	var b bytes.Buffer
	sum, err := p.Dump(t.Context(), &b)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), sum
}

func load(t *testing.T, p Porter, b []byte) Summary {
	t.Helper()
	sum, err := p.Load(t.Context(), bytes.NewReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Complete(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// sameState compares what the Store API says of two stores.
func sameState(t *testing.T, a, b Store, macs ...string) {
	t.Helper()
	ma, err1 := a.Machines()
	mb, err2 := b.Machines()
	la, err3 := a.Leases()
	lb, err4 := b.Leases()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ma, mb) || !reflect.DeepEqual(la, lb) {
		t.Fatalf("machines or leases differ:\n%+v\n%+v\n%+v\n%+v", ma, mb, la, lb)
	}
	for _, mac := range macs {
		ea, err1 := a.Events(mac)
		eb, err2 := b.Events(mac)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if len(ea) == 0 || !reflect.DeepEqual(ea, eb) {
			t.Fatalf("timeline of %s differs:\n%+v\n%+v", mac, ea, eb)
		}
	}
}

// TestDumpLoad: bolt -> etcd -> bolt keeps the state byte for byte (the
// dump stream) and field for field (the Store API), the loaded stores work
// on (indexes and sequences rebuilt), and a Load cut short leaves a store
// that refuses to open.
func TestDumpLoad(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	macs := []string{"52:54:00:00:00:01", "02:00:00:00:00:99", "02:00:00:00:00:aa"}
	src, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fillState(t, src)
	first, sum := dump(t, src)
	t.Logf("bolt dump: %v, rebuild %s, sha256 %s:\n%s", sum.Counts, sum.Rebuild, sum.SHA256, first)
	if want := (Counts{Leases: 2, Machines: 3, Events: 13}); sum.Counts != want || sum.Rebuild != "52:54:00:00:00:01" {
		t.Fatalf("dump holds %v rebuild %q, want %v", sum.Counts, sum.Rebuild, want)
	}

	et := openEtcd(t, cl, "/flint/migrate-a/")
	// State outside the dump's families stays (the PKI or claims may live there).
	if _, err := cl.Client().Put(t.Context(), "/flint/migrate-a/pki/ca.crt", "keep"); err != nil {
		t.Fatal(err)
	}
	if got := load(t, et, first); got != sum {
		t.Fatalf("etcd Load read %+v, bolt Dump wrote %+v", got, sum)
	}
	second, sum2 := dump(t, et)
	if !bytes.Equal(first, second) || sum2 != sum {
		t.Fatalf("etcd dump after loading the bolt dump differs:\n%s\n%s", first, second)
	}
	sameState(t, src, et, macs...)
	if r, err := cl.Client().Get(t.Context(), "/flint/migrate-a/pki/ca.crt"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("Load deleted a key outside the state: %v %v", r, err)
	}
	t.Log("bolt -> etcd: dumps byte-identical, machines, leases and timelines equal")

	dst, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	load(t, dst, second)
	third, sum3 := dump(t, dst)
	if !bytes.Equal(first, third) || sum3 != sum {
		t.Fatalf("bolt dump after loading the etcd dump differs:\n%s\n%s", first, third)
	}
	sameState(t, src, dst, macs...)
	t.Log("etcd -> bolt: dumps byte-identical, machines, leases and timelines equal")

	t.Run("loaded stores work on", func(t *testing.T) {
		at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		for _, st := range []Store{src, et, dst} {
			if err := st.RecordSighting(Sighting{MAC: "02:00:00:00:00:99", At: at, Event: "dhcp DISCOVER"}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.UpdateMachine("52:54:00:00:00:02", func(m *Machine) error { m.Arch = "x86-64 UEFI"; return nil }); err != nil {
				t.Fatal(err)
			}
			// The rebuild slot came along: another machine cannot claim it.
			if _, err := st.ClaimRebuild("52:54:00:00:00:02", func(m *Machine) error { return nil }); !errors.Is(err, ErrRebuildBusy) {
				t.Fatalf("claim beside the loaded holder: %v", err)
			}
		}
		sameState(t, src, et, macs...)
		sameState(t, src, dst, macs...)
		a, _ := dump(t, src)
		b, _ := dump(t, et)
		c, _ := dump(t, dst)
		if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
			t.Fatalf("after the same writes the dumps differ:\n%s\n%s\n%s", a, b, c)
		}
	})

	t.Run("a Load cut short leaves the store refusing to open", func(t *testing.T) {
		// Ctrl-C after the first commit: the reader cancels on its first read.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		dir := t.TempDir()
		b, err := OpenBolt(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Load(ctx, cancelReader{bytes.NewReader(first), cancel}, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("bolt Load with a cancelled context: %v", err)
		}
		b.Close()
		if _, err := OpenBolt(dir, true); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("bolt after an unfinished Load opened: %v", err)
		}
		ctx, cancel = context.WithCancel(t.Context())
		defer cancel()
		e := openEtcd(t, cl, "/flint/migrate-b/")
		if _, err := e.Load(ctx, cancelReader{bytes.NewReader(first), cancel}, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("etcd Load with a cancelled context: %v", err)
		}
		if _, err := OpenEtcd(EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: "/flint/migrate-b/"}); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("etcd after an unfinished Load opened: %v", err)
		} else {
			t.Logf("open after an unfinished Load: %v", err)
		}
		// A truncated dump is refused, and leaves the mark as well.
		cut := first[:bytes.LastIndex(first[:len(first)-1], []byte("\n"))+1]
		if _, err := e.Load(t.Context(), bytes.NewReader(cut), nil); err == nil || !strings.Contains(err.Error(), "without its end line") {
			t.Fatalf("Load of a cut dump: %v", err)
		}
		if inc, err := e.Incomplete(); err != nil || !inc {
			t.Fatalf("incomplete after a cut dump: %v %v", inc, err)
		}
	})
}

// TestDumpLoadLarge measures a migration of 10,000 machines with three
// timeline events each, bolt -> etcd -> bolt.
func TestDumpLoadLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	cl := etcdtest.Start(t, 1)
	const n = 10000
	src, err := OpenBolt(t.TempDir(), false, WithLimits(Limits{Discovered: n}))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	var known []KnownMachine
	for i := range n {
		if i%2 == 0 {
			known = append(known, KnownMachine{MAC: bigMAC(i), Hostname: fmt.Sprint("node", i), Role: "agent"})
		}
	}
	if err := src.SyncConfig(known); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 1000 {
		var ss []Sighting
		for j := i; j < i+1000; j++ {
			for k := range 3 {
				ss = append(ss, Sighting{MAC: bigMAC(j), At: at.Add(time.Duration(j*3+k) * time.Millisecond), Event: "dhcp ACK", IP: netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)})})
			}
		}
		if err := src.RecordSightings(ss); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	start := time.Now()
	sum, err := src.Dump(t.Context(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bolt Dump: %v, %d bytes in %v", sum.Counts, buf.Len(), time.Since(start).Round(time.Millisecond))
	et := openEtcd(t, cl, "/flint/large/")
	start = time.Now()
	calls := 0
	got, err := et.Load(t.Context(), bytes.NewReader(buf.Bytes()), func(Counts) { calls++ })
	if err != nil || got != sum {
		t.Fatalf("etcd Load: %+v %v", got, err)
	}
	t.Logf("etcd Load: %v in %v (%d commits)", got.Counts, time.Since(start).Round(time.Millisecond), calls)
	start = time.Now()
	back, err := et.Dump(t.Context(), io.Discard)
	if err != nil || back != sum {
		t.Fatalf("etcd Dump: %+v %v, want %+v", back, err, sum)
	}
	t.Logf("etcd Dump (verification): %v in %v, sha256 equal", back.Counts, time.Since(start).Round(time.Millisecond))
	dst, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var buf2 bytes.Buffer
	if _, err := et.Dump(t.Context(), &buf2); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if got, err := dst.Load(t.Context(), &buf2, nil); err != nil || got != sum {
		t.Fatalf("bolt Load: %+v %v", got, err)
	}
	t.Logf("bolt Load: %v in %v", sum.Counts, time.Since(start).Round(time.Millisecond))
}

func bigMAC(i int) string { return fmt.Sprintf("52:54:01:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff) }

// cancelReader cancels a context when it is first read, as a Ctrl-C would.
type cancelReader struct {
	r      io.Reader
	cancel func()
}

func (c cancelReader) Read(p []byte) (int, error) { c.cancel(); return c.r.Read(p) }
