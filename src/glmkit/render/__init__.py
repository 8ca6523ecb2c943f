"""Files: a plan as compose data (one server, a cluster) or Kubernetes manifests.
"""
