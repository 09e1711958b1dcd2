"""The real test bed: etcd + kube-apiserver + Harper nodes as local processes (see DESIGN.md)."""
