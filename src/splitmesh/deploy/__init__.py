"""Running a mesh on a platform: Kubernetes manifests and Compose stacks for any mesh."""
