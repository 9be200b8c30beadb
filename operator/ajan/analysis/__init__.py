"""ajan's numeric core: pure functions over numpy arrays, no I/O, no Kubernetes."""
