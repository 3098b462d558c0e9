package main

import (
	"context"
	"errors"
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
		a, err := etcdadmin.New(endpoints, tlsCfg, log)
		if err != nil {
			return nil, err
		}
		return rejoiner{a}, nil
	}
}

// rejoiner tells the lifecycle, in its own terms, that etcd refused to
// replace a member that still runs, or refused for quorum before changing
// anything.
type rejoiner struct{ *etcdadmin.Admin }

func (r rejoiner) PrepareRejoin(ctx context.Context, name, peerURL string) (string, error) {
	ic, err := r.Admin.PrepareRejoin(ctx, name, peerURL)
	if errors.Is(err, etcdadmin.ErrMemberHealthy) {
		return "", fmt.Errorf("%w: %w", lifecycle.ErrMemberHealthy, err)
	}
	if errors.Is(err, etcdadmin.ErrQuorum) {
		return "", fmt.Errorf("%w: %w", lifecycle.ErrNothingChanged, err)
	}
	return ic, err
}
