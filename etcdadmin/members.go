package etcdadmin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Member is one etcd member as the cluster lists it, with the result of a
// health check.
type Member struct {
	ID         uint64
	Name       string // empty until the member has started once
	PeerURLs   []string
	ClientURLs []string
	Learner    bool

	// Started: the member has joined at least once (it has a name and client
	// URLs). A member that was added but never joined is not started. A
	// started member stays started when its process dies.
	Started bool
	// Healthy: at one of its client URLs the member answered a status
	// request as itself, reporting a leader and no alarm, and then a
	// linearizable read, all within checkTimeout; and it is a voting member.
	Healthy bool
	// Problem says why the member is not healthy; empty when it is.
	Problem string

	// From the member's status; zero when it did not answer one as itself.
	Endpoint  string // the client URL that answered (the healthy one if any)
	Leader    bool   // the member reports itself as the leader
	LeaderID  uint64 // the leader the member follows (its own ID when Leader)
	RaftIndex uint64 // the member's committed raft index
	RaftTerm  uint64
	Version   string
}

// IDHex is the member ID the way etcdctl prints it.
func (m Member) IDHex() string { return fmt.Sprintf("%x", m.ID) }

// String names the member for messages: "nuc2 (8e9e05c52164694d, https://10.0.0.12:2380)".
func (m Member) String() string {
	name := m.Name
	if name == "" {
		name = "unstarted member"
	}
	return fmt.Sprintf("%s (%s, %s)", name, m.IDHex(), strings.Join(m.PeerURLs, ","))
}

// Members lists every member and checks each started one. Checks run in
// parallel, so the call takes at most about checkTimeout even with members
// down. It fails only when the member list itself cannot be read.
func (a *Admin) Members(ctx context.Context) ([]Member, error) {
	resp, err := a.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcdadmin: list members via %v: %w (is any member reachable with the admin certificate?)", a.cli.Endpoints(), err)
	}
	members := make([]Member, len(resp.Members))
	var wg sync.WaitGroup
	for i, pm := range resp.Members {
		members[i] = memberFromProto(pm)
		if members[i].Started {
			wg.Go(func() { a.check(ctx, &members[i]) })
		} else {
			members[i].Problem = "added but never started: no node has joined with this peer URL yet"
		}
	}
	wg.Wait()
	sortMembers(members)
	return members, nil
}

func memberFromProto(pm *etcdserverpb.Member) Member {
	return Member{
		ID:         pm.ID,
		Name:       pm.Name,
		PeerURLs:   slices.Clone(pm.PeerURLs),
		ClientURLs: slices.Clone(pm.ClientURLs),
		Learner:    pm.IsLearner,
		Started:    pm.Name != "" && len(pm.ClientURLs) > 0,
	}
}

// sortMembers orders by name, unstarted (nameless) members last, then by ID.
func sortMembers(members []Member) {
	slices.SortFunc(members, func(x, y Member) int {
		if (x.Name == "") != (y.Name == "") {
			if x.Name == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.ID, y.ID))
	})
}

// check fills in the status and health of a started member, asking each of
// its client URLs in parallel: the member is healthy if it is healthy at any
// of them.
func (a *Admin) check(ctx context.Context, m *Member) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	probes := make([]probe, len(m.ClientURLs))
	var wg sync.WaitGroup
	for i, endpoint := range m.ClientURLs {
		wg.Go(func() { probes[i] = a.probe(ctx, *m, endpoint) })
	}
	wg.Wait()

	// The healthy answer if there is one, else the first that answered as
	// the member, else the first.
	best := slices.IndexFunc(probes, func(p probe) bool { return p.healthy })
	if best < 0 {
		best = max(0, slices.IndexFunc(probes, func(p probe) bool { return p.answered }))
	}
	p := probes[best]
	if p.answered {
		m.Endpoint, m.LeaderID, m.RaftIndex, m.RaftTerm, m.Version = p.endpoint, p.leaderID, p.raftIndex, p.raftTerm, p.version
		m.Leader = p.leaderID != 0 && p.leaderID == m.ID
	}
	m.Healthy = p.healthy
	if !m.Healthy {
		problems := make([]string, len(probes))
		for i, p := range probes {
			problems[i] = p.problem
		}
		m.Problem = strings.Join(problems, "; ")
	}
}

// probe is what one client URL of a member said.
type probe struct {
	endpoint string
	answered bool // a status came back, from this member
	healthy  bool
	problem  string // why not healthy

	leaderID, raftIndex, raftTerm uint64
	version                       string
}

// probe checks member m at one of its client URLs. It talks to that URL
// alone (not through the load-balanced client) so that the answer is about
// this member.
func (a *Admin) probe(ctx context.Context, m Member, endpoint string) probe {
	p := probe{endpoint: endpoint}
	// A plain TCP connect first: the etcd client retries a refused connection
	// until the timeout and then only says "deadline exceeded".
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			p.problem = fmt.Sprintf("cannot reach %s: %v", endpoint, err)
			return p
		}
		conn.Close()
	}
	cli, err := newClient([]string{endpoint}, a.tls)
	if err != nil {
		p.problem = fmt.Sprintf("cannot build a client for %s: %v", endpoint, err)
		return p
	}
	defer cli.Close()

	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		p.problem = fmt.Sprintf("no status from %s: %v", endpoint, err)
		return p
	}
	if st.Header.MemberId != m.ID {
		// Two members advertising the same client URL, or a stale address.
		p.problem = fmt.Sprintf("%s answers as member %x, not %x: fix the member's advertised client URL", endpoint, st.Header.MemberId, m.ID)
		return p
	}
	p.answered = true
	p.leaderID, p.raftIndex, p.raftTerm, p.version = st.Leader, st.RaftIndex, st.RaftTerm, st.Version

	switch {
	case m.Learner:
		// flint never adds learners; one means someone else is mid-change.
		p.problem = "is a learner (not a voting member): promote or remove it with etcdctl first"
		return p
	case len(st.Errors) > 0:
		p.problem = "reports errors/alarms: " + strings.Join(st.Errors, "; ")
		return p
	case st.Leader == 0:
		p.problem = fmt.Sprintf("has no leader (asked at %s)", endpoint)
		return p
	}

	// A linearizable read goes through the leader (ReadIndex): it succeeds only
	// if this member is connected to a leader that still has quorum, and only
	// once the member has applied everything the leader had committed when
	// the read began, i.e. it has caught up. The key need not exist;
	// "permission denied" still proves the path works.
	_, err = cli.Get(ctx, "health")
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		p.problem = fmt.Sprintf("linearizable read on %s failed: %v", endpoint, err)
		return p
	}
	// The read may have waited for an election: the status from before it
	// can name a leader that died meanwhile, which would count as evidence
	// that the dead member runs (aliveEvidence). The leader and raft state
	// that go with a healthy member are the ones after its read.
	st, err = cli.Status(ctx, endpoint)
	switch {
	case err != nil:
		p.problem = fmt.Sprintf("no status from %s after its read: %v", endpoint, err)
		return p
	case st.Header.MemberId != m.ID || st.Leader == 0:
		p.problem = fmt.Sprintf("%s lost its leader or its identity during the check (member %x, leader %x)", endpoint, st.Header.MemberId, st.Leader)
		return p
	}
	p.leaderID, p.raftIndex, p.raftTerm, p.version = st.Leader, st.RaftIndex, st.RaftTerm, st.Version
	p.healthy = true
	return p
}
