//go:build tools

// The commands scripts/cluster.sh builds from this module; `go mod tidy` keeps their requirements here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "roster.local/tools/k8s/kubernetes/etcd"
)
