package events

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flint-boot/flint/store"
)

func TestRecordFromIPAttributesToLastSeenMAC(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ip := netip.MustParseAddr("198.18.0.60")
	// A lease from before a restart is enough to attribute a TFTP transfer.
	if err := st.PutLease(store.Lease{IP: ip, MAC: "52:54:00:00:00:01", State: store.LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := New(st, Options{}, nil)
	r.RecordFromIP(netip.MustParseAddr("::ffff:198.18.0.60"), "tftp ipxe.efi", "850528 bytes")
	r.RecordFromIP(netip.MustParseAddr("198.18.0.99"), "tftp ipxe.efi", "") // nobody: dropped

	// The address moves to another machine: later events follow it.
	if err := r.RecordSighting(store.Sighting{MAC: "52:54:00:00:00:02", At: time.Now(), IP: ip, Event: "dhcp ACK"}); err != nil {
		t.Fatal(err)
	}
	r.RecordFromIP(ip, "http asset flatcar/kernel", "")

	ev1, _ := st.Events("52:54:00:00:00:01")
	if len(ev1) != 1 || ev1[0].Event != "tftp ipxe.efi" || ev1[0].Detail != "850528 bytes" || ev1[0].IP != ip {
		t.Fatalf("first machine's timeline = %+v", ev1)
	}
	ev2, _ := st.Events("52:54:00:00:00:02")
	if len(ev2) != 2 || ev2[1].Event != "http asset flatcar/kernel" {
		t.Fatalf("second machine's timeline = %+v", ev2)
	}
	if ms, _ := st.Machines(); len(ms) != 2 {
		t.Fatalf("unattributed event created a machine: %+v", ms)
	}
}
