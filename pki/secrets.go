package pki

// NodePassword returns the K3s node password of node name, generating it on the
// first request. K3s keeps a hash of it per hostname and rejects a rebuilt node
// that presents another one, so it is kept forever.
func (p *PKI) NodePassword(name string) (string, error) {
	if err := checkHostname("node name", name); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loadOrCreateSecret(secretSpec{
		file:    passwordsDir + "/" + name,
		what:    "node password of " + name,
		fix:     "flint does not replace it: K3s keeps a hash of it and would reject " + name + " with another one",
		preview: true,
	})
}
