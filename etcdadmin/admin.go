// Package etcdadmin changes the membership of the etcd cluster flint provisions.
//
// Its main job is rebuilding a member in place: when an operator reprovisions
// a server node, the node comes back with an empty etcd data dir. Before flint
// serves that node a config saying ETCD_INITIAL_CLUSTER_STATE=existing, the
// cluster must forget the old member and expect the new one (PrepareRejoin).
// The order matters. Seen with etcd 3.4: a wiped node restarted with its old
// flags (state "new") exits with "member ID has already been bootstrapped";
// started as "existing" while the old member is still listed, it takes the
// old member's ID with an empty log and either panics with "tocommit(N) is
// out of range" or, worse, seems to work after forgetting its raft term and
// vote.
//
// Removing the old member is only right if it really is gone, and the request
// proves nothing: anyone on the LAN can PXE-boot with a server's MAC. So a
// member is removed only when it is confirmed down, and a healthy member is
// never removed, whoever asks (ErrMemberHealthy). Before any change
// PrepareRejoin checks every started member the same way, the node's old
// one included:
//
//   - Healthy: at one of its client URLs, with flint's admin certificate and
//     within checkTimeout, the member answers a status request as itself,
//     is a voter, reports a leader and no alarm, and serves a linearizable
//     read. The read goes through the leader (ReadIndex) and waits until the
//     member has applied what the leader had committed, so it proves the
//     member is connected to a leader with quorum and has caught up.
//   - The old member counts as running and healthy if it is healthy; or if a
//     healthy other member follows it as its leader (the cluster reaches it,
//     whether or not flint can); or if it answers a status as itself,
//     following the same leader in the same term as a healthy other member,
//     with a committed raft index at most inStepLag (1000) entries behind that
//     member's (it keeps up, even though its read failed).
//   - Confirmed down is everything else: the old member passes the check at
//     none of its client URLs (it does not answer in time, answers as another
//     member, has no leader or an alarm, or fails the read), is not in step
//     with a healthy member, and no healthy member follows it. The rebuild
//     then still needs every other member healthy (QuorumError).
//
// The v3 API lets a member tell about its peers only which one it follows
// (Status.Leader); it does not say whether it is connected to a given
// follower or how far behind that follower is. So "the other members
// confirm" means the above, and someone who can both pose as the node and
// cut flint off from a follower's client URLs (but not its peers from it)
// could still get that follower replaced; the quorum rule still keeps the
// cluster serving.
//
// It speaks the etcd v3 API with flint's admin client certificate and works
// against etcd 3.4 (Debian 12) as well as newer servers.
package etcdadmin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	// dialTimeout bounds connecting to a member.
	dialTimeout = 5 * time.Second
	// checkTimeout bounds one member's health check. A member that cannot
	// answer a linearizable read within it is counted as unhealthy: a slow
	// member is no member to lean on while the cluster is one short.
	checkTimeout = 2 * time.Second
	// changeTimeout bounds one membership change (remove or add), retries included.
	changeTimeout = 15 * time.Second
)

// Admin talks to the cluster with flint's admin client certificate.
type Admin struct {
	cli *clientv3.Client
	tls *tls.Config
	log *slog.Logger
}

// New connects lazily to the cluster at endpoints (client URLs such as
// https://10.0.0.11:2379; list every member so that one being down does not
// matter). tlsConfig carries the CA and the admin client certificate, see
// TLSConfig. A nil log discards messages.
func New(endpoints []string, tlsConfig *tls.Config, log *slog.Logger) (*Admin, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcdadmin: no endpoints: pass the client URLs of the etcd members, e.g. https://10.0.0.11:2379")
	}
	if tlsConfig == nil {
		return nil, errors.New("etcdadmin: no TLS config: build one from the CA and flint's admin certificate with TLSConfig")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := newClient(endpoints, tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("etcdadmin: connect to %v: %w", endpoints, err)
	}
	return &Admin{cli: cli, tls: tlsConfig, log: log}, nil
}

// newClient builds an etcd client. The client does not block on connecting:
// errors show up on the first request.
func newClient(endpoints []string, tlsConfig *tls.Config) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConfig,
		DialTimeout: dialTimeout,
		// The client logs every reconnect attempt at warn level; Admin
		// reports what matters itself.
		Logger: zap.NewNop(),
	})
}

// Close releases the connections.
func (a *Admin) Close() error { return a.cli.Close() }

// TLSConfig builds the client TLS config from PEM data, e.g. pki.CACertPEM()
// and the CertPEM and KeyPEM of pki.Admin().
func TLSConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("etcdadmin: no certificate found in the CA PEM: pass the contents of the PKI's ca.crt")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("etcdadmin: admin client certificate: %w (pass the CertPEM and KeyPEM of the same pki.Admin() pair)", err)
	}
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}
