//go:build tools

// The command scripts/cluster.sh builds from this module: CoreDNS, the reference cluster DNS server that
// tests/real_coredns.rs compares roster's answers with; `go mod tidy` keeps its requirements here.
package tools

import _ "github.com/coredns/coredns"
