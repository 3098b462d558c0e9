package etcdadmin

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
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

// started is a member that joined once. A healthy one answered as itself,
// following n1 (ID 1) like the rest of the cluster; an unhealthy one did not
// answer at all.
func started(id uint64, name, peerURL string, healthy bool) Member {
	m := Member{ID: id, Name: name, PeerURLs: []string{peerURL}, ClientURLs: []string{"https://" + name + ":2379"}, Started: true, Healthy: healthy}
	if healthy {
		m.Endpoint, m.LeaderID, m.Leader, m.RaftTerm, m.RaftIndex = m.ClientURLs[0], 1, id == 1, 2, 5000
	} else {
		m.Problem = "down"
	}
	return m
}

// answering is a member that answered a status as itself, following leader
// in term at raft index, but failed the rest of the check.
func answering(id uint64, name, peerURL string, leader, term, index uint64) Member {
	m := started(id, name, peerURL, false)
	m.Problem = "linearizable read failed"
	m.Endpoint, m.LeaderID, m.Leader, m.RaftTerm, m.RaftIndex = m.ClientURLs[0], leader, leader == id, term, index
	return m
}

// following returns m following leader.
func following(m Member, leader uint64) Member {
	m.LeaderID, m.Leader = leader, leader == m.ID
	return m
}

func unstarted(id uint64, peerURL string) Member {
	return Member{ID: id, PeerURLs: []string{peerURL}, Problem: "never started"}
}

func TestPlanRejoin(t *testing.T) {
	const (
		replace = iota // the plan goes ahead
		quorum         // *QuorumError
		healthy        // *MemberHealthyError
	)
	n1, n3 := started(1, "n1", url1, true), started(3, "n3", url3, true)
	n2down := started(2, "n2", url2, false)
	tests := []struct {
		name        string
		peerURL     string // url2 unless set
		members     []Member
		want        int
		wantRemove  []uint64
		wantPending uint64   // 0: none
		unhealthy   []string // quorum: the members named unhealthy
		refused     uint64   // healthy: the member refused
		endpoint    string   // healthy: where it answers
		evidence    []string // healthy: substrings of the evidence
	}{
		{
			name:       "wiped member is removed and re-added",
			members:    []Member{n1, n2down, n3},
			wantRemove: []uint64{2},
		},
		{
			name:        "retry after the add: nothing to remove or add",
			members:     []Member{n1, unstarted(4, url2), n3},
			wantPending: 4,
		},
		{
			name:    "retry after the remove only: just add",
			members: []Member{n1, n3},
		},
		{
			name:       "node comes back with a new IP: old member found by name",
			members:    []Member{n1, started(2, "n2", "https://10.0.0.99:2380", false), n3},
			wantRemove: []uint64{2},
		},
		{
			name:       "another name on the peer URL is the old incarnation too",
			members:    []Member{n1, started(2, "old-n2", url2, false), n3},
			wantRemove: []uint64{2},
		},
		{
			name:      "one other member down: 1 healthy of 3",
			members:   []Member{n1, n2down, started(3, "n3", url3, false)},
			want:      quorum,
			unhealthy: []string{"n3"},
		},
		{
			name:      "an unstarted member for another node blocks",
			members:   []Member{n1, n2down, n3, unstarted(5, "https://10.0.0.14:2380")},
			want:      quorum,
			unhealthy: []string{""},
		},
		{
			name:    "two-member cluster cannot rebuild in place",
			members: []Member{n1, n2down},
			want:    quorum,
		},
		{
			name:    "single member cannot rebuild in place",
			members: []Member{n2down},
			want:    quorum,
		},
		{
			name: "five members, all others healthy",
			members: []Member{n1, n2down, n3,
				started(4, "n4", "https://10.0.0.14:2380", true), started(5, "n5", "https://10.0.0.15:2380", true)},
			wantRemove: []uint64{2},
		},

		// A healthy member is never replaced, whoever asks.
		{
			name:     "healthy old member is refused",
			members:  []Member{n1, started(2, "n2", url2, true), n3},
			want:     healthy,
			refused:  2,
			endpoint: "https://n2:2379",
			evidence: []string{"it answered a linearizable read at https://n2:2379"},
		},
		{
			name:     "healthy old member that leads: both reasons",
			members:  []Member{following(n1, 2), following(started(2, "n2", url2, true), 2), following(n3, 2)},
			want:     healthy,
			refused:  2,
			endpoint: "https://n2:2379",
			evidence: []string{"linearizable read at https://n2:2379", "n1 and n3 follow it as their leader"},
		},
		{
			name:     "healthy old member is refused before the quorum question",
			members:  []Member{n1, started(2, "n2", url2, true), started(3, "n3", url3, false)},
			want:     healthy,
			refused:  2,
			endpoint: "https://n2:2379",
		},
		{
			name:     "flint cannot reach it but the others follow it as leader",
			members:  []Member{following(n1, 2), n2down, following(n3, 2)},
			want:     healthy,
			refused:  2,
			endpoint: url2,
			evidence: []string{"n1 and n3 follow it as their leader"},
		},
		{
			name:      "an unhealthy member's view of the leader does not count",
			members:   []Member{n1, n2down, following(started(3, "n3", url3, false), 2)},
			want:      quorum,
			unhealthy: []string{"n3"},
		},
		{
			name:     "answers in step with the others though its read failed",
			members:  []Member{n1, answering(2, "n2", url2, 1, 2, 5000-inStepLag), n3},
			want:     healthy,
			refused:  2,
			endpoint: "https://n2:2379",
			evidence: []string{fmt.Sprintf("it follows leader 1 in term 2 at raft index %d, in step with n1 at 5000, n3 at 5000", 5000-inStepLag)},
		},
		{
			name:       "answers but fell behind: confirmed down",
			members:    []Member{n1, answering(2, "n2", url2, 1, 2, 5000-inStepLag-1), n3},
			wantRemove: []uint64{2},
		},
		{
			name:       "answers from an old term: confirmed down",
			members:    []Member{n1, answering(2, "n2", url2, 1, 1, 5000), n3},
			wantRemove: []uint64{2},
		},
		{
			name:       "answers without a leader: confirmed down",
			members:    []Member{n1, answering(2, "n2", url2, 0, 2, 5000), n3},
			wantRemove: []uint64{2},
		},
		{
			name:     "healthy member found by name at a new IP is refused",
			peerURL:  "https://10.0.0.99:2380",
			members:  []Member{n1, started(2, "n2", url2, true), n3},
			want:     healthy,
			refused:  2,
			endpoint: "https://n2:2379",
		},
		{
			name:     "healthy member on the peer URL under another name is refused",
			members:  []Member{n1, started(2, "old-n2", url2, true), n3},
			want:     healthy,
			refused:  2,
			endpoint: "https://old-n2:2379",
		},
		{
			name:     "another member's peer URL: that healthy member is refused",
			peerURL:  url3,
			members:  []Member{n1, n2down, n3, started(4, "n4", "https://10.0.0.14:2380", true)},
			want:     healthy,
			refused:  3,
			endpoint: "https://n3:2379",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peerURL := cmp.Or(tt.peerURL, url2)
			plan, err := planRejoin(tt.members, "n2", peerURL)
			switch tt.want {
			case quorum:
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
			case healthy:
				he, ok := errors.AsType[*MemberHealthyError](err)
				if !errors.Is(err, ErrMemberHealthy) || !ok || errors.Is(err, ErrQuorum) {
					t.Fatalf("err = %v, want a *MemberHealthyError matching ErrMemberHealthy (only)", err)
				}
				if he.Member.ID != tt.refused || he.Endpoint != tt.endpoint || he.Name != "n2" {
					t.Errorf("refused %s at %q for %q, want member %d at %q for n2", he.Member, he.Endpoint, he.Name, tt.refused, tt.endpoint)
				}
				for _, want := range tt.evidence {
					if !slices.ContainsFunc(he.Evidence, func(e string) bool { return strings.Contains(e, want) }) {
						t.Errorf("evidence %q lacks %q", he.Evidence, want)
					}
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
			if !slices.Equal(remove, tt.wantRemove) {
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

func TestMemberHealthyErrorMessage(t *testing.T) {
	_, err := planRejoin([]Member{following(started(1, "n1", url1, true), 2), started(2, "n2", url2, false), following(started(3, "n3", url3, true), 2)}, "n2", url2)
	msg := err.Error()
	for _, want := range []string{
		`rebuilding "n2" would replace member n2 (2, ` + url2 + ")",
		"n1 and n3 follow it as their leader",
		"a running, healthy member is never replaced: if this node really was wiped, its old process is still answering at " + url2 + "; stop it first",
		"nothing was changed",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

func TestQuorumErrorMessage(t *testing.T) {
	_, err := planRejoin([]Member{started(1, "n1", url1, true), started(2, "n2", url2, false), started(3, "n3", url3, false)}, "n2", url2)
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
