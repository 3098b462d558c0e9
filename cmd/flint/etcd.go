package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flint-boot/flint/etcdadmin"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/pki"
)

// etcdConnector opens admin connections to the cluster with flint's own
// etcd client certificate (DATA/pki/clients/flint-admin).
func etcdConnector(secrets *pki.PKI, log *slog.Logger) lifecycle.ConnectEtcd {
	return func(ctx context.Context, endpoints []string) (lifecycle.Rejoiner, error) {
		admin, err := secrets.Admin()
		if err != nil {
			return nil, fmt.Errorf("flint's etcd admin certificate: %w", err)
		}
		tlsCfg, err := etcdadmin.TLSConfig(secrets.CACertPEM(), admin.CertPEM, admin.KeyPEM)
		if err != nil {
			return nil, err
		}
		return etcdadmin.New(endpoints, tlsCfg, log)
	}
}
