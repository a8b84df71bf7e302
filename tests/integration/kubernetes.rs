//! Kubernetes manifests: every kustomize variant renders and says what it must.
