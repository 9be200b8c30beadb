"""Tests against a real Argo Rollouts controller, with kwok's simulated nodes running the pods."""
