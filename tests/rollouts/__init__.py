"""Tests of ajan's writes to Argo Rollouts (a package: its test_client.py shares a basename)."""
