// Package examples embeds the documented example site, which is also flint's
// built-in default config.
package examples

import _ "embed"

// Cluster is deploy/examples/cluster.yaml: three NUC servers, two agents, proxy mode.
//
//go:embed cluster.yaml
var Cluster []byte

// ClusterSource names the embedded config in messages.
const ClusterSource = "<embedded default: deploy/examples/cluster.yaml>"
