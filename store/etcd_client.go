package store

import clientv3 "go.etcd.io/etcd/client/v3"

// Client is the store's etcd connection, for packages that keep their own
// keys next to the store's under Prefix (pki keeps PREFIX/pki/). It is
// closed by Close.
func (e *Etcd) Client() *clientv3.Client { return e.cli }

// Prefix is the store's key prefix (e.g. /flint/site-a/).
func (e *Etcd) Prefix() string { return e.prefix }
