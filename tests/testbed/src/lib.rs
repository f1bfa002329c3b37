//! A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager and kwok fake nodes on loopback.
