"""Tests of ajan's monitoring and GitOps manifests (a package: its helpers are ``monitoring.sources``)."""
