package etcdadmin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/pki"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

const (
	url1 = "https://10.0.0.11:2380"
	url2 = "https://10.0.0.12:2380"
	url3 = "https://10.0.0.13:2380"
)

func started(id uint64, name, peerURL string, healthy bool) Member {
	m := Member{ID: id, Name: name, PeerURLs: []string{peerURL}, ClientURLs: []string{"https://x:2379"}, Started: true, Healthy: healthy}
	if !healthy {
		m.Problem = "down"
	}
	return m
}

func unstarted(id uint64, peerURL string) Member {
	return Member{ID: id, PeerURLs: []string{peerURL}, Problem: "never started"}
}

func TestPlanRejoin(t *testing.T) {
	tests := []struct {
		name        string
		members     []Member
		wantRemove  []uint64
		wantPending uint64 // 0: none
		wantQuorum  bool
		unhealthy   []string
	}{
		{
			name:       "wiped member is removed and re-added",
			members:    []Member{started(1, "n1", url1, true), started(2, "n2", url2, false), started(3, "n3", url3, true)},
			wantRemove: []uint64{2},
		},
		{
			name:        "retry after the add: nothing to remove or add",
			members:     []Member{started(1, "n1", url1, true), unstarted(4, url2), started(3, "n3", url3, true)},
			wantPending: 4,
		},
		{
			name:    "retry after the remove only: just add",
			members: []Member{started(1, "n1", url1, true), started(3, "n3", url3, true)},
		},
		{
			name:       "node comes back with a new IP: old member found by name",
			members:    []Member{started(1, "n1", url1, true), started(2, "n2", "https://10.0.0.99:2380", false), started(3, "n3", url3, true)},
			wantRemove: []uint64{2},
		},
		{
			name:       "another name on the peer URL is the old incarnation too",
			members:    []Member{started(1, "n1", url1, true), started(2, "old-n2", url2, true), started(3, "n3", url3, true)},
			wantRemove: []uint64{2},
		},
		{
			name:       "one other member down: 1 healthy of 3",
			members:    []Member{started(1, "n1", url1, true), started(2, "n2", url2, true), started(3, "n3", url3, false)},
			wantQuorum: true,
			unhealthy:  []string{"n3"},
		},
		{
			name:       "an unstarted member for another node blocks",
			members:    []Member{started(1, "n1", url1, true), started(2, "n2", url2, false), started(3, "n3", url3, true), unstarted(5, "https://10.0.0.14:2380")},
			wantQuorum: true,
			unhealthy:  []string{""},
		},
		{
			name:       "two-member cluster cannot rebuild in place",
			members:    []Member{started(1, "n1", url1, true), started(2, "n2", url2, false)},
			wantQuorum: true,
		},
		{
			name:       "single member cannot rebuild in place",
			members:    []Member{started(2, "n2", url2, false)},
			wantQuorum: true,
		},
		{
			name: "five members, all others healthy",
			members: []Member{started(1, "n1", url1, true), started(2, "n2", url2, false), started(3, "n3", url3, true),
				started(4, "n4", "https://10.0.0.14:2380", true), started(5, "n5", "https://10.0.0.15:2380", true)},
			wantRemove: []uint64{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := planRejoin(tt.members, "n2", url2)
			if tt.wantQuorum {
				var qe *QuorumError
				if !errors.Is(err, ErrQuorum) || !errors.As(err, &qe) {
					t.Fatalf("err = %v, want a *QuorumError matching ErrQuorum", err)
				}
				var names []string
				for _, m := range qe.Unhealthy {
					names = append(names, m.Name)
				}
				if strings.Join(names, ",") != strings.Join(tt.unhealthy, ",") {
					t.Errorf("unhealthy = %q, want %q (%v)", names, tt.unhealthy, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var remove []uint64
			for _, m := range plan.remove {
				remove = append(remove, m.ID)
			}
			if len(remove) != len(tt.wantRemove) || (len(remove) > 0 && remove[0] != tt.wantRemove[0]) {
				t.Errorf("remove = %v, want %v", remove, tt.wantRemove)
			}
			var pending uint64
			if plan.pending != nil {
				pending = plan.pending.ID
			}
			if pending != tt.wantPending {
				t.Errorf("pending = %d, want %d", pending, tt.wantPending)
			}
		})
	}
}

func TestQuorumErrorMessage(t *testing.T) {
	_, err := planRejoin([]Member{started(1, "n1", url1, true), started(2, "n2", url2, true), started(3, "n3", url3, false)}, "n2", url2)
	msg := err.Error()
	for _, want := range []string{
		"1 of the other 2 members are healthy",
		`with "n2" removed the cluster has 2 members and needs 2`,
		"3 members need 2",
		"n3 (3, " + url3 + "): down",
		"nothing was changed",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestFormatInitialCluster(t *testing.T) {
	members := []*etcdserverpb.Member{
		{ID: 3, Name: "n3", PeerURLs: []string{url3}},
		{ID: 9, PeerURLs: []string{url2}}, // just added, no name yet
		{ID: 1, Name: "n1", PeerURLs: []string{url1, "https://10.1.0.11:2380"}},
	}
	got, err := formatInitialCluster(members, "n2", url2)
	if err != nil {
		t.Fatal(err)
	}
	want := "n1=" + url1 + ",n1=https://10.1.0.11:2380,n2=" + url2 + ",n3=" + url3
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	if _, err := formatInitialCluster(members[:1], "n2", url2); err == nil {
		t.Error("no error when the new member is missing")
	}
	stranger := append(members, &etcdserverpb.Member{ID: 7, PeerURLs: []string{"https://10.0.0.14:2380"}})
	if _, err := formatInitialCluster(stranger, "n2", url2); err == nil || !strings.Contains(err.Error(), "member remove 7") {
		t.Errorf("unnamed other member: err = %v, want advice to remove it", err)
	}
}

func TestCheckRejoinArgs(t *testing.T) {
	for _, tt := range []struct {
		name, url string
		ok        bool
	}{
		{"n2", url2, true},
		{"n2", "http://10.0.0.12:2380", true},
		{"", url2, false},
		{"n2,n3", url2, false},
		{"n2", "10.0.0.12:2380", false},
		{"n2", "https://10.0.0.12", false},
		{"n2", "https://10.0.0.12:2380/x", false},
		{"n2", url2 + "," + url3, false},
	} {
		if err := checkRejoinArgs(tt.name, tt.url); (err == nil) != tt.ok {
			t.Errorf("checkRejoinArgs(%q, %q) = %v, want ok=%v", tt.name, tt.url, err, tt.ok)
		}
	}
}

func TestTLSConfigFromPKI(t *testing.T) {
	p, err := pki.Open(t.TempDir(), time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := p.Admin()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(p.CACertPEM(), admin.CertPEM, admin.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Errorf("config lacks the client certificate or the CA: %+v", cfg)
	}

	other, err := p.EtcdClient("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TLSConfig(p.CACertPEM(), admin.CertPEM, other.KeyPEM); err == nil {
		t.Error("no error for a certificate with another certificate's key")
	}
	if _, err := TLSConfig([]byte("not pem"), admin.CertPEM, admin.KeyPEM); err == nil {
		t.Error("no error for a CA without certificates")
	}
}
