package etcdadmin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// ErrQuorum means a membership change was refused because the cluster could
// lose quorum during it. Nothing was changed. errors.As with *QuorumError
// gives the details.
var ErrQuorum = errors.New("etcdadmin: not enough healthy etcd members to replace a member without risking quorum")

// QuorumError explains a refusal. It matches ErrQuorum with errors.Is.
type QuorumError struct {
	Name      string   // the member to rebuild
	Size      int      // members once it is back (N)
	Healthy   int      // healthy members other than it
	Unhealthy []Member // the other members that are not healthy

	// Healthy members needed while the node is gone from the cluster (N-1
	// members) and after it has been added back but not yet started (N).
	NeedAfterRemove, NeedAfterAdd int
}

func (e *QuorumError) Unwrap() error { return ErrQuorum }

func (e *QuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: rebuilding %q needs every other member healthy and a majority at each step; ", ErrQuorum, e.Name)
	fmt.Fprintf(&b, "%d of the other %d members are healthy, ", e.Healthy, e.Size-1)
	fmt.Fprintf(&b, "with %q removed the cluster has %d members and needs %d, ", e.Name, e.Size-1, e.NeedAfterRemove)
	fmt.Fprintf(&b, "once it is added back (and until it has started) %d members need %d", e.Size, e.NeedAfterAdd)
	if len(e.Unhealthy) > 0 {
		b.WriteString("; unhealthy: ")
		for i, m := range e.Unhealthy {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", m, m.Problem)
		}
		b.WriteString(". Bring these members back (or remove dead ones with `etcdctl member remove ID`) and retry")
	} else {
		b.WriteString(". A cluster this small cannot rebuild a member in place: add a member first, or restore from a snapshot")
	}
	b.WriteString("; nothing was changed")
	return b.String()
}

// ErrMemberHealthy means PrepareRejoin was refused because the member it
// would replace is running and healthy (see the package comment for what
// counts). Nothing was changed. errors.As with *MemberHealthyError gives the
// details.
var ErrMemberHealthy = errors.New("etcdadmin: refusing to replace a running, healthy etcd member")

// MemberHealthyError explains a refusal. It matches ErrMemberHealthy with
// errors.Is.
type MemberHealthyError struct {
	Name   string // the node PrepareRejoin was asked to rebuild
	Member Member // its old member (started, with its name or peer URL), as checked
	// Endpoint is where the old process answers: the client URL that
	// answered the check, else its peer URL(s), where its peers reach it.
	Endpoint string
	// Evidence says why it counts as running and healthy, one reason each,
	// e.g. "it answered a linearizable read at https://10.0.0.12:2379".
	Evidence []string
}

func (e *MemberHealthyError) Unwrap() error { return ErrMemberHealthy }

func (e *MemberHealthyError) Error() string {
	return fmt.Sprintf("%v: rebuilding %q would replace member %s, and "+
		"a running, healthy member is never replaced: if this node really was wiped, its old process is still answering at %s; "+
		"stop it first (or find the machine that answers there), then retry; nothing was changed. It counts as healthy because %s",
		ErrMemberHealthy, e.Name, e.Member, e.Endpoint, strings.Join(e.Evidence, "; "))
}

// inStepLag is how far (in raft entries) the old member's committed index may
// trail a healthy member following the same leader in the same term for it
// to count as keeping up. A live follower trails by the writes of a heartbeat
// or two; a member that is really gone stops advancing.
const inStepLag = 1000

// rejoinPlan is what PrepareRejoin changes, decided from one snapshot of the
// membership.
type rejoinPlan struct {
	remove  []Member // the old incarnation of the node: started members with its name or peer URL
	pending *Member  // a never-started member with the peer URL, added by an earlier attempt
	others  []Member // everyone else; they carry the cluster through the change
}

// planRejoin decides the changes and refuses unless they are safe: with
// *MemberHealthyError if an old member of the node is running and healthy
// (aliveEvidence), else with *QuorumError if the change could lose quorum.
//
// Quorum: let N be the size of the cluster once the node is back, and count
// the node itself as failed (its data is gone; that it is confirmed down was
// checked before). The other N-1 members must each be healthy, and the
// healthy ones must be a majority both of the N-1 members left after the
// removal and of the N members after the add, because the added member cannot
// vote until it has started and caught up. The second bound is the stricter
// one: N=3 needs both others healthy (2 of 2, then 2 of 3); N=2 or 1 can
// never be rebuilt in place (1 of 2 is no majority). For N>=5 the majorities
// alone would allow an unhealthy member, but we still refuse: one more failure
// during the change would then stop the cluster, and an operator should look
// first.
func planRejoin(members []Member, name, peerURL string) (rejoinPlan, error) {
	var plan rejoinPlan
	for _, m := range members {
		switch {
		case !isRejoining(m, name, peerURL):
			plan.others = append(plan.others, m)
		case m.Started:
			plan.remove = append(plan.remove, m)
		default:
			plan.pending = &m
		}
	}

	// A healthy member is never replaced, whoever asks. (A pending member
	// has never started: there is nothing to check.)
	for _, old := range plan.remove {
		if evidence := aliveEvidence(old, plan.others); len(evidence) > 0 {
			endpoint := old.Endpoint
			if endpoint == "" {
				endpoint = strings.Join(old.PeerURLs, ",")
			}
			return rejoinPlan{}, &MemberHealthyError{Name: name, Member: old, Endpoint: endpoint, Evidence: evidence}
		}
	}

	size := len(plan.others) + 1
	e := &QuorumError{
		Name:            name,
		Size:            size,
		NeedAfterRemove: majority(size - 1),
		NeedAfterAdd:    majority(size),
	}
	for _, m := range plan.others {
		if m.Healthy {
			e.Healthy++
		} else {
			e.Unhealthy = append(e.Unhealthy, m)
		}
	}
	if len(e.Unhealthy) > 0 || e.Healthy < e.NeedAfterRemove || e.Healthy < e.NeedAfterAdd {
		return rejoinPlan{}, e
	}
	return plan, nil
}

// aliveEvidence says why old, a started member of the node being rebuilt,
// counts as running and healthy; nil means it is confirmed down. It uses the
// checks of old itself and of the other members, healthy ones only (an
// unhealthy member's view may be stale):
//   - old is healthy, by the same check as every other member;
//   - a healthy member follows old as its leader: the cluster reaches old
//     even if flint cannot;
//   - old is not healthy but answered a status as itself, following the same
//     leader in the same term as a healthy member, with a committed raft
//     index at most inStepLag behind that member's: it keeps up, even if its
//     read failed. (A healthy member's read already proves that it keeps up.)
func aliveEvidence(old Member, others []Member) []string {
	var evidence []string
	if old.Healthy {
		evidence = append(evidence, "it answered a linearizable read at "+old.Endpoint)
	}
	var followers, inStep []string
	for _, o := range others {
		switch {
		case !o.Healthy || o.LeaderID == 0:
		case o.LeaderID == old.ID:
			followers = append(followers, o.Name)
		case !old.Healthy && old.Endpoint != "" && old.LeaderID == o.LeaderID && old.RaftTerm == o.RaftTerm && old.RaftIndex+inStepLag >= o.RaftIndex:
			inStep = append(inStep, fmt.Sprintf("%s at %d", o.Name, o.RaftIndex))
		}
	}
	switch len(followers) {
	case 0:
	case 1:
		evidence = append(evidence, followers[0]+" follows it as its leader")
	default:
		evidence = append(evidence, strings.Join(followers, " and ")+" follow it as their leader")
	}
	if len(inStep) > 0 {
		evidence = append(evidence, fmt.Sprintf("it follows leader %x in term %d at raft index %d, in step with %s",
			old.LeaderID, old.RaftTerm, old.RaftIndex, strings.Join(inStep, ", ")))
	}
	return evidence
}

func majority(n int) int { return n/2 + 1 }

// isRejoining reports whether m is the node being rebuilt: its old member
// (started, with its name or peer URL) or one already added for it (never
// started, with its peer URL; such a member has no name yet).
func isRejoining(m Member, name, peerURL string) bool {
	return slices.Contains(m.PeerURLs, peerURL) || (m.Started && m.Name == name)
}

// PrepareRejoin makes the cluster ready for member name to start with an empty
// data dir, advertising exactly peerURL. It first checks every started
// member, the node's old one (with its name or peer URL) included. Unless
// that old member is confirmed down, it refuses with *MemberHealthyError
// (matching ErrMemberHealthy); unless the change cannot lose quorum, with
// *QuorumError (matching ErrQuorum). Either way nothing changes. Then it
// removes the old member, adds the new one (unless an earlier attempt already
// did), and returns the ETCD_INITIAL_CLUSTER value the node must boot with,
// together with ETCD_INITIAL_CLUSTER_STATE=existing.
//
// It is safe to retry after a crash or error at any point, as long as the
// node has not started in between: a member added by an earlier attempt is
// never checked or added again. Once the node has joined, its member is the
// old incarnation to a new call: refused while it is healthy, replaced once
// it is confirmed down.
func (a *Admin) PrepareRejoin(ctx context.Context, name, peerURL string) (initialCluster string, err error) {
	if err := checkRejoinArgs(name, peerURL); err != nil {
		return "", err
	}
	members, err := a.Members(ctx)
	if err != nil {
		return "", err
	}
	plan, err := planRejoin(members, name, peerURL)
	if he, ok := errors.AsType[*MemberHealthyError](err); ok {
		a.log.Warn("refusing to replace a running, healthy etcd member", "rejoining", name, "peer_url", peerURL,
			"name", he.Member.Name, "id", he.Member.IDHex(), "endpoint", he.Endpoint, "evidence", strings.Join(he.Evidence, "; "))
	}
	if err != nil {
		return "", err
	}

	var current []*etcdserverpb.Member // membership as of the last change
	for _, m := range plan.remove {
		if m.Name != name {
			a.log.Warn("etcd member with the rejoining node's peer URL has another name; removing it", "name", m.Name, "id", m.IDHex(), "peer_url", peerURL, "rejoining", name)
		}
		a.log.Info("old etcd member confirmed down; replacing it", "name", m.Name, "id", m.IDHex(), "problem", m.Problem)
		current, err = a.removeMember(ctx, m)
		if err != nil {
			return "", err
		}
	}
	if plan.pending != nil {
		a.log.Info("etcd member already added by an earlier attempt; not adding again", "name", name, "id", plan.pending.IDHex(), "peer_url", peerURL)
	} else {
		current, err = a.addMember(ctx, name, peerURL)
		if err != nil {
			return "", err
		}
	}
	if current == nil {
		resp, err := a.cli.MemberList(ctx)
		if err != nil {
			return "", fmt.Errorf("etcdadmin: list members after preparing %q: %w (retry PrepareRejoin)", name, err)
		}
		current = resp.Members
	}
	return formatInitialCluster(current, name, peerURL)
}

func checkRejoinArgs(name, peerURL string) error {
	if name == "" || strings.ContainsAny(name, "=, \t\n") {
		return fmt.Errorf("etcdadmin: member name %q is empty or contains '=', ',' or spaces: pass the node's hostname", name)
	}
	u, err := url.Parse(peerURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Port() == "" || u.Hostname() == "" ||
		strings.Trim(u.Path, "/") != "" || strings.Contains(peerURL, ",") {
		return fmt.Errorf("etcdadmin: peer URL %q must look like https://10.0.0.12:2380, exactly as the node will advertise it", peerURL)
	}
	return nil
}

// removeMember removes m by ID and returns the membership etcd reports after
// it (nil if unknown). Etcd refuses a removal that leaves too few started
// members; that is reported as ErrQuorum.
func (a *Admin) removeMember(ctx context.Context, m Member) ([]*etcdserverpb.Member, error) {
	var after []*etcdserverpb.Member
	err := a.retryChange(ctx, "remove "+m.String(), func(ctx context.Context) error {
		resp, err := a.cli.MemberRemove(ctx, m.ID)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil // an earlier try went through but its answer was lost
		}
		if err == nil {
			after = resp.Members
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcdadmin: remove old member %s: %w (retry PrepareRejoin)", m, asQuorum(err))
	}
	a.log.Info("removed etcd member", "name", m.Name, "id", m.IDHex(), "peer_urls", m.PeerURLs)
	return after, nil
}

// addMember adds a voting member with peerURL and returns the membership etcd
// reports after it (nil if unknown).
func (a *Admin) addMember(ctx context.Context, name, peerURL string) ([]*etcdserverpb.Member, error) {
	var after []*etcdserverpb.Member
	err := a.retryChange(ctx, "add "+peerURL, func(ctx context.Context) error {
		resp, err := a.cli.MemberAdd(ctx, []string{peerURL})
		if errors.Is(err, rpctypes.ErrPeerURLExist) {
			// An earlier try went through (or our member list was stale): the
			// member with this URL is the one we want.
			return nil
		}
		if err == nil {
			after = resp.Members
			a.log.Info("added etcd member", "name", name, "id", fmt.Sprintf("%x", resp.Member.ID), "peer_url", peerURL)
		}
		return err
	})
	if err != nil {
		// A timed-out add may have been applied, and with a stale member list
		// etcd refuses a second add for "not enough started members" before
		// it notices the duplicate URL: look before reporting a failure.
		if resp, listErr := a.cli.MemberList(ctx); listErr == nil && hasPeerURL(resp.Members, peerURL) {
			a.log.Info("etcd member with the peer URL exists after all; not adding again", "name", name, "peer_url", peerURL, "add_err", err)
			return resp.Members, nil
		}
		return nil, fmt.Errorf("etcdadmin: add member %q with peer URL %s: %w (the old member is already removed; retry PrepareRejoin)", name, peerURL, asQuorum(err))
	}
	return after, nil
}

func hasPeerURL(members []*etcdserverpb.Member, peerURL string) bool {
	return slices.ContainsFunc(members, func(m *etcdserverpb.Member) bool { return slices.Contains(m.PeerURLs, peerURL) })
}

// retryChange runs change until it succeeds, fails for good, or
// changeTimeout passes. Two transient refusals are expected: losing or
// changing the leader (e.g. when the removed member led) fails a change for a
// second or two, and etcd's --strict-reconfig-check refuses with "unhealthy
// cluster" until the member handling the request has been connected to every
// voting peer for 5 s (etcd's HealthInterval), e.g. after a member restarted.
func (a *Admin) retryChange(ctx context.Context, what string, change func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	for {
		err := change(ctx)
		if err == nil || isFinal(err) || ctx.Err() != nil {
			return err
		}
		a.log.Info("etcd refused the membership change for now; retrying", "change", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// isFinal reports errors that retrying cannot fix.
func isFinal(err error) bool {
	for _, final := range []error{
		rpctypes.ErrMemberNotEnoughStarted, rpctypes.ErrMemberBadURLs, rpctypes.ErrPermissionDenied,
		rpctypes.ErrMemberExist, rpctypes.ErrTooManyLearners, context.Canceled,
	} {
		if errors.Is(err, final) {
			return true
		}
	}
	return false
}

// asQuorum marks etcd's own quorum refusals (--strict-reconfig-check) that
// outlasted the retries as ErrQuorum.
func asQuorum(err error) error {
	if errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) || errors.Is(err, rpctypes.ErrUnhealthy) {
		return fmt.Errorf("%w: etcd refused: %w", ErrQuorum, err)
	}
	return err
}

// formatInitialCluster formats ETCD_INITIAL_CLUSTER: name=peerURL for every peer
// URL of every member, the member with peerURL under name, sorted by name
// and URL so that the same membership always gives the same string.
func formatInitialCluster(members []*etcdserverpb.Member, name, peerURL string) (string, error) {
	type pair struct{ name, url string }
	var pairs []pair
	found := false
	for _, m := range members {
		memberName := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			memberName, found = name, true
		} else if memberName == "" {
			return "", fmt.Errorf("etcdadmin: member %x (%s) was added but never started, so it has no name for INITIAL_CLUSTER: start its node or remove it with `etcdctl member remove %x`",
				m.ID, strings.Join(m.PeerURLs, ","), m.ID)
		}
		for _, u := range m.PeerURLs {
			pairs = append(pairs, pair{memberName, u})
		}
	}
	if !found {
		return "", fmt.Errorf("etcdadmin: no member with peer URL %s after adding it (membership changed concurrently?): retry PrepareRejoin", peerURL)
	}
	slices.SortFunc(pairs, func(x, y pair) int { return cmp.Or(cmp.Compare(x.name, y.name), cmp.Compare(x.url, y.url)) })
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.name + "=" + p.url
	}
	return strings.Join(parts, ","), nil
}
