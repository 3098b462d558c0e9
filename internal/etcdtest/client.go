package etcdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/flint-boot/flint/internal/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// What a test reaches the cluster with: endpoints, clients, etcdctl, and
// the store section of a flint config on it.

// Endpoints are the client URLs of the given members (all when none given).
func (c *Cluster) Endpoints(members ...*Member) []string {
	if len(members) == 0 {
		members = c.Members
	}
	var out []string
	for _, m := range members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a raw etcd client (admin certificate) for the given
// members only, closed by t.Cleanup.
func (c *Cluster) Client(members ...*Member) *clientv3.Client {
	c.t.Helper()
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(members...),
		TLS:         c.TLS,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c.ClientNS != "" {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return netns.Dialer(netns.Path(c.ClientNS))(ctx, "tcp", addr)
		})}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitReadable waits until m answers a linearizable read.
func (c *Cluster) WaitReadable(m *Member, timeout time.Duration) {
	c.t.Helper()
	if err := c.waitReadable(m, timeout); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) waitReadable(m *Member, timeout time.Duration) error {
	c.t.Helper()
	cli := c.Client(m)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if !m.Running() {
			return fmt.Errorf("etcd %s exited: %v\n%s", m.Name, m.cmd.ProcessState, Tail(m.LogPath, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd %s not readable after %v: %v", m.Name, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Etcdctl runs etcdctl (API 3, admin certificate) against the given
// members and returns its standard output: an independent view that does
// not go through the code under test.
func (c *Cluster) Etcdctl(via []*Member, args ...string) []byte {
	c.t.Helper()
	args = append([]string{"--endpoints", strings.Join(c.Endpoints(via...), ","), "--cacert", c.CAFile,
		"--cert", c.ClientCert, "--key", c.ClientKey, "--command-timeout", "5s"}, args...)
	name := "etcdctl"
	if c.ClientNS != "" {
		name, args = "ip", append([]string{"netns", "exec", c.ClientNS, "etcdctl"}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(EnvWithoutEtcd(), "ETCDCTL_API=3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// StoreSection is the `store:` section of a flint config on this cluster:
// backend (etcd, or bolt for the destination of a migration), the
// endpoints, the CA and admin client files, keyFile as
// store.encryption_key_file, and prefix (left out when "").
func (c *Cluster) StoreSection(backend, prefix, keyFile string) string {
	s := fmt.Sprintf("store:\n  backend: %s\n  endpoints: [%s]\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  encryption_key_file: %s\n",
		backend, strings.Join(c.Endpoints(), ", "), c.CAFile, c.ClientCert, c.ClientKey, keyFile)
	if prefix != "" {
		s += "  prefix: " + prefix + "\n"
	}
	return s
}

// EncryptionKeyFile writes a random 32-byte store.encryption_key_file (0600)
// for configs on this cluster and returns its path; every call makes a new
// key, so instances meant to share the PKI share one file.
func (c *Cluster) EncryptionKeyFile() string {
	c.t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		c.t.Fatal(err)
	}
	f, err := os.CreateTemp(c.Dir, "store-*.key")
	if err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	WriteFile(c.t, f.Name(), key)
	return f.Name()
}
