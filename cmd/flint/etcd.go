package main

import (
	"context"
	"log/slog"

	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/pki"
)

// etcdConnector opens admin connections to the cluster with flint's own
// etcd client certificate (DATA/pki/clients/flint-admin).
func etcdConnector(secrets *pki.PKI, log *slog.Logger) lifecycle.ConnectEtcd {
	return func(ctx context.Context, endpoints []string) (lifecycle.Rejoiner, error) {
		return nil, errNoEtcdClient
	}
}

var errNoEtcdClient = errorString("flint was built without its etcd client")

type errorString string

func (e errorString) Error() string { return string(e) }
