//! The stand-in cluster (issue: "A stand-in cluster that kubectl, kube-rs and client libraries accept as real").
